"""Gold scoring: Wilson intervals, per-worker records and the blocking rule."""

from __future__ import annotations

import pandas as pd
import pytest

from quality.errors import InvalidAnswersError, InvalidParameterError
from quality.gold import (
    GoldStats,
    default_accuracy_threshold,
    gold_stats_by_worker,
    should_block,
    wilson_interval,
)


@pytest.mark.parametrize(
    ("correct", "total", "low", "high"),
    [
        # Worked by hand: p = 0.8, n = 10, z^2 = 3.8416, 1 + z^2/n = 1.38416,
        # centre = (0.8 + 0.19208) / 1.38416 = 0.71674,
        # half = 1.96 / 1.38416 * sqrt(0.016 + 0.009604) = 0.22658.
        (8, 10, 0.4902, 0.9433),
        (0, 10, 0.0, 0.2775),  # never 0..0: ten misses do not prove a 0% worker
        (10, 10, 0.7225, 1.0),
        (1, 1, 0.2065, 1.0),
        (45, 50, 0.7864, 0.9565),
        (500, 1000, 0.4691, 0.5309),
    ],
)
def test_wilson_interval_worked_examples(correct: int, total: int, low: float, high: float) -> None:
    got = wilson_interval(correct, total)
    assert got == pytest.approx((low, high), abs=5e-5)
    assert 0.0 <= got[0] <= correct / total <= got[1] <= 1.0


def test_wilson_interval_without_answers_is_uninformative() -> None:
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_wilson_interval_narrows_with_more_answers_and_widens_with_z() -> None:
    small, large = wilson_interval(4, 5), wilson_interval(400, 500)
    assert large[1] - large[0] < small[1] - small[0]
    wide = wilson_interval(4, 5, z=2.576)  # 99%
    assert wide[0] < small[0] and wide[1] > small[1]


@pytest.mark.parametrize(
    ("correct", "total", "z"),
    [(3, 2, 1.96), (-1, 2, 1.96), (1, 2, 0.0), (1.5, 2, 1.96), (True, 2, 1.96)],
)
def test_wilson_interval_refuses_impossible_counts(correct, total, z) -> None:
    with pytest.raises(InvalidParameterError):
        wilson_interval(correct, total, z)


def test_gold_stats_from_counts() -> None:
    stats = GoldStats.from_counts(10, 8)
    assert (stats.answers, stats.correct, stats.accuracy) == (10, 8, 0.8)
    assert stats.interval == pytest.approx((0.4902, 0.9433), abs=5e-5)
    empty = GoldStats.from_counts(0, 0)
    assert empty.accuracy is None and empty.interval == (0.0, 1.0)


@pytest.mark.parametrize(
    ("answers", "correct", "blocked"),
    [
        (4, 0, False),  # 0% but only 4 gold answers: too early to judge
        (5, 3, True),  # 60% < 70% after 5
        (10, 7, False),  # exactly 70%: not below the threshold
        (10, 6, True),
        (20, 15, False),  # 75%
        # Point estimate, not the interval: 13 of 20 (65%) has a Wilson upper bound of 0.82,
        # above 70%, yet the configured rule "below 70% on gold" blocks it.
        (20, 13, True),
    ],
)
def test_should_block_worked_examples(answers: int, correct: int, blocked: bool) -> None:
    assert should_block(answers, correct, threshold=0.7, min_answers=5) is blocked


def test_should_block_edge_thresholds() -> None:
    assert should_block(3, 0, threshold=0.3, min_answers=0) is True
    assert should_block(0, 0, threshold=1.0, min_answers=0) is False  # no evidence, no block
    assert should_block(50, 49, threshold=1.0, min_answers=1) is True
    assert should_block(50, 0, threshold=0.0, min_answers=1) is False
    # 0.55 * 100 is 55.00000000000001 in floating point; 55 of 100 is not below 55%.
    assert should_block(100, 55, threshold=0.55, min_answers=1) is False


@pytest.mark.parametrize(
    ("labels", "threshold"), [(1, 1.0), (2, 0.6), (3, 0.466667), (4, 0.4), (5, 0.36), (10, 0.28)]
)
def test_default_accuracy_threshold_is_a_fifth_of_the_way_from_guessing(labels, threshold):
    assert default_accuracy_threshold(labels) == threshold


def test_default_accuracy_threshold_keeps_a_useful_four_label_worker():
    # 50% right on four labels is twice guessing: blocked by 0.6, kept by the default.
    assert should_block(20, 10, threshold=0.6, min_answers=10) is True
    assert should_block(20, 10, threshold=default_accuracy_threshold(4), min_answers=10) is False
    # A worker who guesses among four labels (25%) is still blocked.
    assert should_block(20, 5, threshold=default_accuracy_threshold(4), min_answers=10) is True


@pytest.mark.parametrize("labels", [0, -2, 2.0, True, "4"])
def test_default_accuracy_threshold_refuses_bad_label_counts(labels):
    with pytest.raises(InvalidParameterError):
        default_accuracy_threshold(labels)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"threshold": 1.2, "min_answers": 5},
        {"threshold": 0.7, "min_answers": -1},
        {"threshold": 0.7, "min_answers": 2.0},
    ],
)
def test_should_block_refuses_bad_settings(kwargs) -> None:
    with pytest.raises(InvalidParameterError):
        should_block(5, 3, **kwargs)


def test_gold_stats_by_worker() -> None:
    answers = pd.DataFrame(
        [
            ("g1", "w1", "cat"),
            ("g2", "w1", "dog"),
            ("x", "w1", "cat"),
            ("g1", "w2", "dog"),
            ("x", "w3", "cat"),
        ],
        columns=["task", "worker", "label"],
    )
    stats = gold_stats_by_worker(answers, {"g1": "cat", "g2": "dog", "g3": "cat"})
    assert set(stats) == {"w1", "w2"}  # w3 never saw gold
    assert (stats["w1"].answers, stats["w1"].correct) == (2, 2)
    assert (stats["w2"].answers, stats["w2"].correct, stats["w2"].accuracy) == (1, 0, 0.0)
    assert gold_stats_by_worker(answers, {}) == {}
    with pytest.raises(InvalidAnswersError):
        gold_stats_by_worker(answers.drop(columns="worker"), {"g1": "cat"})


def test_gold_stats_by_worker_compares_labels_as_strings() -> None:
    answers = pd.DataFrame({"task": [1, 2], "worker": ["w", "w"], "label": [0, 1]})
    stats = gold_stats_by_worker(answers, {1: "0", 2: "0"})
    assert (stats["w"].answers, stats["w"].correct) == (2, 1)
