"""Search at 100k customers per org: a stored folded name, an org-scoped trigram index, a covering keyset index.

Measured with `bench/api.py` (100,000 customers in one org, 50,000 in others):

- `cm_fold(name)` is an SQL function that cannot be inlined (it calls the STABLE `unaccent`), so every
  call goes through the SQL-function executor. The trigram index's recheck and the filter of a walk in
  name order called it for every candidate row. `name_fold` stores it once per write instead.
- The trigram index leads with `org_id` (`btree_gin`), so a search only ever sees its own org's rows,
  however many other orgs share the table.
- The keyset index carries `name`, `name_fold` and the ERP number, so a search that walks the org in
  name order until a page is full filters index entries (an index-only scan) instead of fetching one
  heap row per entry; only the page's rows are read from the table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from customer_master.db.migrate import execute_script

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE EXTENSION IF NOT EXISTS btree_gin;

ALTER TABLE customer ADD COLUMN name_fold TEXT GENERATED ALWAYS AS (cm_fold(name)) STORED;

DROP INDEX ix_customer_name_fold_trgm;
CREATE INDEX ix_customer_org_name_fold_trgm ON customer USING gin (org_id, name_fold gin_trgm_ops);

DROP INDEX ix_customer_org_lower_name_id;
CREATE INDEX ix_customer_org_lower_name_id ON customer (org_id, lower(name), id)
  INCLUDE (name, name_fold, erp_customer_number);

-- 0002's trigger function, now for both generated columns: they are not computed yet in a BEFORE
-- trigger (NULL in NEW), so compare with the old values in their place, or every UPDATE, no-ops too,
-- would move updated_at.
CREATE OR REPLACE FUNCTION update_customer_updated_at_column() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.name_key := OLD.name_key;
  NEW.name_fold := OLD.name_fold;
  IF NEW IS DISTINCT FROM OLD THEN
    NEW.updated_at = now();
  END IF;
  RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER update_customer_updated_at BEFORE UPDATE ON customer
  FOR EACH ROW EXECUTE FUNCTION update_customer_updated_at_column();
"""

DOWNGRADE = """
CREATE OR REPLACE FUNCTION update_customer_updated_at_column() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.name_key := OLD.name_key;
  IF NEW IS DISTINCT FROM OLD THEN
    NEW.updated_at = now();
  END IF;
  RETURN NEW;
END $$;
DROP INDEX ix_customer_org_lower_name_id;
CREATE INDEX ix_customer_org_lower_name_id ON customer (org_id, lower(name), id);
DROP INDEX ix_customer_org_name_fold_trgm;
CREATE INDEX ix_customer_name_fold_trgm ON customer USING gin (cm_fold(name) gin_trgm_ops);
ALTER TABLE customer DROP COLUMN name_fold;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
