"""Service errors and the single JSON error envelope every response uses."""

import logging
from typing import Any

from flask import Flask, jsonify, request
from marshmallow import ValidationError
from sqlalchemy.exc import IntegrityError, OperationalError
from werkzeug.exceptions import HTTPException

from billing.errors import BillingError, BudgetExceededError, InvoiceImmutableError
from billing.money import MoneyError
from connectors.base import (
    ConnectorConfigError,
    ConnectorError,
    UnknownConnectorError,
    WorkforceUnavailableError,
)
from quality.errors import QualityError

log = logging.getLogger(__name__)


class ServiceError(Exception):
    """Base of the orchestrator's own errors; `code` is stable and machine-readable."""

    code = "service_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class NotFoundError(ServiceError):
    code = "not_found"


class ConflictError(ServiceError):
    code = "conflict"


class InvalidInputError(ServiceError):
    """Input that passed the schema but breaks a domain rule; `details` names the fields."""

    code = "validation_error"


class UnauthenticatedError(ServiceError):
    code = "unauthenticated"


class ForbiddenError(ServiceError):
    code = "forbidden"


class PayloadTooLargeError(ServiceError):
    code = "payload_too_large"


class UnsupportedMediaTypeError(ServiceError):
    code = "unsupported_media_type"


# PostgreSQL's serialization failure and deadlock: the transaction was rolled back, so
# nothing of the request was stored and the client may send it again.
RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})

# The only status table: domain and service errors to HTTP statuses.
STATUS: dict[type[Exception], int] = {
    NotFoundError: 404,
    ConflictError: 409,
    InvalidInputError: 422,
    UnauthenticatedError: 401,
    ForbiddenError: 403,
    PayloadTooLargeError: 413,
    UnsupportedMediaTypeError: 415,
    BudgetExceededError: 409,
    InvoiceImmutableError: 409,
    BillingError: 422,
    QualityError: 422,
    MoneyError: 422,
    ConnectorConfigError: 422,
    UnknownConnectorError: 422,
    WorkforceUnavailableError: 502,
    ConnectorError: 502,
}


def status_for(exc: Exception) -> int:
    """Return the HTTP status of a domain error (the most specific class wins)."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(status: int, code: str, message: str, details: Any = None) -> Any:
    """Build the envelope `{"error": {"code", "message", "details"}}` with a status."""
    body = {"error": {"code": code, "message": message, "details": details or {}}}
    response = jsonify(body)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="quorum"'
    return response


def register_error_handlers(app: Flask) -> None:
    """Route every exception through the one JSON envelope."""

    @app.errorhandler(ValidationError)
    def on_validation_error(exc: ValidationError) -> Any:
        return error_response(422, "validation_error", "Invalid input.", _messages(exc.messages))

    @app.errorhandler(ServiceError)
    def on_service_error(exc: ServiceError) -> Any:
        return error_response(status_for(exc), exc.code, exc.message, exc.details)

    @app.errorhandler(BillingError)
    @app.errorhandler(ConnectorError)
    @app.errorhandler(QualityError)
    @app.errorhandler(MoneyError)
    def on_domain_error(exc: Exception) -> Any:
        details = getattr(exc, "details", None)
        return error_response(status_for(exc), getattr(exc, "code", "error"), str(exc), details)

    @app.errorhandler(IntegrityError)
    def on_integrity_error(exc: IntegrityError) -> Any:
        log.info("integrity error: %s", exc.orig)
        return error_response(409, "conflict", "The change conflicts with stored data.")

    @app.errorhandler(OperationalError)
    def on_operational_error(exc: OperationalError) -> Any:
        if getattr(exc.orig, "sqlstate", None) not in RETRYABLE_SQLSTATES:
            return on_unexpected(exc)
        log.warning("transaction rolled back, client told to retry: %s", exc.orig)
        response = error_response(
            503,
            "retry",
            "A concurrent change got in the way and nothing was stored; send the request again.",
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.errorhandler(HTTPException)
    def on_http_exception(exc: HTTPException) -> Any:
        # webargs (through flask-smorest) reports schema errors as 422 with messages.
        messages = getattr(exc, "data", {}).get("messages") if hasattr(exc, "data") else None
        if exc.code == 422 and messages is not None:
            return error_response(422, "validation_error", "Invalid input.", _flatten(messages))
        if exc.code == 400 and messages is not None and "json" in messages:
            # webargs could not decode the body: say so, and name the body as the field.
            cause = getattr(exc, "exc", None)  # the decoding error, which says where
            reason = f"not valid JSON: {cause}" if cause else "not valid JSON"
            return error_response(
                400, "bad_request", "The request body is not valid JSON.", {"body": [reason]}
            )
        if exc.code == 413 and request.max_content_length is not None:
            return error_response(
                413,
                "request_entity_too_large",
                "The request body is too large.",
                {"body": [f"longer than {request.max_content_length} bytes"]},
            )
        code = (exc.name or "error").lower().replace(" ", "_")
        return error_response(exc.code or 500, code, exc.description or exc.name or "Error.")

    @app.errorhandler(Exception)
    def on_unexpected(exc: Exception) -> Any:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "Internal server error.")


def _messages(messages: Any) -> dict[str, Any]:
    return messages if isinstance(messages, dict) else {"_schema": messages}


def _flatten(messages: dict[str, Any]) -> dict[str, Any]:
    # webargs nests by location ({"json": {"field": [...]}}); users want the fields.
    if len(messages) == 1:
        ((location, inner),) = messages.items()
        if location in {"json", "query", "querystring", "headers", "form", "view_args"}:
            return _messages(inner)
    return _messages(messages)
