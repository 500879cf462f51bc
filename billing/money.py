"""Exact money: Decimal in code, integer micros (millionths of a currency unit) in storage."""

from collections.abc import Sequence
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation

MICROS_PER_UNIT = 1_000_000
CENT = Decimal("0.01")
MICRO = Decimal("0.000001")


class MoneyError(ValueError):
    """A value that is not an exact amount of money."""

    code = "invalid_money"


def parse_amount(value: str | int | Decimal) -> Decimal:
    """Parse a decimal string (or int/Decimal) into an exact amount; floats are refused."""
    if isinstance(value, float) or isinstance(value, bool):
        raise MoneyError('money must be a decimal string such as "0.05", not a float')
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
    exponent = normalized.as_tuple().exponent
    # Finite amounts always have an int exponent; the str case ("n", "F") is NaN/Infinity.
    if normalized == normalized.to_integral_value() or (
        isinstance(exponent, int) and -exponent < 2
    ):
        normalized = normalized.quantize(CENT)
    return format(normalized, "f")


def round_micros(amount: Decimal) -> Decimal:
    """Round an amount half-up to the micro, the finest amount storage keeps."""
    return amount.quantize(MICRO, rounding=ROUND_HALF_UP)


def allocate_cents(amounts: Sequence[Decimal]) -> list[Decimal]:
    """Round each amount to the cent so that the rounded parts add up to the rounded sum.

    Rounding every line on its own can make a printed invoice whose lines do not
    add up to its printed total. This uses the largest-remainder method instead:
    every part is floored to the cent, and the cents still missing from the
    half-up rounded total go to the parts with the largest remainders (the
    earlier part wins a tie, so the result is deterministic). A part that is
    already a whole number of cents is never changed, and no part moves by a
    cent or more.

    Args:
        amounts: Exact amounts in one currency (any sign, at most 6 decimals).

    Returns:
        Amounts in whole cents, in the same order, whose sum equals
        ``round_cents(sum(amounts))``.
    """
    floors = [amount.quantize(CENT, rounding=ROUND_FLOOR) for amount in amounts]
    target = round_cents(sum(amounts, Decimal(0)))
    missing_cents = int((target - sum(floors, Decimal(0))) / CENT)
    by_remainder = sorted(
        range(len(amounts)), key=lambda index: (-(amounts[index] - floors[index]), index)
    )
    for index in by_remainder[:missing_cents]:
        floors[index] += CENT
    return floors
