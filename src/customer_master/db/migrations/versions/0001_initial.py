"""Orgs, users, API tokens, idempotency records, customers and contacts.

The seed's schema with DESIGN.md's decisions: the partial unique index on the ERP number, one
primary contact per customer as a partial unique index, the contact's composite foreign key to its
customer's org, the `updated_at` trigger, and the indexes that search and pagination need.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from customer_master.db.migrate import execute_script

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE EXTENSION IF NOT EXISTS citext;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- Moves updated_at only when the row really changed, so a no-op UPDATE keeps it.
CREATE OR REPLACE FUNCTION update_updated_at_column() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF NEW IS DISTINCT FROM OLD THEN
    NEW.updated_at = now();
  END IF;
  RETURN NEW;
END $$;

-- Case and accent folding for search. unaccent() is only STABLE; naming its dictionary makes
-- the result fixed, so this wrapper may be IMMUTABLE and sit in an index expression.
CREATE OR REPLACE FUNCTION cm_fold(text) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, $1)) $$;

CREATE TABLE org (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  name TEXT NOT NULL,
  slug TEXT NOT NULL CONSTRAINT uq_org_slug UNIQUE
    CONSTRAINT ck_org_slug CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
  settings_json JSONB NOT NULL DEFAULT '{}'::jsonb,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE app_user (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id UUID NOT NULL REFERENCES org (id) ON DELETE RESTRICT,
  email CITEXT NOT NULL,
  name TEXT,
  role TEXT NOT NULL CONSTRAINT ck_app_user_role CHECK (role IN ('VIEWER', 'OPS', 'INTEGRATOR', 'ADMIN')),
  password_hash TEXT NOT NULL,
  status TEXT NOT NULL DEFAULT 'ACTIVE' CONSTRAINT ck_app_user_status CHECK (status IN ('ACTIVE', 'DISABLED')),
  last_login_at TIMESTAMPTZ,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT uq_app_user_org_email UNIQUE (org_id, email)
);

CREATE TABLE api_token (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id UUID NOT NULL REFERENCES org (id) ON DELETE RESTRICT,
  name TEXT NOT NULL,
  role TEXT NOT NULL CONSTRAINT ck_api_token_role CHECK (role IN ('VIEWER', 'OPS', 'INTEGRATOR', 'ADMIN')),
  token_hash TEXT NOT NULL CONSTRAINT uq_api_token_hash UNIQUE,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  last_used_at TIMESTAMPTZ
);
CREATE INDEX ix_api_token_org ON api_token (org_id, created_at);

-- Failed logins per account ("org-slug:email"), for throttling across processes.
CREATE TABLE login_failure (
  account_key TEXT NOT NULL,
  failed_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX ix_login_failure_account ON login_failure (account_key, failed_at);

CREATE TABLE idempotency_key (
  org_id UUID NOT NULL REFERENCES org (id) ON DELETE RESTRICT,
  method TEXT NOT NULL,
  path TEXT NOT NULL,
  key TEXT NOT NULL,
  request_hash TEXT NOT NULL,
  status_code INTEGER NOT NULL,
  response_body JSONB NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  PRIMARY KEY (org_id, method, path, key)
);

CREATE TABLE customer (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id UUID NOT NULL REFERENCES org (id) ON DELETE RESTRICT,
  name TEXT NOT NULL,
  erp_customer_number TEXT,
  default_currency TEXT NOT NULL,
  default_language TEXT NOT NULL,
  billing_address_json JSONB,
  shipping_address_json JSONB,
  metadata_json JSONB,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  -- The target of the contacts' (org_id, customer_id) foreign key (decision 4).
  CONSTRAINT uq_customer_org_id UNIQUE (org_id, id)
);
CREATE UNIQUE INDEX uq_customer_org_erp ON customer (org_id, erp_customer_number)
  WHERE erp_customer_number IS NOT NULL;
CREATE INDEX idx_customer_org_name ON customer (org_id, name);
-- Keyset pagination: ORDER BY lower(name), id within the org.
CREATE INDEX ix_customer_org_lower_name_id ON customer (org_id, lower(name), id);
-- q= arms, one index each: folded name substring, ERP number prefix.
CREATE INDEX ix_customer_name_fold_trgm ON customer USING gin (cm_fold(name) gin_trgm_ops);
CREATE INDEX ix_customer_org_erp_prefix ON customer (org_id, lower(erp_customer_number) text_pattern_ops);
CREATE TRIGGER update_customer_updated_at BEFORE UPDATE ON customer
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

CREATE TABLE customer_contact (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id UUID NOT NULL REFERENCES org (id) ON DELETE RESTRICT,
  customer_id UUID NOT NULL,
  email CITEXT NOT NULL,
  name TEXT,
  is_primary BOOLEAN NOT NULL DEFAULT false,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT uq_contact_customer_email UNIQUE (customer_id, email),
  CONSTRAINT fk_customer_contact_customer FOREIGN KEY (org_id, customer_id)
    REFERENCES customer (org_id, id) ON DELETE CASCADE
);
CREATE UNIQUE INDEX uq_contact_one_primary ON customer_contact (customer_id) WHERE is_primary;
CREATE INDEX idx_customer_contact_org_customer ON customer_contact (org_id, customer_id);
CREATE INDEX idx_customer_contact_email ON customer_contact (org_id, email);

CREATE TRIGGER update_org_updated_at BEFORE UPDATE ON org
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
CREATE TRIGGER update_app_user_updated_at BEFORE UPDATE ON app_user
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
CREATE TRIGGER update_customer_contact_updated_at BEFORE UPDATE ON customer_contact
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
"""

DOWNGRADE = """
DROP TABLE customer_contact;
DROP TABLE customer;
DROP TABLE idempotency_key;
DROP TABLE login_failure;
DROP TABLE api_token;
DROP TABLE app_user;
DROP TABLE org;
DROP FUNCTION cm_fold(text);
DROP FUNCTION update_updated_at_column();
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
