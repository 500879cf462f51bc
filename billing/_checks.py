"""Argument checks shared by the billing modules (private: not part of the package API)."""

import re
from datetime import UTC, datetime
from decimal import Decimal

from billing.errors import InvalidAmountError, InvalidBillingInputError
from billing.money import MoneyError, parse_amount

_CURRENCY = re.compile(r"[A-Z]{3}")


def check_amount(value: object, field: str, *, allow_negative: bool = False) -> Decimal:
    """Return ``value`` as an exact Decimal amount or raise InvalidAmountError naming ``field``."""
    # Strings are refused on purpose: parsing belongs at the API edge, and a str
    # reaching the domain means a caller skipped its schema.
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise InvalidAmountError(
            f"{field} must be a Decimal, not {type(value).__name__}", details={"field": field}
        )
    try:
        amount = parse_amount(value)
    except MoneyError as exc:
        raise InvalidAmountError(f"{field}: {exc}", details={"field": field}) from exc
    if amount < 0 and not allow_negative:
        raise InvalidAmountError(
            f"{field} must not be negative, got {amount}", details={"field": field}
        )
    return amount


def check_currency(code: object) -> str:
    """Return an ISO 4217 style currency code (three capital letters) or raise."""
    if not isinstance(code, str) or not _CURRENCY.fullmatch(code):
        raise InvalidBillingInputError(
            f"currency must be three capital letters such as 'USD', got {code!r}",
            details={"field": "currency"},
        )
    return code


def check_utc(moment: object, field: str) -> datetime:
    """Return a timezone-aware datetime converted to UTC; naive datetimes are refused."""
    if not isinstance(moment, datetime):
        raise InvalidBillingInputError(f"{field} must be a datetime", details={"field": field})
    # A naive datetime is ambiguous by hours, which moves entries across days and
    # invoice periods, so guessing "it is probably UTC" is not safe.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidBillingInputError(
            f"{field} must be timezone-aware (UTC), got naive {moment.isoformat()}",
            details={"field": field},
        )
    return moment.astimezone(UTC)


def check_optional_id(value: object, field: str) -> int | None:
    """Return an int reference or None; bools and other types are refused."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidBillingInputError(f"{field} must be an int or None", details={"field": field})
    return value
