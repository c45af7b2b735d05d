"""Duplicates and merge (API.md §12, DESIGN.md "Merge"): tombstones, ERP aliases, the merge record, dismissed pairs.

- `customer.merged_into`: set on a customer merged into another; the row stays as a tombstone, so its id
  answers 404 with the survivor's id and an undo has it back. A tombstone has no contacts and no ERP
  number (the merge moves them to the survivor and its aliases; the merge record keeps them), so the
  unique rule on ERP numbers and every index over contacts see only live customers. The keyset index of
  lists and search leaves tombstones out.
- `customer.erp_aliases`: the ERP numbers of the customers merged into this one, in merge order — part of
  the customer document and of its history snapshot. `customer_erp_alias` is their index: unique per org
  (its primary key), and checked both ways against live customers' numbers by triggers, so no number is
  ever an alias of one customer and the number of another. A trigger keeps it in step with the column.
- `customer_merge`: one row per merge: who into whom, the merge's transaction, and the customers and
  contacts as they were before (an undo writes them back).
- `duplicate_dismissal`: pairs a user said are not duplicates (lower id first), gone with either customer.
- History (migration 0007's triggers, replaced here): a customer that becomes a tombstone records
  `customer.merged_away` with `merged_into` as its one change; a tombstone brought back by an undo records
  `customer.created`; the survivor's `customer.merged` is written by the merge itself
  (`merge/repository.py`), which alone knows the merged ids. `erp_aliases` is part of the snapshot.
- Detection's name index (0005) counts a customer merged away or brought back as removed or added.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from customer_master.db.migrate import execute_script

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE customer
  ADD COLUMN merged_into UUID,
  ADD COLUMN erp_aliases TEXT[] NOT NULL DEFAULT '{}';

-- Lists and search walk live customers only; the index carries nothing for tombstones.
DROP INDEX ix_customer_org_lower_name_id;
CREATE INDEX ix_customer_org_lower_name_id ON customer (org_id, lower(name), id)
  INCLUDE (name, name_fold, erp_customer_number) WHERE merged_into IS NULL;

CREATE TABLE customer_erp_alias (
  org_id UUID NOT NULL,
  erp_customer_number TEXT NOT NULL,
  customer_id UUID NOT NULL,
  CONSTRAINT customer_erp_alias_pkey PRIMARY KEY (org_id, erp_customer_number),
  CONSTRAINT fk_customer_erp_alias_customer FOREIGN KEY (org_id, customer_id)
    REFERENCES customer (org_id, id) ON DELETE CASCADE
);
CREATE INDEX ix_customer_erp_alias_customer ON customer_erp_alias (org_id, customer_id);

-- The column is the truth; the table follows it.
CREATE FUNCTION cm_customer_aliases_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM customer_erp_alias
   WHERE org_id = NEW.org_id AND customer_id = NEW.id AND erp_customer_number <> ALL (NEW.erp_aliases);
  IF EXISTS (SELECT 1 FROM customer c
              WHERE c.org_id = NEW.org_id AND c.id <> NEW.id
                AND c.erp_customer_number = ANY (NEW.erp_aliases)) THEN
    RAISE EXCEPTION 'an ERP alias of customer % is the ERP number of another customer', NEW.id
      USING ERRCODE = 'unique_violation', CONSTRAINT = 'customer_erp_alias_pkey';
  END IF;
  INSERT INTO customer_erp_alias (org_id, erp_customer_number, customer_id)
  SELECT NEW.org_id, alias, NEW.id FROM unnest(NEW.erp_aliases) alias
  ON CONFLICT (org_id, erp_customer_number) DO UPDATE SET customer_id = EXCLUDED.customer_id
   WHERE customer_erp_alias.customer_id = NEW.id;
  IF EXISTS (SELECT 1 FROM customer_erp_alias a
              WHERE a.org_id = NEW.org_id AND a.erp_customer_number = ANY (NEW.erp_aliases)
                AND a.customer_id <> NEW.id) THEN
    RAISE EXCEPTION 'an ERP alias of customer % is an alias of another customer', NEW.id
      USING ERRCODE = 'unique_violation', CONSTRAINT = 'customer_erp_alias_pkey';
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER customer_aliases_changed AFTER UPDATE OF erp_aliases ON customer
  FOR EACH ROW WHEN (OLD.erp_aliases IS DISTINCT FROM NEW.erp_aliases)
  EXECUTE FUNCTION cm_customer_aliases_changed();

-- No customer takes a number that is another customer's alias (set-based: one join per statement).
CREATE FUNCTION cm_customer_numbers_checked() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  taken TEXT;
BEGIN
  SELECT n.erp_customer_number INTO taken
    FROM new_rows n JOIN customer_erp_alias a
      ON a.org_id = n.org_id AND a.erp_customer_number = n.erp_customer_number AND a.customer_id <> n.id
   LIMIT 1;
  IF taken IS NOT NULL THEN
    RAISE EXCEPTION 'ERP number % is an alias of another customer', taken
      USING ERRCODE = 'unique_violation', CONSTRAINT = 'customer_erp_alias_pkey';
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER customer_aliases_inserted AFTER INSERT ON customer
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cm_customer_numbers_checked();
CREATE TRIGGER customer_aliases_updated AFTER UPDATE ON customer
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cm_customer_numbers_checked();

CREATE TABLE customer_merge (
  org_id UUID NOT NULL REFERENCES org (id) ON DELETE CASCADE,
  id UUID NOT NULL DEFAULT gen_random_uuid(),
  survivor_id UUID NOT NULL,  -- no foreign key: the record outlives a deleted survivor
  merged_ids UUID[] NOT NULL,
  txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  customers JSONB NOT NULL,  -- the survivor's and the merged customers' rows before the merge
  contacts JSONB NOT NULL,  -- and all their contacts
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  undone_at TIMESTAMPTZ,
  CONSTRAINT customer_merge_pkey PRIMARY KEY (org_id, id)
);
CREATE INDEX ix_customer_merge_org_survivor ON customer_merge (org_id, survivor_id);

CREATE TABLE duplicate_dismissal (
  org_id UUID NOT NULL,
  customer_low UUID NOT NULL,
  customer_high UUID NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT duplicate_dismissal_pkey PRIMARY KEY (org_id, customer_low, customer_high),
  CONSTRAINT ck_duplicate_dismissal_order CHECK (customer_low < customer_high),
  CONSTRAINT fk_duplicate_dismissal_low FOREIGN KEY (org_id, customer_low)
    REFERENCES customer (org_id, id) ON DELETE CASCADE,
  CONSTRAINT fk_duplicate_dismissal_high FOREIGN KEY (org_id, customer_high)
    REFERENCES customer (org_id, id) ON DELETE CASCADE
);
CREATE INDEX ix_duplicate_dismissal_high ON duplicate_dismissal (org_id, customer_high);

-- History: the aliases are a field of the customer (the reader shows a missing list as []).
CREATE OR REPLACE FUNCTION cm_customer_fields(c customer) RETURNS JSONB
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT jsonb_build_object('name', c.name, 'erp_customer_number', c.erp_customer_number,
                            'erp_aliases', CASE WHEN cardinality(c.erp_aliases) > 0 THEN to_jsonb(c.erp_aliases) END,
                            'default_currency', c.default_currency, 'default_language', c.default_language,
                            'billing_address', c.billing_address_json, 'shipping_address', c.shipping_address_json,
                            'metadata', c.metadata_json)
$$;

-- As in 0007, and: a customer merged away records `customer.merged_away` (its fields as they were, plus
-- `merged_into`); a tombstone brought back by an undo records `customer.created`; a tombstone is never
-- recorded otherwise.
CREATE OR REPLACE FUNCTION cm_customer_history() RETURNS trigger LANGUAGE plpgsql SET enable_nestloop = off AS $$
DECLARE
  changed_org UUID;
BEGIN
  IF TG_OP = 'INSERT' THEN
    FOR changed_org IN SELECT DISTINCT org_id FROM new_rows LOOP
      PERFORM cm_note_transaction(changed_org);
      INSERT INTO change_entry AS e (org_id, txid, type, customer_id, object_id, before, after)
      SELECT n.org_id, pg_current_xact_id(), 'customer.created', n.id, n.id, NULL, cm_customer_fields(n)
        FROM new_rows n WHERE n.org_id = changed_org
      ON CONFLICT (org_id, customer_id, txid, object_id) DO UPDATE
         SET position = EXCLUDED.position, type = cm_joined_type(e.type, EXCLUDED.type), after = EXCLUDED.after;
    END LOOP;
  ELSIF TG_OP = 'UPDATE' THEN
    FOR changed_org IN SELECT DISTINCT org_id FROM new_rows LOOP
      PERFORM cm_note_transaction(changed_org);
      INSERT INTO change_entry AS e (org_id, txid, type, customer_id, object_id, before, after)
      SELECT c.org_id, pg_current_xact_id(), c.type, c.id, c.id, c.before, c.after
        FROM (SELECT n.org_id, n.id,
                     CASE WHEN o.merged_into IS NULL AND n.merged_into IS NOT NULL THEN 'customer.merged_away'
                          WHEN o.merged_into IS NOT NULL THEN 'customer.created'
                          ELSE 'customer.updated' END AS type,
                     CASE WHEN o.merged_into IS NULL THEN cm_customer_fields(o) END AS before,
                     CASE WHEN n.merged_into IS NULL THEN cm_customer_fields(n)
                          ELSE cm_customer_fields(o) || jsonb_build_object('merged_into', n.merged_into) END AS after
                FROM new_rows n JOIN old_rows o ON o.org_id = n.org_id AND o.id = n.id
               WHERE n.org_id = changed_org AND (o.merged_into IS NULL OR n.merged_into IS NULL)) c
       WHERE c.before IS DISTINCT FROM c.after
      ON CONFLICT (org_id, customer_id, txid, object_id) DO UPDATE
         SET position = EXCLUDED.position, type = cm_joined_type(e.type, EXCLUDED.type), after = EXCLUDED.after;
    END LOOP;
  ELSE
    FOR changed_org IN SELECT DISTINCT org_id FROM old_rows WHERE merged_into IS NULL LOOP
      PERFORM cm_note_transaction(changed_org);
      INSERT INTO change_entry AS e (org_id, txid, type, customer_id, object_id, before, after)
      SELECT o.org_id, pg_current_xact_id(), 'customer.deleted', o.id, o.id, cm_customer_fields(o), NULL
        FROM old_rows o WHERE o.org_id = changed_org AND o.merged_into IS NULL
      ON CONFLICT (org_id, customer_id, txid, object_id) DO UPDATE
         SET position = EXCLUDED.position, type = cm_joined_type(e.type, EXCLUDED.type), after = EXCLUDED.after;
    END LOOP;
  END IF;
  RETURN NULL;
END $$;

-- Detection's name index: merging away and bringing back add and remove a name like an insert and a delete.
CREATE OR REPLACE FUNCTION cm_customer_names_updated() RETURNS trigger LANGUAGE plpgsql SET enable_nestloop = off AS $$
BEGIN
  PERFORM cm_note_name_changes(n.org_id, array_agg(n.id))
     FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.name_key IS DISTINCT FROM o.name_key OR n.merged_into IS DISTINCT FROM o.merged_into
    GROUP BY n.org_id;
  RETURN NULL;
END $$;
"""

