"""Dynamic overlap: how many more answers an item needs right now.

Every item first collects ``overlap`` answers. After that, an item whose stopping confidence
(``AggregationResult.stopping_confidence_``) is below the project's ``confidence_target``
gets one more answer at a time, until it is confident enough or reaches ``max_overlap``.
One at a time, because each new answer changes the confidence and may make the next one
unnecessary; the caller asks again after the next aggregation.
"""

from __future__ import annotations

import math

from .errors import InvalidParameterError

__all__ = ["additional_answers"]


def _check_int(name: str, value: object, minimum: int) -> None:
    """Refuse a non-integer or too-small count."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidParameterError(
            f"{name} must be an integer >= {minimum}", details={name: [repr(value)]}
        )


def additional_answers(
    *,
    answers: int,
    stopping_confidence: float | None,
    overlap: int,
    max_overlap: int | None,
    confidence_target: float,
) -> int:
    """Return how many more answers to request for one item now.

    Args:
        answers: Answers the item has (answers, counting only accepted ones).
        stopping_confidence: The item's stopping confidence from the latest aggregation, a
            probability in [0, 1]; None if the item has not been aggregated yet.
        overlap: Answers every item gets (answers, >= 1).
        max_overlap: Most answers an item may get (answers, >= ``overlap``); None for no cap,
            in which case only the budget stops an item that never becomes confident.
        confidence_target: Stopping confidence at which an item is done, in [0, 1].

    Returns:
        int: ``overlap - answers`` while the item is below ``overlap``; then 1 if its
        stopping confidence is below ``confidence_target`` and it is under ``max_overlap``;
        otherwise 0. An item with enough answers but no aggregation yet gets 0: we wait for
        the aggregation rather than buy an answer that may not be needed.

    Examples:
        >>> additional_answers(answers=1, stopping_confidence=None, overlap=3, max_overlap=5,
        ...                    confidence_target=0.9)
        2
        >>> additional_answers(answers=3, stopping_confidence=0.8, overlap=3, max_overlap=5,
        ...                    confidence_target=0.9)
        1
        >>> additional_answers(answers=5, stopping_confidence=0.8, overlap=3, max_overlap=5,
        ...                    confidence_target=0.9)
        0
    """
    _check_int("answers", answers, 0)
    _check_int("overlap", overlap, 1)
    if max_overlap is not None:
        _check_int("max_overlap", max_overlap, overlap)
    if (
        isinstance(confidence_target, bool)
        or not isinstance(confidence_target, int | float)
        or not 0.0 <= confidence_target <= 1.0
    ):
        raise InvalidParameterError(
            "confidence_target must be a probability in [0, 1]",
            details={"confidence_target": [repr(confidence_target)]},
        )
    if stopping_confidence is not None and (
        isinstance(stopping_confidence, bool)
        or not isinstance(stopping_confidence, int | float)
        or not math.isfinite(stopping_confidence)
        or not 0.0 <= stopping_confidence <= 1.0
    ):
        raise InvalidParameterError(
            "stopping_confidence must be a probability in [0, 1]",
            details={"stopping_confidence": [repr(stopping_confidence)]},
        )
    if answers < overlap:
        return overlap - answers
    if max_overlap is not None and answers >= max_overlap:
        return 0
    if stopping_confidence is None:
        return 0
    return 1 if stopping_confidence < confidence_target else 0
