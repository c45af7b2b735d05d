"""The SQL of detection (the signals of a request) and of the org settings it reads.

Every function takes the caller's org and reads or writes only within it. The statements of a
detection go straight to the driver (see `db.session.driver_connection`).

One statement finds every signal of a request (`signal_query`):

- S1/S2 read the contacts on the sender's domain (one index range, `ix_customer_contact_org_domain`):
  the exact address gives S1, any other address on the domain S2. On a public mail domain only the
  exact address is looked up (`idx_customer_contact_email`).
- S4 looks the numbers up in the partial unique index on the ERP number and in the ERP aliases of merges'
  survivors (`customer_erp_alias`): an alias finds its survivor as its own number would.
- Merged customers (tombstones, `merged_into` set) are never candidates: they have no contacts and no
  ERP number, the name index leaves them out, and every join to `customer` here asks for live ones, so
  a merge that commits between the name search and this statement cannot slip one in.
- S5 compares each text with the org's name keys in memory (`name_index`: exact pg_trgm similarity,
  current to the request); the statement ranks each text's matches by similarity and name and keeps its
  5 most similar customers; of those, the 5 most similar overall get the signal.
- A fixed-score signal (S1, S2) can hold for thousands of customers (one corporate domain); only those
  that can still reach the top 5 come back: the first 5 by name of each kind, and every customer that
  also has S4 or S5.

`name_index` keeps its own two statements (an org's names loaded, and caught up) beside the code that
decodes their rows.
"""

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master.auth.tenancy import OrgId
from customer_master.db.session import driver_connection
from customer_master.detection import name_index, scoring, signals
from customer_master.detection.signals import Evidence

# --- the signals of a request -----------------------------------------------------------------


@dataclass(frozen=True)
class NameHit:
    """A customer whose name key is at least 0.3 similar to a compared text; `ord` is the text's 1-based
    position among the compared texts."""

    ord: int
    line: str
    match: name_index.Match


class _Params:
    """Positional parameters for asyncpg, named once each: `p("org_id", value)` is `$1` wherever it is used."""

    def __init__(self) -> None:
        self.names: list[str] = []
        self.values: list[Any] = []

    def __call__(self, name: str, value: Any) -> str:
        if name not in self.names:
            self.names.append(name)
            self.values.append(value)
        return f"${self.names.index(name) + 1}"


def signal_query(org_id: OrgId, evidence: Evidence, name_hits: Sequence[NameHit]) -> tuple[str, list[Any]]:
    """One statement for the signals this request can have: rows of (customer, signal, value, similarity)."""
    p = _Params()
    org = p("org_id", org_id)
    ctes: list[str] = []
    parts: list[str] = []
    also_kept: list[str] = []
    if evidence.numbers:
        # By a customer's own number or an alias of it (a number may be neither); one signal per customer,
        # the number found first.
        numbers = p("numbers", evidence.numbers)
        ctes.append(f"""s4 AS (
            SELECT DISTINCT ON (found.customer_id) found.customer_id, found.value
              FROM (SELECT c.id AS customer_id, c.erp_customer_number AS value
                      FROM customer c
                     WHERE c.org_id = {org} AND c.erp_customer_number = ANY ({numbers}::text[])
                    UNION ALL
                    SELECT a.customer_id, a.erp_customer_number
                      FROM customer_erp_alias a
                     WHERE a.org_id = {org} AND a.erp_customer_number = ANY ({numbers}::text[])) AS found
             ORDER BY found.customer_id, array_position({numbers}::text[], found.value))""")
        parts.append("SELECT customer_id, 'S4_CUSTOMER_NUMBER', value, NULL::real FROM s4")
        also_kept.append("customer_id IN (SELECT customer_id FROM s4)")
    if name_hits:
        limit = p("s5_limit", signals.S5_MAX_CUSTOMERS)
        ctes.append(f"""name_matches AS (
            SELECT m.ord, m.line, m.customer_id, m.sim, lower(c.name) AS sort_name
              FROM unnest({p("hit_ords", [h.ord for h in name_hits])}::int[],
                          {p("hit_lines", [h.line for h in name_hits])}::text[],
                          {p("hit_ids", [h.match.customer_id for h in name_hits])}::uuid[],
                          {p("hit_sims", [h.match.similarity for h in name_hits])}::real[])
                   AS m(ord, line, customer_id, sim)
              JOIN customer c ON c.org_id = {org} AND c.id = m.customer_id AND c.merged_into IS NULL)""")
        # Per compared text its 5 most similar customers (ties by name); each customer's best text.
        ctes.append(f"""name_hits AS (
            SELECT DISTINCT ON (customer_id) customer_id, line AS value, sim, sort_name
              FROM (SELECT m.*, row_number() OVER (PARTITION BY m.ord ORDER BY m.sim DESC, m.sort_name, m.customer_id)
                           AS position
                      FROM name_matches m) AS ranked
             WHERE position <= {limit}
             ORDER BY customer_id, sim DESC, ord)""")
        ctes.append(f"""s5 AS (
            SELECT customer_id, value, sim FROM name_hits ORDER BY sim DESC, sort_name, customer_id LIMIT {limit})""")
        parts.append("SELECT customer_id, 'S5_NAME', value, sim FROM s5")
        also_kept.append("customer_id IN (SELECT customer_id FROM s5)")
    if evidence.sender:
        email = p("email", evidence.sender)
        if evidence.domain:
            domain = p("domain", evidence.domain)
            ctes.append(f"""contact_hits AS (
                SELECT cc.customer_id, bool_or(cc.email = {email}::citext) AS exact
                  FROM customer_contact cc
                 WHERE cc.org_id = {org} AND lower(split_part(cc.email::text, '@', 2)) = {domain}::text
                 GROUP BY cc.customer_id)""")
        else:
            domain = "NULL"
            ctes.append(f"""contact_hits AS (
                SELECT DISTINCT cc.customer_id, true AS exact
                  FROM customer_contact cc
                 WHERE cc.org_id = {org} AND cc.email = {email}::citext)""")
        ctes.append(f"""contact_ranked AS (
            SELECT h.customer_id, h.exact,
                   row_number() OVER (PARTITION BY h.exact ORDER BY lower(c.name), c.id) AS position
              FROM contact_hits h
              JOIN customer c ON c.org_id = {org} AND c.id = h.customer_id AND c.merged_into IS NULL)""")
        keep = " OR ".join([f"position <= {p('max_candidates', scoring.MAX_CANDIDATES)}", *also_kept])
        parts.append(f"""SELECT customer_id, CASE WHEN exact THEN 'S1_EMAIL' ELSE 'S2_DOMAIN' END,
                   CASE WHEN exact THEN {email}::text ELSE {domain}::text END, NULL::real
              FROM contact_ranked WHERE {keep}""")
    sql = f"""
        WITH {", ".join(ctes)}
        SELECT c.id, c.name, c.erp_customer_number, s.signal, s.value, s.sim
          FROM ({" UNION ALL ".join(parts)}) AS s (customer_id, signal, value, sim)
          JOIN customer c ON c.org_id = {org} AND c.id = s.customer_id AND c.merged_into IS NULL"""
    return sql, p.values