DOWNGRADE = r"""
CREATE OR REPLACE FUNCTION cm_customer_names_updated() RETURNS trigger LANGUAGE plpgsql SET enable_nestloop = off AS $$
BEGIN
  PERFORM cm_note_name_changes(n.org_id, array_agg(n.id))
     FROM new_rows n JOIN old_rows o ON o.id = n.id
    WHERE n.name_key IS DISTINCT FROM o.name_key
    GROUP BY n.org_id;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION cm_customer_history() RETURNS trigger LANGUAGE plpgsql SET enable_nestloop = off AS $$
DECLARE
  changed_org UUID;
BEGIN
  IF TG_OP = 'INSERT' THEN
    FOR changed_org IN SELECT DISTINCT org_id FROM new_rows LOOP
      PERFORM cm_note_transaction(changed_org);
      INSERT INTO change_entry AS e (org_id, txid, type, customer_id, object_id, before, after)
      SELECT n.org_id, pg_current_xact_id(), 'customer.created', n.id, n.id, NULL, cm_customer_fields(n)
        FROM new_rows n WHERE n.org_id = changed_org
      ON CONFLICT (org_id, customer_id, txid, object_id) DO UPDATE
         SET position = EXCLUDED.position, type = cm_joined_type(e.type, EXCLUDED.type), after = EXCLUDED.after;
    END LOOP;
  ELSIF TG_OP = 'UPDATE' THEN
    FOR changed_org IN SELECT DISTINCT org_id FROM new_rows LOOP
      PERFORM cm_note_transaction(changed_org);
      INSERT INTO change_entry AS e (org_id, txid, type, customer_id, object_id, before, after)
      SELECT c.org_id, pg_current_xact_id(), 'customer.updated', c.id, c.id, c.before, c.after
        FROM (SELECT n.org_id, n.id, cm_customer_fields(o) AS before, cm_customer_fields(n) AS after
                FROM new_rows n JOIN old_rows o ON o.org_id = n.org_id AND o.id = n.id
               WHERE n.org_id = changed_org) c
       WHERE c.before <> c.after
      ON CONFLICT (org_id, customer_id, txid, object_id) DO UPDATE
         SET position = EXCLUDED.position, type = cm_joined_type(e.type, EXCLUDED.type), after = EXCLUDED.after;
    END LOOP;
  ELSE
    FOR changed_org IN SELECT DISTINCT org_id FROM old_rows LOOP
      PERFORM cm_note_transaction(changed_org);
      INSERT INTO change_entry AS e (org_id, txid, type, customer_id, object_id, before, after)
      SELECT o.org_id, pg_current_xact_id(), 'customer.deleted', o.id, o.id, cm_customer_fields(o), NULL
        FROM old_rows o WHERE o.org_id = changed_org
      ON CONFLICT (org_id, customer_id, txid, object_id) DO UPDATE
         SET position = EXCLUDED.position, type = cm_joined_type(e.type, EXCLUDED.type), after = EXCLUDED.after;
    END LOOP;
  END IF;
  RETURN NULL;
END $$;

CREATE OR REPLACE FUNCTION cm_customer_fields(c customer) RETURNS JSONB
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT jsonb_build_object('name', c.name, 'erp_customer_number', c.erp_customer_number,
                            'default_currency', c.default_currency, 'default_language', c.default_language,
                            'billing_address', c.billing_address_json, 'shipping_address', c.shipping_address_json,
                            'metadata', c.metadata_json)
$$;

DROP TABLE duplicate_dismissal;
DROP TABLE customer_merge;
DROP TRIGGER customer_aliases_updated ON customer;
DROP TRIGGER customer_aliases_inserted ON customer;
DROP FUNCTION cm_customer_numbers_checked();
DROP TRIGGER customer_aliases_changed ON customer;
DROP FUNCTION cm_customer_aliases_changed();
DROP TABLE customer_erp_alias;
DROP INDEX ix_customer_org_lower_name_id;
CREATE INDEX ix_customer_org_lower_name_id ON customer (org_id, lower(name), id)
  INCLUDE (name, name_fold, erp_customer_number);
ALTER TABLE customer DROP COLUMN erp_aliases, DROP COLUMN merged_into;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
