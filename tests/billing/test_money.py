"""Money helpers added for billing: micro rounding and cent allocation."""

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from billing.money import allocate_cents, round_cents, round_micros, to_micros

D = Decimal


def test_round_micros_half_up() -> None:
    assert round_micros(D("0.0000005")) == D("0.000001")
    assert round_micros(D("0.0000004999")) == D("0.000000")
    assert round_micros(D("-0.0000005")) == D("-0.000001")
    assert to_micros(round_micros(D(20) * 10 / 3600)) == 55_556


def test_allocate_cents_gives_missing_cents_to_largest_remainders() -> None:
    assert allocate_cents([D("1.005"), D("2.005"), D("3.005")]) == [D("1.01"), D("2.01"), D("3.00")]
    # Equal remainders: the earlier part gets the cent, so the result is deterministic.
    assert allocate_cents([D("0.333333")] * 3) == [D("0.34"), D("0.33"), D("0.33")]
    assert allocate_cents([D("0.333333"), D("0.333333"), D("0.333334")]) == [
        D("0.33"),
        D("0.33"),
        D("0.34"),
    ]
    assert allocate_cents([D("0.10"), D("-0.05"), D("0.01"), D("-0.005")]) == [
        D("0.10"),
        D("-0.05"),
        D("0.01"),
        D("0.00"),
    ]
    assert allocate_cents([]) == []


@given(st.lists(st.integers(-(10**10), 10**10), max_size=40))
def test_allocate_cents_adds_up_and_moves_no_part_a_cent(amounts_in_micros: list[int]) -> None:
    amounts = [D(n) / 1_000_000 for n in amounts_in_micros]
    parts = allocate_cents(amounts)
    assert sum(parts, D(0)) == round_cents(sum(amounts, D(0)))
    for exact, part in zip(amounts, parts, strict=True):
        assert part == part.quantize(D("0.01"))
        assert abs(part - exact) < D("0.01")
        if exact == exact.quantize(D("0.01")):
            assert part == exact  # whole-cent amounts are never changed
