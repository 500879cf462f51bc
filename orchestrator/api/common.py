"""What every blueprint shares: sessions, authorization, money fields, paging, errors."""

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from functools import wraps
from typing import Any

from flask import current_app, g, request
from marshmallow import Schema, ValidationError, fields, validate
from sqlalchemy.orm import Session, sessionmaker
from werkzeug.routing import IntegerConverter

from billing.money import MoneyError, format_amount, parse_amount
from orchestrator.db import UNSTORABLE_TEXT_MESSAGE, has_unstorable_text, utcnow
from orchestrator.errors import ForbiddenError, UnauthenticatedError
from orchestrator.services.keys import Principal, authenticate, hash_key
from orchestrator.settings import Settings

SESSIONMAKER = "orchestrator.sessionmaker"
SETTINGS = "orchestrator.settings"
# Key lookups are cached briefly so hot routes (task hand-out) skip a query;
# a key revoked by another process stops working within this many seconds
# (at once in the process that revokes it, and at once when it expires).
KEY_CACHE_SECONDS = 5.0
# Request bodies: JSON requests stay small (a bulk submission of 5,000 answers at every
# field's length limit is about 3 MB in ASCII, under 40 MB with every character sent as a
# 12-byte escaped surrogate pair), so a body past this is refused (413) before it is read
# and parsed. Item imports stream files and may be far larger.
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_UPLOAD_BYTES = 1024 * 1024 * 1024
# Instants and days a client may give (deadlines, periods): every backend stores them and
# adds to them.
EARLIEST, LATEST = datetime(1970, 1, 1, tzinfo=UTC), datetime(9000, 1, 1, tzinfo=UTC)
INSTANTS = validate.Range(min=EARLIEST, max=LATEST)
DAYS = validate.Range(min=EARLIEST.date(), max=LATEST.date())
CURRENCY = validate.Regexp(r"^[A-Z]{3}$", error="must be a 3-letter ISO 4217 code such as USD")


def sessions() -> sessionmaker[Session]:
    """Return the app's session factory."""
    factory: sessionmaker[Session] = current_app.extensions[SESSIONMAKER]
    return factory


def current_settings() -> Settings:
    """Return the app's Settings."""
    settings: Settings = current_app.extensions[SETTINGS]
    return settings


def with_session(view: Callable[..., Any]) -> Callable[..., Any]:
    """Run the view in one transaction: commit on success, roll back on any exception."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        with sessions().begin() as session:
            return view(*args, session=session, **kwargs)

    return wrapper


def authorize(*roles: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Admit only bearer keys with one of `roles`; the principal is on `g.principal`."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            principal = current_principal()
            if principal.role not in roles:
                raise ForbiddenError(f"role {principal.role!r} may not use this route")
            return view(*args, **kwargs)

        wrapper.required_roles = frozenset(roles)  # type: ignore[attr-defined]
        return wrapper

    return decorator


def current_principal() -> Principal:
    """Authenticate the request's bearer key (once per request)."""
    if "principal" in g:
        principal: Principal = g.principal
        return principal
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise UnauthenticatedError("missing bearer key: send 'Authorization: Bearer KEY'")
    g.principal = _cached_authenticate(secret.strip())
    return g.principal


def _key_cache() -> dict[str, tuple[float, Principal]]:
    cache: dict[str, tuple[float, Principal]] = current_app.extensions.setdefault(
        "orchestrator.key_cache", {}
    )
    return cache


def forget_key(key_hash: str) -> None:
    """Drop a key from this process's cache, so a revocation or rotation applies at once."""
    _key_cache().pop(key_hash, None)


def _cached_authenticate(secret: str) -> Principal:
    cache = _key_cache()
    digest = hash_key(secret)
    now = time.monotonic()
    hit = cache.get(digest)
    if (
        hit is not None
        and now - hit[0] < KEY_CACHE_SECONDS
        and (hit[1].expires_at is None or hit[1].expires_at > utcnow())
    ):
        return hit[1]
    with sessions().begin() as session:
        principal = authenticate(session, secret)
    if len(cache) > 10_000:
        cache.clear()
    cache[digest] = (now, principal)
    return principal


MAX_ID = 2**63 - 1  # BIGINT on both backends


class IdConverter(IntegerConverter):
    """URL converter for database ids: a positive 64-bit integer, so lookups never overflow."""

    def __init__(self, map: Any) -> None:  # noqa: A002 (werkzeug's parameter name)
        super().__init__(map, min=1, max=MAX_ID)


MONEY_PATTERN = r"^[0-9]{1,12}(\.[0-9]{1,6})?$"


class Money(fields.String):
    """A non-negative amount as a decimal string ("0.05"); floats are refused."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"pattern": MONEY_PATTERN, "example": "0.05", **kwargs.pop("metadata", {})}
        super().__init__(metadata=metadata, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Decimal:
        if not isinstance(value, str):
            raise ValidationError('must be a decimal string such as "0.05", not a number')
        if not re.fullmatch(MONEY_PATTERN, value):
            raise ValidationError(
                'must be a non-negative decimal string such as "0.05", at most 6 decimals'
            )
        try:
            return parse_amount(value)
        except MoneyError as exc:
            raise ValidationError(str(exc)) from exc

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else format_amount(value)


class Text(fields.String):
    """A string that can be stored on every backend (no NUL, no unpaired surrogate)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        text: str = super()._deserialize(value, attr, data, **kwargs)
        if has_unstorable_text(text):
            raise ValidationError(UNSTORABLE_TEXT_MESSAGE)
        return text


class JsonObject(fields.Dict):
    """A JSON object that can be stored on every backend (no such characters inside)."""

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        result = super()._deserialize(value, attr, data, **kwargs)
        if has_unstorable_text(result):
            raise ValidationError(UNSTORABLE_TEXT_MESSAGE)
        return result


class PageQuerySchema(Schema):
    """Paging parameters."""

    limit = fields.Integer(load_default=50, validate=validate.Range(min=1, max=1000))
    offset = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_ID))


class ErrorBodySchema(Schema):
    """The error object inside the envelope."""

    code = fields.String(required=True, metadata={"description": "Stable machine-readable code"})
    message = fields.String(required=True)
    details = fields.Dict(required=True, metadata={"description": "Field -> problems"})


class ErrorSchema(Schema):
    """The one error envelope every 4xx/5xx response uses."""

    error = fields.Nested(ErrorBodySchema, required=True)


def page_schema(item_schema: type[Schema], name: str) -> type[Schema]:
    """Build the paged-list envelope schema `{data, total, limit, offset}` for an item schema."""
    return Schema.from_dict(
        {
            "data": fields.List(fields.Nested(item_schema), required=True),
            "total": fields.Integer(required=True),
            "limit": fields.Integer(required=True),
            "offset": fields.Integer(required=True),
        },
        name=name,
    )
