"""CSV import and export of customers (API.md §6): reading, per-row validation, the upsert, the export."""
