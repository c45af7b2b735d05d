"""S5 in memory: a per-org version of the customer names, moved in the transaction that changes them.

`detection/name_index.py` keeps each org's name keys in memory as trigram posting lists (pg_trgm's GIN
index could only pre-filter on "30 % of the compared text's trigrams occur in the name", which made
PostgreSQL fetch and recheck 5,000–15,000 names of a 300,000-customer org per compared line). A process
knows its copy is current by this version:

- `customer_name_version`: per org, `version` moves by one with every statement that inserts or deletes
  customers or changes a name key (statement-level triggers with transition tables: an import of 100,000
  rows is one step). The row is locked until the writing transaction ends, so steps commit in order.
  `epoch` tells a copy of another database (or of a dropped and re-created org) from this one.
- `customer_name_change`: the customers of each step (or one row with no customer when a statement
  changed more than 1,000: reload), so a process can catch up on a few changes instead of reloading
  300,000 names. Steps older than the last 200 are dropped; a copy that far behind reloads.

The trigram GIN index on `name_key` is dropped: nothing searches it any more, and it cost ~12 µs of
every customer row written.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

from customer_master.db.migrate import execute_script

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE customer_name_version (
  org_id UUID PRIMARY KEY REFERENCES org (id) ON DELETE CASCADE,
  epoch UUID NOT NULL DEFAULT gen_random_uuid(),
  version BIGINT NOT NULL DEFAULT 1
);

CREATE TABLE customer_name_change (
  org_id UUID NOT NULL REFERENCES org (id) ON DELETE CASCADE,
  version BIGINT NOT NULL,
  customer_id UUID  -- NULL: more customers changed in this step than are listed; reload the org
);
CREATE INDEX ix_customer_name_change_org_version ON customer_name_change (org_id, version);

CREATE FUNCTION cm_note_name_changes(changed_org UUID, changed UUID[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  step BIGINT;
BEGIN
  INSERT INTO customer_name_version AS v (org_id) VALUES (changed_org)
  ON CONFLICT (org_id) DO UPDATE SET version = v.version + 1
  RETURNING v.version INTO step;
  IF cardinality(changed) > 1000 THEN
    INSERT INTO customer_name_change (org_id, version, customer_id) VALUES (changed_org, step, NULL);
  ELSE
    INSERT INTO customer_name_change (org_id, version, customer_id) SELECT changed_org, step, unnest(changed);
  END IF;
  DELETE FROM customer_name_change WHERE org_id = changed_org AND version <= step - 200;
END $$;

CREATE FUNCTION cm_customer_names_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM cm_note_name_changes(org_id, array_agg(id)) FROM new_rows GROUP BY org_id;
  RETURN NULL;
END $$;

-- Transition tables have no statistics: the planner took a nested loop for this join, ~15 s for the
-- 13,000 customers an import updated. A hash or merge join does it in milliseconds.
CREATE FUNCTION cm_customer_names_updated() RETURNS trigger LANGUAGE plpgsql SET enable_nestloop = off AS $$
BEGIN
  PERFORM cm_note_name_changes(n.org_id, array_agg(n.id))
     FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.name_key IS DISTINCT FROM o.name_key
    GROUP BY n.org_id;
  RETURN NULL;
END $$;

CREATE FUNCTION cm_customer_names_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM cm_note_name_changes(org_id, array_agg(id)) FROM old_rows GROUP BY org_id;
  RETURN NULL;
END $$;

CREATE TRIGGER customer_names_inserted AFTER INSERT ON customer
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cm_customer_names_inserted();
CREATE TRIGGER customer_names_updated AFTER UPDATE ON customer
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION cm_customer_names_updated();
CREATE TRIGGER customer_names_deleted AFTER DELETE ON customer
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cm_customer_names_deleted();

DROP INDEX ix_customer_org_name_key_trgm;
"""

DOWNGRADE = """
CREATE INDEX ix_customer_org_name_key_trgm ON customer USING gin (org_id, name_key gin_trgm_ops);
DROP TRIGGER customer_names_deleted ON customer;
DROP TRIGGER customer_names_updated ON customer;
DROP TRIGGER customer_names_inserted ON customer;
DROP FUNCTION cm_customer_names_deleted();
DROP FUNCTION cm_customer_names_updated();
DROP FUNCTION cm_customer_names_inserted();
DROP FUNCTION cm_note_name_changes(UUID, UUID[]);
DROP TABLE customer_name_change;
DROP TABLE customer_name_version;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
