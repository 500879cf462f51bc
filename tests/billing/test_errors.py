"""Billing errors carry stable codes, and the package stays free of web and ORM frameworks."""

import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from billing import errors
from billing.errors import BillingError, BudgetExceededError, CurrencyMismatchError

ROOT = Path(__file__).resolve().parents[2]


def test_every_billing_error_has_its_own_stable_code() -> None:
    classes = [
        value
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, BillingError)
    ]
    codes = {cls.code for cls in classes}
    assert len(codes) == len(classes)  # no two errors share a code
    assert {
        "billing_error",
        "invalid_amount",
        "invalid_billing_input",
        "currency_mismatch",
        "no_rate_card",
        "invalid_rate_card",
        "budget_exceeded",
        "invalid_budget_operation",
        "invalid_reversal",
        "invalid_invoice",
        "invoice_immutable",
    } == codes


@pytest.mark.parametrize(
    ("requested", "remaining", "message"),
    [
        (Decimal("12.5"), Decimal("3.2"), "budget exceeded: 12.50 USD requested, 3.20 USD left"),
        (
            Decimal("0.000123"),
            Decimal("0"),
            "budget exceeded: 0.000123 USD requested, 0.00 USD left",
        ),
    ],
)
def test_budget_exceeded_message(requested: Decimal, remaining: Decimal, message: str) -> None:
    error = BudgetExceededError(requested=requested, remaining=remaining, currency="USD")
    assert str(error) == message and error.message == message
    assert isinstance(error, BillingError)


def test_currency_mismatch_details() -> None:
    error = CurrencyMismatchError("USD", "EUR", context="ledger entries")
    assert str(error) == "currency mismatch in ledger entries: expected USD, found EUR"
    assert error.details == {"expected": "USD", "found": "EUR"}


def test_billing_stays_framework_free() -> None:
    code = (
        "import sys, billing.budget, billing.fees, billing.invoices, billing.ledger, "
        "billing.rates; assert not {'flask', 'sqlalchemy'} & set(sys.modules), sys.modules.keys()"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
