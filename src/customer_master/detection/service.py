"""Customer detection (API.md §7): which of the org's customers sent this order?

The request is read into evidence (pure, `signals`), then one statement finds every signal at once,
set-based and always within the caller's org, and `scoring` turns the rows into the answer.

- S1/S2 read the contacts on the sender's domain (one index range, `ix_customer_contact_org_domain`):
  the exact address gives S1, any other address on the domain S2. On a public mail domain only the
  exact address is looked up (`idx_customer_contact_email`).
- S4 looks the numbers up in the partial unique index on the ERP number.
- S5 compares each text with the org's name keys in memory (`name_index`: exact pg_trgm similarity,
  current to the request); the statement ranks each text's matches by similarity and name and keeps its
  5 most similar customers; of those, the 5 most similar overall get the signal.
- A fixed-score signal (S1, S2) can hold for thousands of customers (one corporate domain); only those
  that can still reach the top 5 come back: the first 5 by name of each kind, and every customer that
  also has S4 or S5.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master import validation
from customer_master.auth.tenancy import OrgId
from customer_master.db.session import driver_connection
from customer_master.detection import name_index, scoring, signals
from customer_master.detection.schemas import (
    CandidateOut,
    CustomerDetectionSettings,
    DetectRequest,
    DetectResult,
    SignalOut,
)
from customer_master.detection.settings import detection_settings

# A header line longer than this is not compared as a company name (a name has at most 500 characters,
# so such a line is not one); it also bounds the trigram search a single request can cause.
MAX_NAME_TEXT = 1000


@dataclass
class Evidence:
    """What a request offers to look up, normalised the way the stored data is."""

    sender: str | None = None
    domain: str | None = None  # None on a public mail domain: no S2
    numbers: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class NameHit:
    """A customer whose name key is at least 0.3 similar to a compared text; `ord` is the text's 1-based
    position among the compared texts."""

    ord: int
    line: str
    match: name_index.Match


def gather_evidence(request: DetectRequest, settings: CustomerDetectionSettings) -> Evidence:
    hint = request.customer_hint
    raw_sender = request.from_email if request.from_email else (hint.email if hint else None)
    sender = signals.normalize_sender(raw_sender)
    domain = signals.email_domain(sender) if sender else None
    if domain is not None and signals.is_public_domain(domain, settings.public_domains_extra):
        domain = None
    numbers = signals.customer_numbers(request.document_text)
    hint_number = hint.erp_customer_number if hint else None
    # A hint that cannot be an ERP number cannot equal one: it is not looked up (nor sent to the database).
    if hint_number and validation.ERP_NUMBER_PATTERN.fullmatch(hint_number) and hint_number not in numbers:
        numbers.append(hint_number)
    texts = [hint.name.replace("\x00", "")] if hint and hint.name else signals.header_lines(request.document_text)
    names = [t for t in texts if len(t) <= MAX_NAME_TEXT and signals.company_key(t)]
    return Evidence(sender=sender, domain=domain, numbers=numbers, names=names)


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
        ctes.append(f"""s4 AS (
            SELECT c.id AS customer_id, c.erp_customer_number AS value
              FROM customer c
             WHERE c.org_id = {org} AND c.erp_customer_number = ANY ({p("numbers", evidence.numbers)}::text[]))""")
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
              JOIN customer c ON c.org_id = {org} AND c.id = m.customer_id)""")
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
              JOIN customer c ON c.org_id = {org} AND c.id = h.customer_id)""")
        keep = " OR ".join([f"position <= {p('max_candidates', scoring.MAX_CANDIDATES)}", *also_kept])
        parts.append(f"""SELECT customer_id, CASE WHEN exact THEN 'S1_EMAIL' ELSE 'S2_DOMAIN' END,
                   CASE WHEN exact THEN {email}::text ELSE {domain}::text END, NULL::real
              FROM contact_ranked WHERE {keep}""")
    sql = f"""
        WITH {", ".join(ctes)}
        SELECT c.id, c.name, c.erp_customer_number, s.signal, s.value, s.sim
          FROM ({" UNION ALL ".join(parts)}) AS s (customer_id, signal, value, sim)
          JOIN customer c ON c.org_id = {org} AND c.id = s.customer_id"""
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


async def _signal_rows(session: AsyncSession, org_id: OrgId, evidence: Evidence) -> Sequence[Any]:
    """The rows of `signal_query`, straight from the driver (see `db.session.driver_connection`)."""
    if not (evidence.sender or evidence.numbers or evidence.names):
        return []
    conn = await driver_connection(session)
    name_hits = await _name_hits(session, conn, org_id, evidence.names) if evidence.names else []
    if not (evidence.sender or evidence.numbers or name_hits):
        return []
    sql, args = signal_query(org_id, evidence, name_hits)
    return await conn.fetch(sql, *args)


FIXED_SCORES = {
    "S1_EMAIL": signals.S1_EMAIL,
    "S2_DOMAIN": signals.S2_DOMAIN,
    "S4_CUSTOMER_NUMBER": signals.S4_CUSTOMER_NUMBER,
}


def _signal_of(row: Any) -> scoring.Signal:
    kind = row["signal"]
    score = FIXED_SCORES[kind] if kind in FIXED_SCORES else signals.name_score(float(row["sim"]))
    return scoring.Signal(kind, score, row["value"])


def candidates_of(rows: Sequence[Any]) -> list[scoring.Candidate]:
    candidates: dict[uuid.UUID, scoring.Candidate] = {}
    for row in rows:
        candidate = candidates.get(row["id"])
        if candidate is None:
            candidate = scoring.Candidate(row["id"], row["name"], row["erp_customer_number"])
            candidates[row["id"]] = candidate
        candidate.add(_signal_of(row))
    return list(candidates.values())


def result_of(ranked: list[scoring.Candidate], settings: CustomerDetectionSettings) -> DetectResult:
    status, selected = scoring.select(ranked, settings.auto_select_threshold, settings.min_gap)
    return DetectResult(
        status=status,
        selected_customer_id=selected,
        candidates=[
            CandidateOut(
                customer_id=c.customer_id,
                name=c.name,
                erp_customer_number=c.erp_customer_number,
                score=c.score,
                signals=[SignalOut(signal=s.signal, score=s.score, value=s.value) for s in c.signals],
            )
            for c in ranked
        ],
    )


async def detect_customer(session: AsyncSession, org_id: OrgId, request: DetectRequest) -> DetectResult:
    """Candidates for the sender of an order, best first, and whether the best is sure enough to pick."""
    settings = await detection_settings(session, org_id)
    evidence = gather_evidence(request, settings)
    ranked = scoring.rank(candidates_of(await _signal_rows(session, org_id, evidence)))
    return result_of(ranked, settings)