# The compared texts' keys and trigrams, and the org's name version, in one round trip.
COMPARED = """
SELECT t.ord, k.key, show_trgm(k.key) AS trigrams,
       coalesce((SELECT version FROM customer_name_version WHERE org_id = $1), 0) AS version,
       (SELECT epoch FROM customer_name_version WHERE org_id = $1) AS epoch
  FROM unnest($2::text[]) WITH ORDINALITY AS t(line, ord)
 CROSS JOIN LATERAL (SELECT cm_company_key(t.line) AS key) AS k
 ORDER BY t.ord"""


async def _name_hits(session: AsyncSession, conn: asyncpg.Connection, org_id: OrgId, names: list[str]) -> list[NameHit]:
    """S5's matches: per compared text, its most similar customers. Texts with the same key are compared
    once (the first of them is the signal's value)."""
    compared = await conn.fetch(COMPARED, org_id, names)
    index = await name_index.indexes_for(session).current(conn, org_id, compared[0]["epoch"], compared[0]["version"])
    hits: list[NameHit] = []
    seen: set[str] = set()
    for row in compared:
        if row["key"] and row["key"] not in seen:
            seen.add(row["key"])
            line = names[row["ord"] - 1]
            hits.extend(NameHit(row["ord"], line, match) for match in index.most_similar(row["trigrams"]))
    return hits


async def signal_rows(session: AsyncSession, org_id: OrgId, evidence: Evidence) -> Sequence[Any]:
    """The rows of `signal_query`: none, without a round trip, when the request offers nothing to look up."""
    if not (evidence.sender or evidence.numbers or evidence.names):
        return []
    conn = await driver_connection(session)
    name_hits = await _name_hits(session, conn, org_id, evidence.names) if evidence.names else []
    if not (evidence.sender or evidence.numbers or name_hits):
        return []
    sql, args = signal_query(org_id, evidence, name_hits)
    return await conn.fetch(sql, *args)


# --- org settings -----------------------------------------------------------------------------


async def org_settings_json(session: AsyncSession, org_id: OrgId) -> dict[str, Any] | None:
    """The org's stored settings; None when there is no such org. On the driver: detection reads them on
    every call."""
    conn = await driver_connection(session)
    stored = await conn.fetchval("SELECT settings_json FROM org WHERE id = $1", org_id)
    if stored is None:
        return None
    return stored if isinstance(stored, dict) else json.loads(stored)


async def lock_org_settings_json(session: AsyncSession, org_id: OrgId) -> dict[str, Any] | None:
    """The org's stored settings, locked until the transaction ends (two admins patching at once: one after
    the other); None when there is no such org."""
    stored = await session.scalar(
        text("SELECT settings_json FROM org WHERE id = :org_id FOR NO KEY UPDATE"), {"org_id": org_id}
    )
    return None if stored is None else dict(stored)


async def write_org_settings_json(session: AsyncSession, org_id: OrgId, stored: dict[str, Any]) -> None:
    await session.execute(
        text("UPDATE org SET settings_json = CAST(:settings AS jsonb) WHERE id = :org_id"),
        {"settings": json.dumps(stored), "org_id": org_id},
    )
