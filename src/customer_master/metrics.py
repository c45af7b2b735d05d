"""Prometheus metrics of the process."""

from prometheus_client import Counter, Gauge, Histogram

HTTP_REQUESTS = Counter("http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_DURATION = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
IMPORT_ROWS = Counter("customer_import_rows_total", "CSV rows imported, by outcome", ["outcome"])
DB_POOL_CONNECTIONS = Gauge("db_pool_connections", "Database connections of this process's pools", ["state"])
# Webhooks (API.md §8, §11): every attempt, and the (endpoint, event) pairs not yet delivered to active
# endpoints of every org (refreshed by the delivery worker).
WEBHOOK_DELIVERIES = Counter("webhook_deliveries_total", "Webhook delivery attempts, by outcome", ["outcome"])
for _outcome in ("delivered", "failed"):
    WEBHOOK_DELIVERIES.labels(_outcome)
WEBHOOK_PENDING_EVENTS = Gauge("webhook_pending_events", "Events not yet delivered to active webhook endpoints")
