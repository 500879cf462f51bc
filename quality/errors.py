"""Exceptions of the quality package, each with a stable ``code`` for the JSON error envelope."""

from __future__ import annotations

from typing import Any


class QualityError(Exception):
    """Base class of every error raised by ``quality``.

    Attributes:
        code: Stable machine-readable identifier, used as ``error.code`` in API responses.
        details: JSON-serialisable context (offending field, values), used as ``error.details``.
    """

    code = "quality_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}


class NotEnoughAnswersError(QualityError):
    """There are no answers to aggregate (or too few for the requested operation)."""

    code = "not_enough_answers"


class UnknownLabelError(QualityError):
    """An answer or a gold label lies outside the project's label set."""

    code = "unknown_label"


class UnknownMethodError(QualityError):
    """The aggregation method name is not one of ``quality.aggregation.METHODS``."""

    code = "unknown_method"


class InvalidAnswersError(QualityError):
    """The answers table is malformed: missing ``task``/``worker``/``label`` columns or nulls."""

    code = "invalid_answers"


class InvalidParameterError(QualityError):
    """A method parameter, the label set or a warm-start state is invalid."""

    code = "invalid_parameter"


class AggregationFailedError(QualityError):
    """A third-party aggregation model (crowd-kit) rejected the input or failed to fit."""

    code = "aggregation_failed"
