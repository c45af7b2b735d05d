"""From signals to an answer: noisy-or per candidate, the ranking, and the selection rule (API.md §7)."""

import enum
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

MAX_SCORE = 0.999
MAX_CANDIDATES = 5
# The order in which a candidate lists its signals.
SIGNAL_ORDER = ("S1_EMAIL", "S2_DOMAIN", "S4_CUSTOMER_NUMBER", "S5_NAME")


class Status(enum.StrEnum):
    AUTO_SELECTED = "AUTO_SELECTED"
    AMBIGUOUS = "AMBIGUOUS"
    NOT_FOUND = "NOT_FOUND"


@dataclass(frozen=True)
class Signal:
    signal: str
    score: float
    value: str


@dataclass
class Candidate:
    customer_id: uuid.UUID
    name: str
    erp_customer_number: str | None
    signals: list[Signal] = field(default_factory=list)

    @property
    def score(self) -> float:
        return combine(signal.score for signal in self.signals)

    def add(self, signal: Signal) -> None:
        """At most one signal of each kind per customer: the stronger one stays."""
        for index, existing in enumerate(self.signals):
            if existing.signal == signal.signal:
                if signal.score > existing.score:
                    self.signals[index] = signal
                return
        self.signals.append(signal)
        self.signals.sort(key=lambda s: SIGNAL_ORDER.index(s.signal))


def combine(scores: Iterable[float]) -> float:
    """Noisy-or `1 − Π(1 − sᵢ)`, rounded to 4 decimals, clamped to [0, 0.999]."""
    score = round(1 - math.prod(1 - s for s in scores), 4)
    return min(max(score, 0.0), MAX_SCORE)


def rank(candidates: Iterable[Candidate], limit: int = MAX_CANDIDATES) -> list[Candidate]:
    """Best first; equal scores by name (case-insensitive), then by id so that the order is stable."""
    ordered = sorted(candidates, key=lambda c: (-c.score, c.name.casefold(), str(c.customer_id)))
    return ordered[:limit]


def select(ranked: list[Candidate], auto_select_threshold: float, min_gap: float) -> tuple[Status, uuid.UUID | None]:
    """AUTO_SELECTED when the top score reaches the threshold and leads the second (0 when there is none)
    by at least `min_gap`; NOT_FOUND without candidates; else AMBIGUOUS.

    Compared as decimals, so that 0.95 − 0.88 is the 0.07 it reads as, not 0.06999….
    """
    if not ranked:
        return Status.NOT_FOUND, None
    top = _decimal(ranked[0].score)
    second = _decimal(ranked[1].score) if len(ranked) > 1 else Decimal(0)
    if top >= _decimal(auto_select_threshold) and top - second >= _decimal(min_gap):
        return Status.AUTO_SELECTED, ranked[0].customer_id
    return Status.AMBIGUOUS, None


def _decimal(value: float) -> Decimal:
    return Decimal(repr(value))
