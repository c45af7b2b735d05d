"""Change history and the event feed (API.md §10, §11): recorded by the database, in the writing transaction.

Every write path (API, web UI, import, CLI, merge) changes `customer` and `customer_contact` with SQL;
statement-level triggers with transition tables compare the old and new rows column by column and
record one entry per changed row, set-based, so that an import of 100,000 rows records its changes in a
few statements and nothing can write without an entry (DESIGN.md "History and events").

- `change_transaction`: one row per writing transaction and org. Who wrote, from where and on behalf of
  which request, import or merge travels in transaction-local settings (`cm.actor`, `cm.source`,
  `cm.request_id`, `cm.import_id`, `cm.merge_id`, set by `history/context.py`) and is stored here once.
  `entries` counts the positions the transaction took.
- `change_entry`: the entries, `position` in the order they were written. Within a transaction one
  entry per customer or contact: a second write of the same object merges into the first (`from` of the
  first, `to` of the last, fields that ended where they began dropped) and moves to the later position,
  so a customer's `deleted` comes after its contacts' entries. An entry whose changes cancelled out keeps
  `{}` and is never shown.
- Commit order: at commit a deferred constraint trigger takes the org's `change_feed_position` row,
  moves it by `entries` and stamps the transaction with its first `sequence` (entry sequence =
  `first_sequence + position - 1`). The lock is held only for the commit, so sequences follow commit order
  per org: a reader who sees sequence N has seen every lower one, and a cursor never skips a transaction
  that committed late. The same commit sends `NOTIFY cm_events` with the org id for waiting readers.
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

CREATE TABLE change_transaction (
  org_id UUID NOT NULL REFERENCES org (id) ON DELETE CASCADE,
  txid xid8 NOT NULL,
  entries INTEGER NOT NULL DEFAULT 0,
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
  position INTEGER NOT NULL,
  id UUID NOT NULL DEFAULT gen_random_uuid(),
  type TEXT NOT NULL,
  customer_id UUID NOT NULL,
  contact_id UUID,
  object_id UUID NOT NULL,  -- the contact, else the customer: one entry per object and transaction
  changes JSONB NOT NULL,
  CONSTRAINT change_entry_pkey PRIMARY KEY (org_id, txid, position),
  CONSTRAINT fk_change_entry_transaction FOREIGN KEY (org_id, txid)
    REFERENCES change_transaction (org_id, txid) ON DELETE CASCADE
);
-- A customer's history, and the target of the merge of a second write of one object in one transaction.
CREATE UNIQUE INDEX uq_change_entry_customer_object ON change_entry (org_id, customer_id, txid, object_id);

-- One entry's `changes`: {"field": {"from": …, "to": …}} for exactly the fields whose value differs.
CREATE FUNCTION cm_field_change(field TEXT, old_value JSONB, new_value JSONB) RETURNS JSONB
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN coalesce(old_value, 'null') = coalesce(new_value, 'null') THEN '{}'::jsonb
         ELSE jsonb_build_object(field, jsonb_build_object('from', coalesce(old_value, 'null'),
                                                            'to', coalesce(new_value, 'null'))) END
$$;

-- An object stored as JSON (an address, the metadata): one key per field, `prefix.key`. SQL NULL and JSON
-- `null` (what the ORM writes for None) both mean "no object".
CREATE FUNCTION cm_object_changes(prefix TEXT, old_object JSONB, new_object JSONB) RETURNS JSONB
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN old_object IS NOT DISTINCT FROM new_object THEN '{}'::jsonb ELSE (
    SELECT coalesce(jsonb_object_agg(prefix || '.' || key,
                                     jsonb_build_object('from', coalesce(was -> key, 'null'),
                                                        'to', coalesce(now -> key, 'null'))), '{}')
      FROM (SELECT CASE WHEN jsonb_typeof(old_object) = 'object' THEN old_object ELSE '{}' END,
                   CASE WHEN jsonb_typeof(new_object) = 'object' THEN new_object ELSE '{}' END) AS objects (was, now),
           LATERAL (SELECT jsonb_object_keys(was) UNION SELECT jsonb_object_keys(now)) AS keys (key)
     WHERE coalesce(was -> key, 'null') <> coalesce(now -> key, 'null')) END
$$;

-- NULL for the row that is not there (created: no old row; deleted: no new row).
CREATE FUNCTION cm_customer_changes(o customer, n customer) RETURNS JSONB
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT cm_field_change('name', to_jsonb(o.name), to_jsonb(n.name))
      || cm_field_change('erp_customer_number', to_jsonb(o.erp_customer_number), to_jsonb(n.erp_customer_number))
      || cm_field_change('default_currency', to_jsonb(o.default_currency), to_jsonb(n.default_currency))
      || cm_field_change('default_language', to_jsonb(o.default_language), to_jsonb(n.default_language))
      || cm_object_changes('billing_address', o.billing_address_json, n.billing_address_json)
      || cm_object_changes('shipping_address', o.shipping_address_json, n.shipping_address_json)
      || cm_object_changes('metadata', o.metadata_json, n.metadata_json)
$$;

CREATE FUNCTION cm_contact_changes(o customer_contact, n customer_contact) RETURNS JSONB
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT cm_field_change('email', to_jsonb(o.email::text), to_jsonb(n.email::text))
      || cm_field_change('name', to_jsonb(o.name), to_jsonb(n.name))
      || cm_field_change('is_primary', to_jsonb(o.is_primary), to_jsonb(n.is_primary))
$$;

-- Two entries of one object in one transaction as one: `from` of the first, `to` of the second.
CREATE FUNCTION cm_merged_changes(first JSONB, second JSONB) RETURNS JSONB
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT coalesce(jsonb_object_agg(key, jsonb_build_object('from', was, 'to', now)), '{}')
    FROM (SELECT key,
                 CASE WHEN first ? key THEN first -> key -> 'from' ELSE second -> key -> 'from' END AS was,
                 CASE WHEN second ? key THEN second -> key -> 'to' ELSE first -> key -> 'to' END AS now
            FROM (SELECT jsonb_object_keys(first) UNION SELECT jsonb_object_keys(second)) AS keys (key)) AS merged
   WHERE was <> now
$$;

CREATE FUNCTION cm_merged_type(first TEXT, second TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT CASE WHEN first LIKE '%.created' AND second LIKE '%.updated' THEN first
              WHEN first LIKE '%.deleted' AND second LIKE '%.created' THEN replace(second, '.created', '.updated')
              ELSE second END
$$;

CREATE TYPE cm_change AS (org_id UUID, customer_id UUID, contact_id UUID, type TEXT, changes JSONB);

-- Who and where: the transaction's settings, or (a write by hand in SQL) the database itself.
CREATE FUNCTION cm_setting(name TEXT) RETURNS TEXT LANGUAGE sql STABLE AS $$
  SELECT nullif(current_setting(name, true), '')
$$;

CREATE FUNCTION cm_record_changes(changes cm_change[]) RETURNS void
LANGUAGE plpgsql SET enable_nestloop = off AS $$
DECLARE
  tx xid8 := pg_current_xact_id();
  changed_org UUID;
  how_many INTEGER;
  base INTEGER;
BEGIN
  IF changes IS NULL THEN
    RETURN;
  END IF;
  FOR changed_org, how_many IN SELECT c.org_id, count(*) FROM unnest(changes) c GROUP BY c.org_id LOOP
    INSERT INTO change_transaction (org_id, txid, actor, source, request_id, import_id, merge_id)
    VALUES (changed_org, tx,
            coalesce(cm_setting('cm.actor')::jsonb, '{"type": "system", "id": null, "label": "sql"}'),
            coalesce(cm_setting('cm.source'), 'sql'), cm_setting('cm.request_id'),
            cm_setting('cm.import_id')::uuid, cm_setting('cm.merge_id')::uuid)
    ON CONFLICT (org_id, txid) DO NOTHING;
    UPDATE change_transaction SET entries = entries + how_many
     WHERE org_id = changed_org AND txid = tx
    RETURNING entries - how_many INTO base;
    INSERT INTO change_entry AS e (org_id, txid, position, type, customer_id, contact_id, object_id, changes)
    SELECT changed_org, tx, base + row_number() OVER (ORDER BY c.ordinal), c.type, c.customer_id, c.contact_id,
           coalesce(c.contact_id, c.customer_id), c.changes
      FROM unnest(changes) WITH ORDINALITY AS c (org_id, customer_id, contact_id, type, changes, ordinal)
     WHERE c.org_id = changed_org
    ON CONFLICT (org_id, customer_id, txid, object_id) DO UPDATE
       SET position = EXCLUDED.position,
           type = cm_merged_type(e.type, EXCLUDED.type),
           changes = cm_merged_changes(e.changes, EXCLUDED.changes);
  END LOOP;
END $$;

CREATE FUNCTION cm_move_customer_entries_last(changed_org UUID, customers UUID[]) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  tx xid8 := pg_current_xact_id();
  moved INTEGER;
  base INTEGER;
BEGIN
  SELECT count(*) INTO moved FROM change_entry
   WHERE org_id = changed_org AND customer_id = ANY (customers) AND txid = tx AND object_id = customer_id
     AND type = 'customer.deleted';
  IF moved = 0 THEN
    RETURN;
  END IF;
  UPDATE change_transaction SET entries = entries + moved
   WHERE org_id = changed_org AND txid = tx
  RETURNING entries - moved INTO base;
  UPDATE change_entry e SET position = base + last.rank
    FROM (SELECT customer_id, row_number() OVER (ORDER BY position) AS rank FROM change_entry
           WHERE org_id = changed_org AND customer_id = ANY (customers) AND txid = tx AND object_id = customer_id
             AND type = 'customer.deleted') AS last
   WHERE e.org_id = changed_org AND e.customer_id = last.customer_id AND e.txid = tx
     AND e.object_id = last.customer_id;
END $$;

CREATE FUNCTION cm_customer_history() RETURNS trigger LANGUAGE plpgsql SET enable_nestloop = off AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM cm_record_changes(array_agg(ROW(n.org_id, n.id, NULL, 'customer.created',
                                            cm_customer_changes(NULL, n))::cm_change))
       FROM new_rows n;
  ELSIF TG_OP = 'UPDATE' THEN
    PERFORM cm_record_changes(array_agg(ROW(c.org_id, c.id, NULL, 'customer.updated', c.changes)::cm_change))
       FROM (SELECT n.org_id, n.id, cm_customer_changes(o, n) AS changes
               FROM new_rows n JOIN old_rows o ON o.org_id = n.org_id AND o.id = n.id) c
      WHERE c.changes <> '{}';
  ELSE
    PERFORM cm_record_changes(array_agg(ROW(o.org_id, o.id, NULL, 'customer.deleted',
                                            cm_customer_changes(o, NULL))::cm_change))
       FROM old_rows o;
  END IF;
  RETURN NULL;
END $$;

CREATE FUNCTION cm_contact_history() RETURNS trigger LANGUAGE plpgsql SET enable_nestloop = off AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    PERFORM cm_record_changes(array_agg(ROW(n.org_id, n.customer_id, n.id, 'contact.created',
                                            cm_contact_changes(NULL, n))::cm_change))
       FROM new_rows n;
  ELSIF TG_OP = 'UPDATE' THEN
    -- A contact that moves to another customer (a merge) leaves the old one and arrives at the new one.
    PERFORM cm_record_changes(array_agg(ROW(c.org_id, c.customer_id, c.id, c.type, c.changes)::cm_change
                                        ORDER BY c.ordinal))
       FROM (SELECT n.org_id, n.customer_id, n.id, 'contact.updated' AS type, cm_contact_changes(o, n) AS changes,
                    2 AS ordinal
               FROM new_rows n JOIN old_rows o ON o.org_id = n.org_id AND o.id = n.id
              WHERE o.customer_id = n.customer_id
             UNION ALL
             SELECT o.org_id, o.customer_id, o.id, 'contact.deleted', cm_contact_changes(o, NULL), 1
               FROM new_rows n JOIN old_rows o ON o.org_id = n.org_id AND o.id = n.id
              WHERE o.customer_id <> n.customer_id
             UNION ALL
             SELECT n.org_id, n.customer_id, n.id, 'contact.created', cm_contact_changes(NULL, n), 2
               FROM new_rows n JOIN old_rows o ON o.org_id = n.org_id AND o.id = n.id
              WHERE o.customer_id <> n.customer_id) c
      WHERE c.changes <> '{}';
  ELSE
    PERFORM cm_record_changes(array_agg(ROW(o.org_id, o.customer_id, o.id, 'contact.deleted',
                                            cm_contact_changes(o, NULL))::cm_change))
       FROM old_rows o;
    -- Contacts deleted by their customer's cascade: that customer's entry, written before its cascade
    -- ran, moves behind them (API.md §10: a customer's `deleted` comes after its contacts' entries).
    PERFORM cm_move_customer_entries_last(o.org_id, array_agg(DISTINCT o.customer_id))
       FROM old_rows o GROUP BY o.org_id;
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

-- At commit: the transaction's place in its org's feed.
CREATE FUNCTION cm_stamp_change_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  taken INTEGER;
  last BIGINT;
BEGIN
  SELECT entries INTO taken FROM change_transaction WHERE org_id = NEW.org_id AND txid = NEW.txid;
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
DROP FUNCTION cm_move_customer_entries_last(UUID, UUID[]);
DROP FUNCTION cm_record_changes(cm_change[]);
DROP FUNCTION cm_setting(TEXT);
DROP TYPE cm_change;
DROP FUNCTION cm_merged_type(TEXT, TEXT);
DROP FUNCTION cm_merged_changes(JSONB, JSONB);
DROP FUNCTION cm_contact_changes(customer_contact, customer_contact);
DROP FUNCTION cm_customer_changes(customer, customer);
DROP FUNCTION cm_object_changes(TEXT, JSONB, JSONB);
DROP FUNCTION cm_field_change(TEXT, JSONB, JSONB);
DROP TABLE change_entry;
DROP TABLE change_transaction;
DROP TABLE change_feed_position;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
