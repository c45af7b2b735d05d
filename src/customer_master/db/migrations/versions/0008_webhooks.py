"""Webhooks (API.md §11 "Push"): endpoints with their place in the org's feed, and the log of every attempt.

- `webhook_endpoint`: one row per endpoint. `cursor` is the sequence of the last event of the org's feed
  (migration 0007) that the endpoint has had (delivered, or skipped by its `types`); it moves only after a
  2xx, and starts at the feed's end when the endpoint is created. `revision` moves with every change that
  moves the cursor from outside the worker (a replay) or changes what is sent next (`types`): a worker
  moves the cursor only where both are still what it read, so a replay is never overwritten by a
  delivery that was in flight. The retry state of the event being sent (`attempts` failed so far,
  `failing_since` the first failure, `next_attempt_at`) is reset by every 2xx. `secret` signs; after a
  rotation `previous_secret` signs too until `previous_secret_expires_at`. Secrets are kept in clear text:
  signing needs them (as every Standard Webhooks sender does).
- `webhook_delivery`: every attempt, newest first per endpoint (`GET /webhooks/{id}/deliveries`); it goes
  with its endpoint.

Both carry `org_id` in every key (distributed by org, like the feed they follow).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from customer_master.db.migrate import execute_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE TABLE webhook_endpoint (
  org_id UUID NOT NULL REFERENCES org (id) ON DELETE CASCADE,
  id UUID NOT NULL DEFAULT gen_random_uuid(),
  url TEXT NOT NULL,
  types TEXT[],  -- NULL: every type; else exact types and `prefix.*`
  description TEXT,
  status TEXT NOT NULL DEFAULT 'ACTIVE',
  secret TEXT NOT NULL,
  previous_secret TEXT,
  previous_secret_expires_at TIMESTAMPTZ,
  cursor BIGINT NOT NULL,
  revision BIGINT NOT NULL DEFAULT 0,
  attempts INTEGER NOT NULL DEFAULT 0,
  failing_since TIMESTAMPTZ,
  next_attempt_at TIMESTAMPTZ,
  created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
  CONSTRAINT webhook_endpoint_pkey PRIMARY KEY (org_id, id),
  CONSTRAINT ck_webhook_endpoint_status CHECK (status IN ('ACTIVE', 'DISABLED', 'FAILING'))
);
-- The worker's question, once a second: which active endpoints are due?
CREATE INDEX ix_webhook_endpoint_active ON webhook_endpoint (org_id, next_attempt_at) WHERE status = 'ACTIVE';
CREATE TRIGGER webhook_endpoint_updated_at BEFORE UPDATE ON webhook_endpoint
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

CREATE TABLE webhook_delivery (
  org_id UUID NOT NULL,
  endpoint_id UUID NOT NULL,
  id UUID NOT NULL DEFAULT gen_random_uuid(),
  event_id UUID NOT NULL,
  sequence BIGINT NOT NULL,
  attempt INTEGER NOT NULL,
  status_code INTEGER,
  error TEXT,
  duration_ms INTEGER NOT NULL,
  created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp(),
  CONSTRAINT webhook_delivery_pkey PRIMARY KEY (org_id, id),
  CONSTRAINT fk_webhook_delivery_endpoint FOREIGN KEY (org_id, endpoint_id)
    REFERENCES webhook_endpoint (org_id, id) ON DELETE CASCADE
);
CREATE INDEX ix_webhook_delivery_endpoint_created
  ON webhook_delivery (org_id, endpoint_id, created_at DESC, id DESC);
"""

DOWNGRADE = """
DROP TABLE webhook_delivery;
DROP TABLE webhook_endpoint;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
