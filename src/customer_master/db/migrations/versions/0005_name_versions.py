"""S5 in memory: a per-org version of the customer names, moved by the transaction that changes them.

`detection/name_index.py` keeps each org's name keys in memory as trigram posting lists (pg_trgm's GIN
index could only pre-filter on "30 % of the compared text's trigrams occur in the name", which made
PostgreSQL fetch and recheck 5,000–15,000 names of a 300,000-customer org per compared line). A process
knows its copy is current by this version:

- `customer_name_change`: statement-level triggers (transition tables) list the customers a statement
  inserts, deletes or renames (its name key changes), or write one row without a customer when it changed
  more than 1,000 (an import: reload the org). The rows have no version yet.
- At commit, a deferred constraint trigger moves the org's `customer_name_version` by one and stamps the
  transaction's rows with it. Taking the version row's lock only at commit, when the transaction waits for
  no other lock any more, keeps it out of lock cycles with the customer rows that imports and edits lock
  (taken mid-transaction, an import and an edit of one customer deadlocked), and holds it only for the
  commit; versions still follow commit order. Steps older than the last 200 are dropped: a copy that far
  behind reloads. `epoch` changes when the table is truncated: every copy reloads.

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
  version BIGINT NOT NULL DEFAULT 0
);
INSERT INTO customer_name_version (org_id) SELECT id FROM org;

CREATE TABLE customer_name_change (
  org_id UUID NOT NULL REFERENCES org (id) ON DELETE CASCADE,
  version BIGINT,  -- NULL until the writing transaction commits
  customer_id UUID  -- NULL: more customers changed in one statement than are listed; reload the org
);
CREATE INDEX ix_customer_name_change_org_version ON customer_name_change (org_id, version);

CREATE FUNCTION cm_note_name_changes(changed_org UUID, changed UUID[]) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF cardinality(changed) > 1000 THEN
    INSERT INTO customer_name_change (org_id, customer_id) VALUES (changed_org, NULL);
  ELSE
    INSERT INTO customer_name_change (org_id, customer_id) SELECT changed_org, unnest(changed);
  END IF;
END $$;

-- Fires at commit for each change row; the first of an org's rows stamps them all.
CREATE FUNCTION cm_stamp_name_changes() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  step BIGINT;
BEGIN
  IF NOT EXISTS (SELECT 1 FROM customer_name_change WHERE org_id = NEW.org_id AND version IS NULL) THEN
    RETURN NULL;
  END IF;
  INSERT INTO customer_name_version AS v (org_id, version) VALUES (NEW.org_id, 1)
  ON CONFLICT (org_id) DO UPDATE SET version = v.version + 1
  RETURNING v.version INTO step;
  UPDATE customer_name_change SET version = step WHERE org_id = NEW.org_id AND version IS NULL;
  DELETE FROM customer_name_change WHERE org_id = NEW.org_id AND version <= step - 200;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER customer_name_change_stamp AFTER INSERT ON customer_name_change
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cm_stamp_name_changes();

CREATE FUNCTION cm_customer_names_truncated() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO customer_name_version AS v (org_id) SELECT id FROM org
  ON CONFLICT (org_id) DO UPDATE SET epoch = gen_random_uuid(), version = 0;
  DELETE FROM customer_name_change;
  RETURN NULL;
END $$;

-- For inserts and deletes alike: both triggers name their transition table `changed_rows`.
CREATE FUNCTION cm_customer_names_added_or_removed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM cm_note_name_changes(org_id, array_agg(id)) FROM changed_rows GROUP BY org_id;
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

CREATE TRIGGER customer_names_inserted AFTER INSERT ON customer
  REFERENCING NEW TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION cm_customer_names_added_or_removed();
CREATE TRIGGER customer_names_updated AFTER UPDATE ON customer
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
  FOR EACH STATEMENT EXECUTE FUNCTION cm_customer_names_updated();
CREATE TRIGGER customer_names_deleted AFTER DELETE ON customer
  REFERENCING OLD TABLE AS changed_rows FOR EACH STATEMENT EXECUTE FUNCTION cm_customer_names_added_or_removed();
CREATE TRIGGER customer_names_truncated AFTER TRUNCATE ON customer
  FOR EACH STATEMENT EXECUTE FUNCTION cm_customer_names_truncated();

DROP INDEX ix_customer_org_name_key_trgm;
"""

DOWNGRADE = """
CREATE INDEX ix_customer_org_name_key_trgm ON customer USING gin (org_id, name_key gin_trgm_ops);
DROP TRIGGER customer_names_truncated ON customer;
DROP TRIGGER customer_names_deleted ON customer;
DROP TRIGGER customer_names_updated ON customer;
DROP TRIGGER customer_names_inserted ON customer;
DROP FUNCTION cm_customer_names_updated();
DROP FUNCTION cm_customer_names_added_or_removed();
DROP FUNCTION cm_customer_names_truncated();
DROP TRIGGER customer_name_change_stamp ON customer_name_change;
DROP FUNCTION cm_stamp_name_changes();
DROP FUNCTION cm_note_name_changes(UUID, UUID[]);
DROP TABLE customer_name_change;
DROP TABLE customer_name_version;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
