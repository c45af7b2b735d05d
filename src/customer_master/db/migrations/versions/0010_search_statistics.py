"""Search statistics: the folded name's statistics sample ten times as many names (`SET STATISTICS 1000`).

The planner estimates how many names contain a search term (`name_fold LIKE '%term%'`) from the share of
the column's histogram that contains it. With the default 100 entries, a term in 1 % of an org's names is
in no entry about a third of the time: at 1,000,000 customers the estimate then falls to 100 rows, the
planner reads all 11,000 matches through the trigram index and sorts them (120 ms) instead of walking the
names in order until it has a page (5 ms). With 1,000 entries the term is in about ten of them. ANALYZE of
`customer` costs more for it (0.6 → 6.7 s at 1,000,000 rows, 0.5 → 2.7 s at 150,000; autovacuum runs it, and
an import only when the statistics are stale). Measured in bench/RESULTS.md (API, issue 13).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from customer_master.db.migrate import execute_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE customer ALTER COLUMN name_fold SET STATISTICS 1000;
"""

DOWNGRADE = r"""
ALTER TABLE customer ALTER COLUMN name_fold SET STATISTICS -1;
"""


def upgrade() -> None:
    execute_script(UPGRADE)


def downgrade() -> None:
    execute_script(DOWNGRADE)
