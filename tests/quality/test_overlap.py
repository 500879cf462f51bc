"""Dynamic overlap: how many more answers to request for one item."""

from __future__ import annotations

import pytest

from quality.errors import InvalidParameterError
from quality.overlap import additional_answers

BASE = {"overlap": 3, "max_overlap": 5, "confidence_target": 0.9}


@pytest.mark.parametrize(
    ("answers", "confidence", "settings", "expected"),
    [
        (0, None, {}, 3),  # new item: the whole base overlap at once
        (1, 0.99, {}, 2),  # below overlap, confidence does not matter yet
        (3, 0.95, {}, 0),  # confident enough
        (3, 0.90, {}, 0),  # exactly at the target counts as done
        (3, 0.89, {}, 1),  # one more at a time
        (4, 0.50, {}, 1),
        (5, 0.50, {}, 0),  # at max_overlap: stop even if unsure
        (6, 0.50, {}, 0),  # past it (e.g. max_overlap lowered): never negative
        (3, None, {}, 0),  # not aggregated yet: wait rather than buy blind
        (9, 0.50, {"max_overlap": None}, 1),  # no cap: only the budget stops it
        (3, 0.50, {"max_overlap": 3}, 0),  # static overlap: max_overlap == overlap
        (
            1,
            0.10,
            {"overlap": 1, "max_overlap": 2, "confidence_target": 0.0},
            0,
        ),  # target 0: never more
        (1, 1.0, {"overlap": 1, "max_overlap": None, "confidence_target": 1.0}, 0),
        (1, 0.999, {"overlap": 1, "max_overlap": None, "confidence_target": 1.0}, 1),
    ],
)
def test_additional_answers(
    answers: int, confidence: float | None, settings: dict, expected: int
) -> None:
    assert (
        additional_answers(answers=answers, stopping_confidence=confidence, **(BASE | settings))
        == expected
    )


@pytest.mark.parametrize(
    "changes",
    [
        {"answers": -1},
        {"overlap": 0},
        {"max_overlap": 2},  # below overlap
        {"confidence_target": 1.5},
        {"stopping_confidence": float("nan")},
        {"stopping_confidence": 1.01},
        {"answers": 2.0},
    ],
)
def test_bad_inputs_are_refused(changes: dict) -> None:
    arguments = {"answers": 3, "stopping_confidence": 0.5, **BASE} | changes
    with pytest.raises(InvalidParameterError):
        additional_answers(**arguments)


def test_simulated_item_stops_at_target_or_cap() -> None:
    # Confidence rising with each answer: the loop must end exactly where the rules say.
    def confidence(n: int) -> float:
        return 1 - 0.5**n

    answers = 0
    while need := additional_answers(
        answers=answers,
        stopping_confidence=confidence(answers) if answers else None,
        overlap=2,
        max_overlap=10,
        confidence_target=0.95,
    ):
        answers += need
    assert answers == 5  # 1 - 0.5**5 = 0.969 is the first >= 0.95
