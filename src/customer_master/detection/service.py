"""Customer detection (API.md §7): which of the org's customers sent this order?

The request is read into evidence (pure, `signals`), then one statement finds every signal at once,
set-based and always within the caller's org, and `scoring` turns the rows into the answer.

- S1/S2 read the contacts on the sender's domain (one index range, `ix_customer_contact_org_domain`):
  the exact address gives S1, any other address on the domain S2. On a public mail domain only the
  exact address is looked up (`idx_customer_contact_email`).
- S4 looks the numbers up in the partial unique index on the ERP number.
- S5 runs one trigram search per compared text on `customer.name_key` (GIN), each keeping its 5 most
  similar customers; of those, the 5 most similar overall get the signal.
- A fixed-score signal (S1, S2) can hold for thousands of customers (one corporate domain); only those
  that can still reach the top 5 come back: the first 5 by name of each kind, and every customer that
  also has S4 or S5.
"""

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from customer_master import validation
from customer_master.auth.tenancy import OrgId
from customer_master.detection import scoring, signals
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


def _signal_query(evidence: Evidence) -> str:
    """One statement for the signals this request can have: rows of (customer, signal, value, similarity)."""
    ctes: list[str] = []
    parts: list[str] = []
    also_kept: list[str] = []
    if evidence.numbers:
        ctes.append("""s4 AS (
            SELECT c.id AS customer_id, c.erp_customer_number AS value
              FROM customer c
             WHERE c.org_id = :org_id AND c.erp_customer_number = ANY (CAST(:numbers AS text[])))""")
        parts.append("SELECT customer_id, 'S4_CUSTOMER_NUMBER', value, NULL::real FROM s4")
        also_kept.append("customer_id IN (SELECT customer_id FROM s4)")
    if evidence.names:
        # MATERIALIZED: each key is computed once, not again in every candidate row's recheck and ranking;
        # lines with the same key are searched once (the first of them is the signal's value).
        ctes.append("""compared AS MATERIALIZED (
            SELECT DISTINCT ON (k.key) k.ord, k.line, k.key
              FROM (SELECT t.ord, t.line, cm_company_key(t.line) AS key
                      FROM unnest(CAST(:names AS text[])) WITH ORDINALITY AS t(line, ord)) AS k
             WHERE k.key <> ''
             ORDER BY k.key, k.ord)""")
        ctes.append("""name_hits AS (
            SELECT DISTINCT ON (m.id) m.id AS customer_id, l.line AS value, m.sim, m.sort_name
              FROM compared l
             CROSS JOIN LATERAL (
                   SELECT c.id, lower(c.name) AS sort_name, similarity(c.name_key, l.key) AS sim
                     FROM customer c
                    WHERE c.org_id = :org_id AND c.name_key % l.key
                    ORDER BY sim DESC, sort_name, c.id
                    LIMIT :s5_limit) AS m
             WHERE m.sim >= :min_sim
             ORDER BY m.id, m.sim DESC, l.ord)""")
        ctes.append("""s5 AS (
            SELECT customer_id, value, sim FROM name_hits ORDER BY sim DESC, sort_name, customer_id LIMIT :s5_limit)""")
        parts.append("SELECT customer_id, 'S5_NAME', value, sim FROM s5")
        also_kept.append("customer_id IN (SELECT customer_id FROM s5)")
    if evidence.sender:
        if evidence.domain:
            ctes.append("""contact_hits AS (
                SELECT cc.customer_id, bool_or(cc.email = CAST(:email AS citext)) AS exact
                  FROM customer_contact cc
                 WHERE cc.org_id = :org_id AND lower(split_part(cc.email::text, '@', 2)) = :domain
                 GROUP BY cc.customer_id)""")
        else:
            ctes.append("""contact_hits AS (
                SELECT DISTINCT cc.customer_id, true AS exact
                  FROM customer_contact cc
                 WHERE cc.org_id = :org_id AND cc.email = CAST(:email AS citext))""")
        ctes.append("""contact_ranked AS (
            SELECT h.customer_id, h.exact,
                   row_number() OVER (PARTITION BY h.exact ORDER BY lower(c.name), c.id) AS position
              FROM contact_hits h
              JOIN customer c ON c.org_id = :org_id AND c.id = h.customer_id)""")
        keep = " OR ".join(["position <= :max_candidates", *also_kept])
        parts.append(f"""SELECT customer_id, CASE WHEN exact THEN 'S1_EMAIL' ELSE 'S2_DOMAIN' END,
                   CASE WHEN exact THEN CAST(:email AS text) ELSE CAST(:domain AS text) END, NULL::real
              FROM contact_ranked WHERE {keep}""")
    return f"""
        WITH {", ".join(ctes)}
        SELECT c.id, c.name, c.erp_customer_number, s.signal, s.value, s.sim
          FROM ({" UNION ALL ".join(parts)}) AS s (customer_id, signal, value, sim)
          JOIN customer c ON c.org_id = :org_id AND c.id = s.customer_id"""


async def _signal_rows(session: AsyncSession, org_id: OrgId, evidence: Evidence) -> Sequence[Any]:
    if not (evidence.sender or evidence.numbers or evidence.names):
        return []
    params: dict[str, Any] = {"org_id": org_id, "max_candidates": scoring.MAX_CANDIDATES}
    if evidence.numbers:
        params["numbers"] = evidence.numbers
    if evidence.names:
        params.update(names=evidence.names, s5_limit=signals.S5_MAX_CUSTOMERS, min_sim=signals.S5_MIN_SIMILARITY)
        # `%` (the operator the trigram index serves) compares with this setting: make it the contract's.
        # The planner's cost for ten trigram searches can pass jit_above_cost; compiling would cost more
        # than the query.
        await session.execute(
            text("SELECT set_config('pg_trgm.similarity_threshold', :threshold, true), set_config('jit', 'off', true)"),
            {"threshold": str(signals.S5_MIN_SIMILARITY)},
        )
    if evidence.sender:
        params.update(email=evidence.sender, domain=evidence.domain)
    return (await session.execute(text(_signal_query(evidence)), params)).all()


def _signal_of(row: Any) -> scoring.Signal:
    if row.signal == "S1_EMAIL":
        return scoring.Signal("S1_EMAIL", signals.S1_EMAIL, row.value)
    if row.signal == "S2_DOMAIN":
        return scoring.Signal("S2_DOMAIN", signals.S2_DOMAIN, row.value)
    if row.signal == "S4_CUSTOMER_NUMBER":
        return scoring.Signal("S4_CUSTOMER_NUMBER", signals.S4_CUSTOMER_NUMBER, row.value)
    return scoring.Signal("S5_NAME", signals.name_score(float(row.sim)), row.value)


def candidates_of(rows: Sequence[Any]) -> list[scoring.Candidate]:
    candidates: dict[uuid.UUID, scoring.Candidate] = {}
    for row in rows:
        candidate = candidates.get(row.id)
        if candidate is None:
            candidate = candidates[row.id] = scoring.Candidate(row.id, row.name, row.erp_customer_number)
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
