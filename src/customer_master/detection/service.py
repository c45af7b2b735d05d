"""Customer detection (API.md §7): which of the org's customers sent this order?

The request is read into evidence (`gather_evidence`, with the pure `signals`), then one statement finds
every signal at once, set-based and always within the caller's org (`repository.signal_rows`; its module
says how), and `scoring` turns the rows into the answer.
"""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from customer_master import validation
from customer_master.auth.tenancy import OrgId
from customer_master.detection import repository, scoring, signals
from customer_master.detection.schemas import (
    CandidateOut,
    CustomerDetectionSettings,
    DetectRequest,
    DetectResult,
    SignalOut,
)
from customer_master.detection.settings import detection_settings
from customer_master.detection.signals import Evidence

# A header line longer than this is not compared as a company name (a name has at most 500 characters,
# so such a line is not one); it also bounds the trigram search a single request can cause.
MAX_NAME_TEXT = 1000


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
    ranked = scoring.rank(candidates_of(await repository.signal_rows(session, org_id, evidence)))
    return result_of(ranked, settings)
