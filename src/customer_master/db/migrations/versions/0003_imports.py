"""CSV imports: the `import_run` record of every import, and the aggregate the import's merge uses.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from customer_master.db.migrate import execute_script

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = r"""
-- One record per import that was read (dry runs and CLI imports too): who, when, which file, counts.
CREATE TABLE import_run (
  id UUID PRIMARY KEY DEFAULT gen_random_uuid(),
  org_id UUID NOT NULL REFERENCES org (id) ON DELETE RESTRICT,
  -- clock_timestamp(): when the import finished, so "newest first" is the order they completed in.
  created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  source TEXT NOT NULL CONSTRAINT ck_import_run_source CHECK (source IN ('api', 'cli')),
  user_id UUID,
  user_email TEXT,
  token_id UUID,
  token_name TEXT,
  file_name TEXT,
  dry_run BOOLEAN NOT NULL,
  encoding TEXT NOT NULL,
  delimiter TEXT NOT NULL,
  row_count INTEGER NOT NULL,
  imported INTEGER NOT NULL,
  updated INTEGER NOT NULL,
  unchanged INTEGER NOT NULL,
  failed INTEGER NOT NULL,
  contacts_created INTEGER NOT NULL,
  contacts_updated INTEGER NOT NULL,
  duration_ms INTEGER NOT NULL
);
CREATE INDEX ix_import_run_org_created ON import_run (org_id, created_at DESC, id DESC);

-- Merges JSON objects in aggregate order (later keys win): the metadata cells of several rows that
-- describe one customer. jsonb_concat is the C function behind `||`; being strict, NULLs are skipped.
CREATE AGGREGATE cm_jsonb_merge(jsonb) (SFUNC = jsonb_concat, STYPE = jsonb);
"""

DOWNGRADE = """
DROP AGGREGATE cm_jsonb_merge(jsonb);
DROP TABLE import_run;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
