"""Customer detection: the company-name key for S5 and the contact lookup by sender domain.

- `cm_company_key(text)`: case and accents folded (`cm_fold`), dots dropped, other punctuation turned
  into spaces, legal-form words (GmbH, AG, Co, KG, e.K., Ltd, S.p.A., …) left out, so that they do not
  dominate the trigram similarity. The separators and words are `detection/signals.py`'s
  `KEY_SEPARATORS` and `LEGAL_FORM_WORDS` as of this revision (`tests/detection` checks that they still
  agree; a changed list needs a new migration that replaces the function and rebuilds the column).
  PL/pgSQL, because a word loop costs ~5 µs a name where one regular expression over all legal forms
  costs ~20 µs (PostgreSQL's regex engine and large alternations), which every imported row pays.
- `customer.name_key`: that key, stored, with a trigram GIN index led by `org_id`. Stored rather than an
  expression index, so that ranking and the index recheck read it instead of recomputing the key for every
  candidate row.
- An index on the domain of contact e-mails within an org, for S2 (and S1, the same rows).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from customer_master.db.migrate import execute_script

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE OR REPLACE FUNCTION cm_company_key(name text) RETURNS text
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE STRICT
AS $fn$
DECLARE
  words text[] := string_to_array(btrim(regexp_replace(replace(public.cm_fold(name), '.', ''),
    $sep$[\t\n\r\f\v \u00a0\u2009\u202f,;:!?'\"`´’‘“”„«»()\[\]{}<>/\\|&+*=#@_~^\u2013\u2014-]+$sep$, ' ', 'g')), ' ');
  word text;
  kept text := '';
BEGIN
  FOREACH word IN ARRAY words LOOP
    IF word <> ALL ('{ab,ag,aps,as,asa,bv,bvba,co,corp,corporation,eg,ek,ekfm,ekfr,eurl,ev,gbr,ggmbh,gmbh,
     haftungsbeschrankt,inc,incorporated,kft,kg,kgaa,limited,llc,llp,ltd,mbh,nv,og,ohg,oy,oyj,plc,sa,
     sagl,sarl,sas,sasu,se,sl,slu,snc,spa,srl,sro,ug}'::text[]) THEN
      kept := kept || ' ' || word;
    END IF;
  END LOOP;
  IF kept = '' THEN
    RETURN array_to_string(words, ' ');  -- nothing but legal forms: keep them
  END IF;
  RETURN substr(kept, 2);
END
$fn$;

ALTER TABLE customer ADD COLUMN name_key TEXT GENERATED ALWAYS AS (cm_company_key(name)) STORED;
-- Led by org_id (btree_gin): a search reads and rechecks only its own org's names, so a small org's
-- detection does not pay for the big orgs that share the table.
CREATE EXTENSION IF NOT EXISTS btree_gin;
CREATE INDEX ix_customer_org_name_key_trgm ON customer USING gin (org_id, name_key gin_trgm_ops);

CREATE INDEX ix_customer_contact_org_domain ON customer_contact (org_id, lower(split_part(email::text, '@', 2)));

-- A stored generated column is not computed yet in a BEFORE trigger (NULL in NEW, recomputed after it),
-- so `NEW IS DISTINCT FROM OLD` would hold for every UPDATE of a customer, no-ops too, and move
-- updated_at. Compare with the old key in its place.
CREATE FUNCTION update_customer_updated_at_column() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.name_key := OLD.name_key;
  IF NEW IS DISTINCT FROM OLD THEN
    NEW.updated_at = now();
  END IF;
  RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER update_customer_updated_at BEFORE UPDATE ON customer
  FOR EACH ROW EXECUTE FUNCTION update_customer_updated_at_column();
"""

DOWNGRADE = """
CREATE OR REPLACE TRIGGER update_customer_updated_at BEFORE UPDATE ON customer
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
DROP FUNCTION update_customer_updated_at_column();
DROP INDEX ix_customer_contact_org_domain;
ALTER TABLE customer DROP COLUMN name_key;
DROP FUNCTION cm_company_key(text);
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
