"""Exceptions raised by the billing package, each with a stable ``code``.

The orchestrator maps these classes to HTTP statuses in its one status table
(``orchestrator/errors.py``); ``code`` and ``details`` go into the JSON error
envelope unchanged, so both are part of the API contract. Amounts in
``details`` are plain decimal strings, never floats.
"""

from decimal import Decimal

from billing.money import format_amount


class BillingError(Exception):
    """Base class of every billing error."""

    code = "billing_error"

    def __init__(self, message: str, *, details: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, str] = dict(details or {})


class InvalidAmountError(BillingError, ValueError):
    """An amount that is a float, not finite, finer than a micro, or wrongly negative."""

    code = "invalid_amount"


class InvalidBillingInputError(BillingError, ValueError):
    """A non-money argument out of range: a naive datetime, a bad currency code, a count below 1."""

    code = "invalid_billing_input"


class CurrencyMismatchError(BillingError):
    """Amounts in different currencies were combined."""

    code = "currency_mismatch"

    def __init__(self, expected: str, found: str, *, context: str = "") -> None:
        where = f" in {context}" if context else ""
        super().__init__(
            f"currency mismatch{where}: expected {expected}, found {found}",
            details={"expected": expected, "found": found},
        )
        self.expected = expected
        self.found = found


class NoRateCardError(BillingError):
    """No rate card is in force at the requested time."""

    code = "no_rate_card"


class InvalidRateCardError(BillingError, ValueError):
    """A set of rate cards that cannot be resolved, e.g. two cards starting at the same instant."""

    code = "invalid_rate_card"


class BudgetExceededError(BillingError):
    """A reservation or commitment would take a budget past its limit."""

    code = "budget_exceeded"

    def __init__(self, *, requested: Decimal, remaining: Decimal, currency: str) -> None:
        super().__init__(
            f"budget exceeded: {format_amount(requested)} {currency} requested, "
            f"{format_amount(remaining)} {currency} left",
            details={
                "requested": format_amount(requested),
                "remaining": format_amount(remaining),
                "currency": currency,
            },
        )
        self.requested = requested
        self.remaining = remaining
        self.currency = currency


class InvalidBudgetOperationError(BillingError, ValueError):
    """A budget operation that does not match the state, e.g. releasing more than is reserved."""

    code = "invalid_budget_operation"


class InvalidReversalError(BillingError, ValueError):
    """An attempt to reverse an entry that cannot be reversed (a reversal itself)."""

    code = "invalid_reversal"


class InvalidInvoiceError(BillingError, ValueError):
    """Entries or arguments from which no invoice can be built."""

    code = "invalid_invoice"


class InvoiceImmutableError(BillingError):
    """An issued invoice was asked to change."""

    code = "invoice_immutable"

    def __init__(self, number: str) -> None:
        super().__init__(
            f"invoice {number} is issued and cannot change; late entries go to the next invoice",
            details={"number": number},
        )
        self.number = number
