"""Exact money: Decimal in code, integer micros (millionths of a currency unit) in storage."""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICROS_PER_UNIT = 1_000_000
CENT = Decimal("0.01")


class MoneyError(ValueError):
    """A value that is not an exact amount of money."""

    code = "invalid_money"


def parse_amount(value: str | int | Decimal) -> Decimal:
    """Parse a decimal string (or int/Decimal) into an exact amount; floats are refused."""
    if isinstance(value, float) or isinstance(value, bool):
        raise MoneyError("money must be a decimal string such as \"0.05\", not a float")
    try:
        amount = Decimal(value)
    except (InvalidOperation, TypeError, ValueError) as exc:
        raise MoneyError(f"not a decimal amount: {value!r}") from exc
    if not amount.is_finite():
        raise MoneyError(f"not a finite amount: {value!r}")
    if amount != amount.quantize(Decimal(1).scaleb(-6)):
        raise MoneyError("money has at most 6 decimal places")
    return amount


def to_micros(amount: Decimal) -> int:
    """Convert an exact amount into integer micros; refuses sub-micro precision."""
    micros = amount * MICROS_PER_UNIT
    if micros != micros.to_integral_value():
        raise MoneyError(f"{amount} has more than 6 decimal places")
    return int(micros)


def from_micros(micros: int) -> Decimal:
    """Convert integer micros back to a Decimal amount (6 decimal places)."""
    return (Decimal(micros) / MICROS_PER_UNIT).quantize(Decimal(1).scaleb(-6))


def round_cents(amount: Decimal) -> Decimal:
    """Round an amount half-up to the cent, as payment platforms do."""
    return amount.quantize(CENT, rounding=ROUND_HALF_UP)


def format_amount(amount: Decimal) -> str:
    """Render an amount for JSON: a plain decimal string, at least two decimals, no exponent."""
    normalized = amount.normalize()
    if normalized == normalized.to_integral_value() or -normalized.as_tuple().exponent < 2:
        normalized = normalized.quantize(CENT)
    return format(normalized, "f")
