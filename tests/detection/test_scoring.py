"""Noisy-or aggregation, ranking and the selection rule (API.md §7), without a database."""

import uuid

import pytest

from customer_master.detection.scoring import Candidate, Signal, Status, combine, rank, select

S1 = Signal("S1_EMAIL", 0.95, "einkauf@muster.de")
S2 = Signal("S2_DOMAIN", 0.75, "muster.de")
S4 = Signal("S4_CUSTOMER_NUMBER", 0.98, "4711")


def s5(score: float) -> Signal:
    return Signal("S5_NAME", score, "Muster GmbH")


def candidate(name: str, *signals: Signal) -> Candidate:
    result = Candidate(uuid.uuid4(), name, None)
    for signal in signals:
        result.add(signal)
    return result


def test_noisy_or_of_the_contract_example() -> None:
    assert combine([0.75, 0.55]) == 0.8875


@pytest.mark.parametrize(
    ("scores", "expected"),
    [
        ([], 0.0),
        ([0.95], 0.95),
        ([0.75], 0.75),
        ([0.98], 0.98),
        ([0.58], 0.58),
        ([0.95, 0.58], 0.979),
        ([0.75, 0.85], 0.9625),
        ([0.95, 0.98], 0.999),  # 0.999 exactly
        ([0.95, 0.98, 0.85], 0.999),  # 0.99985: clamped
        ([0.98, 0.85], 0.997),
        ([0.75, 0.58, 0.98], 0.9979),  # 0.99790: four decimals
    ],
)
def test_noisy_or_rounds_to_four_decimals_and_clamps(scores: list[float], expected: float) -> None:
    assert combine(scores) == expected


def test_one_signal_of_each_kind_per_candidate_in_a_fixed_order() -> None:
    c = candidate("Muster", s5(0.6), S4, s5(0.7), S2)
    assert [s.signal for s in c.signals] == ["S2_DOMAIN", "S4_CUSTOMER_NUMBER", "S5_NAME"]
    assert c.signals[2].score == 0.7
    assert c.score == combine([0.75, 0.98, 0.7])


def test_ranking_best_first_ties_by_name_case_insensitive_at_most_five() -> None:
    names = ["delta", "Bravo", "alpha", "Echo", "charlie", "foxtrot"]
    ranked = rank([candidate(n, S2) for n in names] + [candidate("zulu", S1)])
    assert [c.name for c in ranked] == ["zulu", "alpha", "Bravo", "charlie", "delta"]


def test_no_candidate_is_not_found() -> None:
    assert select([], 0.9, 0.07) == (Status.NOT_FOUND, None)


@pytest.mark.parametrize(
    ("top", "second", "threshold", "min_gap", "status"),
    [
        (0.95, None, 0.90, 0.07, Status.AUTO_SELECTED),  # alone: leads 0 by 0.95
        (0.90, None, 0.90, 0.07, Status.AUTO_SELECTED),  # exactly at the threshold
        (0.8999, None, 0.90, 0.07, Status.AMBIGUOUS),  # just under it
        (0.95, 0.88, 0.90, 0.07, Status.AUTO_SELECTED),  # leads by exactly min_gap (not 0.0699999…)
        (0.95, 0.8801, 0.90, 0.07, Status.AMBIGUOUS),  # leads by just under it
        (0.98, 0.95, 0.90, 0.07, Status.AMBIGUOUS),  # two strong candidates
        (0.999, 0.75, 0.90, 0.07, Status.AUTO_SELECTED),
        (0.75, None, 0.75, 0.0, Status.AUTO_SELECTED),  # a lowered threshold
        (0.75, 0.75, 0.75, 0.0, Status.AUTO_SELECTED),  # min_gap 0: a tie still selects the first
        (0.999, None, 1.0, 0.0, Status.AMBIGUOUS),  # threshold 1 is never reached
        (0.01, None, 0.0, 0.0, Status.AUTO_SELECTED),
    ],
)
def test_selection_at_and_around_the_thresholds(
    top: float, second: float | None, threshold: float, min_gap: float, status: Status
) -> None:
    first = candidate("first", Signal("S5_NAME", top, "x"))
    ranked = [first] + ([candidate("second", Signal("S5_NAME", second, "y"))] if second is not None else [])
    assert select(ranked, threshold, min_gap) == (status, first.customer_id if status is Status.AUTO_SELECTED else None)
