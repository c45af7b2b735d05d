"""Change history and the event feed (API.md §10, §11): recorded by the database, in the writing transaction.

Every write path (API, web UI, import, CLI, merge) changes `customer` and `customer_contact` with SQL;
statement-level triggers with transition tables compare the old and new rows column by column and
record one entry per changed row, set-based, so that an import of 100,000 rows records its changes in a
few statements and nothing can write without an entry (DESIGN.md "History and events").

- `change_transaction`: one row per writing transaction and org. Who wrote, from where and on behalf of
  which request, import or merge travels in transaction-local settings (`cm.actor`, `cm.source`,
  `cm.request_id`, `cm.import_id`, `cm.merge_id`, set by `history/context.py`) and is stored here once.
- `change_entry`: the entries, `position` (from one sequence) in the order they were written, each with
  the object's fields `before` and `after` the transaction; the reader lists the fields that differ
  (`history/service.py`). A snapshot costs a few microseconds a row, a field-by-field diff in SQL ten
  times that (measured on inserts of 20,000 customers). Within a transaction one entry per customer or
  contact: a second write of the same object joins the first (`before` of the first, `after` of the
  last) and moves to the later position. An entry whose `before` equals its `after` (changes that
  cancelled out) is never shown.
- Commit order: at commit a deferred constraint trigger takes the org's `change_feed_position` row,
  moves it past the transaction's positions and stamps the transaction with its first `sequence`
  (entry sequence = `first_sequence + position - first_position`; gaps allowed). The lock is held only
  for the commit, so sequences follow commit order per org: a reader who sees sequence N has seen every
  lower one, and a cursor never skips a transaction that committed late. The same commit sends
  `NOTIFY cm_events` with the org id for waiting readers.
  The trigger on `customer` sorts before the name-version triggers of 0005 (`customer_changes_*` <
  `customer_names_*`), so every transaction takes the feed's lock before the name version's: one lock
  order, no deadlock between the two commit-time stamps.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from customer_master.db.migrate import execute_script

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE change_feed_position (
  org_id UUID PRIMARY KEY REFERENCES org (id) ON DELETE CASCADE,
  last_sequence BIGINT NOT NULL DEFAULT 0
);

CREATE SEQUENCE change_entry_position AS BIGINT;

CREATE TABLE change_transaction (
  org_id UUID NOT NULL REFERENCES org (id) ON DELETE CASCADE,
  txid xid8 NOT NULL,
  first_position BIGINT NOT NULL,  -- below every position of the transaction's entries
  first_sequence BIGINT,  -- NULL until the transaction commits
  last_sequence BIGINT,
  committed_at TIMESTAMPTZ,
  actor JSONB NOT NULL,
  source TEXT NOT NULL,
  request_id TEXT,
  import_id UUID,
  merge_id UUID,
  CONSTRAINT change_transaction_pkey PRIMARY KEY (org_id, txid)
);
CREATE UNIQUE INDEX ix_change_transaction_org_last_sequence ON change_transaction (org_id, last_sequence);
CREATE INDEX ix_change_transaction_org_committed_at ON change_transaction (org_id, committed_at);

CREATE TABLE change_entry (
  org_id UUID NOT NULL,
  txid xid8 NOT NULL,
  position BIGINT NOT NULL DEFAULT nextval('change_entry_position'),
  id UUID NOT NULL DEFAULT gen_random_uuid(),
  type TEXT NOT NULL,
  customer_id UUID NOT NULL,
  contact_id UUID,
  object_id UUID NOT NULL,  -- the contact, else the customer: one entry per object and transaction
  before JSONB,  -- the object's fields before the transaction (NULL: created)
  after JSONB,  -- and after it (NULL: deleted)
  -- No foreign key to its transaction's row: the trigger writes that row first, and a key's check would
  -- lock it again for every entry of an import.
  CONSTRAINT change_entry_pkey PRIMARY KEY (org_id, txid, position)
);
-- A customer's history, and the target of a second write of one object in one transaction.
CREATE UNIQUE INDEX uq_change_entry_customer_object ON change_entry (org_id, customer_id, txid, object_id);

-- An object's fields as the API names them.
CREATE FUNCTION cm_customer_fields(c customer) RETURNS JSONB
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT jsonb_build_object('name', c.name, 'erp_customer_number', c.erp_customer_number,
                            'default_currency', c.default_currency, 'default_language', c.default_language,
                            'billing_address', c.billing_address_json, 'shipping_address', c.shipping_address_json,
                            'metadata', c.metadata_json)
$$;

CREATE FUNCTION cm_contact_fields(c customer_contact) RETURNS JSONB
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT jsonb_build_object('email', c.email::text, 'name', c.name, 'is_primary', c.is_primary)
$$;

-- The type of two entries of one object in one transaction, joined.
CREATE FUNCTION cm_joined_type(first TEXT, second TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN first LIKE '%.created' AND second LIKE '%.updated' THEN first
              WHEN first LIKE '%.deleted' AND second LIKE '%.created' THEN replace(second, '.created', '.updated')
              ELSE second END
$$;

-- The transaction's row for the org, with who and where from the transaction's settings (a write by
-- hand in SQL: the database itself).
CREATE FUNCTION cm_setting(name TEXT) RETURNS TEXT LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting(name, true), '')
$$;

CREATE FUNCTION cm_note_transaction(changed_org UUID) RETURNS void LANGUAGE sql AS $$
  INSERT INTO change_transaction (org_id, txid, first_position, actor, source, request_id, import_id, merge_id)
  VALUES (changed_org, pg_current_xact_id(), nextval('change_entry_position'),
          coalesce(cm_setting('cm.actor')::jsonb, '{"type": "system", "id": null, "label": "sql"}'),
          coalesce(cm_setting('cm.source'), 'sql'), cm_setting('cm.request_id'),
          cm_setting('cm.import_id')::uuid, cm_setting('cm.merge_id')::uuid)
  ON CONFLICT (org_id, txid) DO NOTHING
$$;

-- Each trigger inserts its entries straight from its transition tables (no array in between: half the
-- cost); a second write of one object joins the entry of the first.
CREATE FUNCTION cm_customer_history() RETURNS trigger LANGUAGE plpgsql SET enable_nestloop = off AS $$
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

CREATE FUNCTION cm_contact_history() RETURNS trigger LANGUAGE plpgsql SET enable_nestloop = off AS $$
DECLARE
  changed_org UUID;
BEGIN
  IF TG_OP = 'INSERT' THEN
    FOR changed_org IN SELECT DISTINCT org_id FROM new_rows LOOP
      PERFORM cm_note_transaction(changed_org);
      INSERT INTO change_entry AS e (org_id, txid, type, customer_id, contact_id, object_id, before, after)
      SELECT n.org_id, pg_current_xact_id(), 'contact.created', n.customer_id, n.id, n.id, NULL, cm_contact_fields(n)
        FROM new_rows n WHERE n.org_id = changed_org
      ON CONFLICT (org_id, customer_id, txid, object_id) DO UPDATE
         SET position = EXCLUDED.position, type = cm_joined_type(e.type, EXCLUDED.type), after = EXCLUDED.after;
    END LOOP;
  ELSIF TG_OP = 'UPDATE' THEN
    -- A contact that moves to another customer (a merge) leaves the old one, then arrives at the new one.
    FOR changed_org IN SELECT DISTINCT org_id FROM new_rows LOOP
      PERFORM cm_note_transaction(changed_org);
      INSERT INTO change_entry AS e (org_id, txid, type, customer_id, contact_id, object_id, before, after)
      SELECT c.org_id, pg_current_xact_id(), c.type, c.customer_id, c.id, c.id, c.before, c.after
        FROM (SELECT n.org_id, n.customer_id, n.id, 'contact.updated' AS type,
                     cm_contact_fields(o) AS before, cm_contact_fields(n) AS after, 2 AS step
                FROM new_rows n JOIN old_rows o ON o.org_id = n.org_id AND o.id = n.id
               WHERE n.org_id = changed_org AND o.customer_id = n.customer_id
              UNION ALL
              SELECT o.org_id, o.customer_id, o.id, 'contact.deleted', cm_contact_fields(o), NULL, 1
                FROM new_rows n JOIN old_rows o ON o.org_id = n.org_id AND o.id = n.id
               WHERE n.org_id = changed_org AND o.customer_id <> n.customer_id
              UNION ALL
              SELECT n.org_id, n.customer_id, n.id, 'contact.created', NULL, cm_contact_fields(n), 2
                FROM new_rows n JOIN old_rows o ON o.org_id = n.org_id AND o.id = n.id
               WHERE n.org_id = changed_org AND o.customer_id <> n.customer_id) c
       WHERE c.before IS DISTINCT FROM c.after
       ORDER BY c.step
      ON CONFLICT (org_id, customer_id, txid, object_id) DO UPDATE
         SET position = EXCLUDED.position, type = cm_joined_type(e.type, EXCLUDED.type), after = EXCLUDED.after;
    END LOOP;
  ELSE
    FOR changed_org IN SELECT DISTINCT org_id FROM old_rows LOOP
      PERFORM cm_note_transaction(changed_org);
      INSERT INTO change_entry AS e (org_id, txid, type, customer_id, contact_id, object_id, before, after)
      SELECT o.org_id, pg_current_xact_id(), 'contact.deleted', o.customer_id, o.id, o.id, cm_contact_fields(o), NULL
        FROM old_rows o WHERE o.org_id = changed_org
      ON CONFLICT (org_id, customer_id, txid, object_id) DO UPDATE
         SET position = EXCLUDED.position, type = cm_joined_type(e.type, EXCLUDED.type), after = EXCLUDED.after;
      -- Contacts deleted by their customer's cascade: that customer's entry, written before the cascade ran,
      -- moves behind them (API.md §10: a customer's `deleted` comes after its contacts' entries).
      UPDATE change_entry e SET position = nextval('change_entry_position')
        FROM (SELECT DISTINCT customer_id FROM old_rows WHERE org_id = changed_org) d
       WHERE e.org_id = changed_org AND e.customer_id = d.customer_id AND e.txid = pg_current_xact_id()
         AND e.object_id = d.customer_id AND e.type = 'customer.deleted';
    END LOOP;
  END IF;
  RETURN NULL;
END $$;

CREATE TRIGGER customer_changes_inserted AFTER INSERT ON customer
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cm_customer_history();
CREATE TRIGGER customer_changes_updated AFTER UPDATE ON customer
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cm_customer_history();
CREATE TRIGGER customer_changes_deleted AFTER DELETE ON customer
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cm_customer_history();
CREATE TRIGGER contact_changes_inserted AFTER INSERT ON customer_contact
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cm_contact_history();
CREATE TRIGGER contact_changes_updated AFTER UPDATE ON customer_contact
  REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION cm_contact_history();
CREATE TRIGGER contact_changes_deleted AFTER DELETE ON customer_contact
  REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION cm_contact_history();

-- At commit: the transaction's place in its org's feed, past all its positions.
CREATE FUNCTION cm_stamp_change_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  taken BIGINT;
  last BIGINT;
BEGIN
  SELECT greatest(max(e.position) - NEW.first_position + 1, 1) INTO taken
    FROM change_entry e WHERE e.org_id = NEW.org_id AND e.txid = NEW.txid;
  taken := coalesce(taken, 1);
  INSERT INTO change_feed_position AS p (org_id, last_sequence) VALUES (NEW.org_id, taken)
  ON CONFLICT (org_id) DO UPDATE SET last_sequence = p.last_sequence + taken
  RETURNING p.last_sequence INTO last;
  UPDATE change_transaction
     SET first_sequence = last - taken + 1, last_sequence = last, committed_at = clock_timestamp()
   WHERE org_id = NEW.org_id AND txid = NEW.txid;
  PERFORM pg_notify('cm_events', NEW.org_id::text);
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER change_transaction_stamp AFTER INSERT ON change_transaction
  DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION cm_stamp_change_transaction();
"""

DOWNGRADE = """
DROP TRIGGER change_transaction_stamp ON change_transaction;
DROP FUNCTION cm_stamp_change_transaction();
DROP TRIGGER contact_changes_deleted ON customer_contact;
DROP TRIGGER contact_changes_updated ON customer_contact;
DROP TRIGGER contact_changes_inserted ON customer_contact;
DROP TRIGGER customer_changes_deleted ON customer;
DROP TRIGGER customer_changes_updated ON customer;
DROP TRIGGER customer_changes_inserted ON customer;
DROP FUNCTION cm_contact_history();
DROP FUNCTION cm_customer_history();
DROP FUNCTION cm_note_transaction(UUID);
DROP FUNCTION cm_setting(TEXT);
DROP FUNCTION cm_joined_type(TEXT, TEXT);
DROP FUNCTION cm_contact_fields(customer_contact);
DROP FUNCTION cm_customer_fields(customer);
DROP TABLE change_entry;
DROP TABLE change_transaction;
DROP SEQUENCE change_entry_position;
DROP TABLE change_feed_position;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
