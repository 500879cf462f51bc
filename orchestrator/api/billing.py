"""Billing for finance: cost reports, cost per label, budgets, vendor invoices.

Roles: finance and admin read everything here; ops reads the cost reports and
budgets too (it runs the projects those budgets limit) but not invoices, and sets
workforce budgets. Only finance and admin create, issue or delete invoices.
Vendor and worker keys cannot read billing at all.

Money is a decimal string everywhere; reports may be negative (a day whose
reversals outweigh its charges), so their amounts allow a sign.
"""

import csv
import io
from typing import Any

from flask import Response, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from billing.invoices import render_csv, render_html
from billing.money import format_amount, from_micros
from orchestrator.api.common import (
    CURRENCY,
    DAYS,
    MAX_ID,
    Money,
    PageQuerySchema,
    Text,
    authorize,
    current_principal,
    page_schema,
    with_session,
)
from orchestrator.services import audit, budgets, cost_reports, invoices
from orchestrator.services.workforces import get_workforce

bp = Blueprint("billing", __name__, url_prefix="/api/v1/billing", description="Billing")

REPORT_READERS = ("admin", "finance", "ops")
INVOICE_READERS = ("admin", "finance")
INVOICE_WRITERS = ("admin", "finance")
BUDGET_WRITERS = ("admin", "ops")
SIGNED_MONEY_PATTERN = r"^-?[0-9]+(\.[0-9]{1,6})?$"
CSV, HTML, JSON = "text/csv", "text/html", "application/json"


class SignedMoney(Money):
    """An amount that may be negative (credits, reversals), as a decimal string."""

    def __init__(self, **kwargs: Any) -> None:
        metadata = {"pattern": SIGNED_MONEY_PATTERN, "example": "-0.05"}
        super().__init__(metadata={**metadata, **kwargs.pop("metadata", {})}, **kwargs)


class MicrosMoney(SignedMoney):
    """Money stored as integer micros, shown as a decimal string."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        return None if value is None else format_amount(from_micros(value))


def wants(choice: str | None, offered: tuple[str, ...]) -> str:
    """Pick the response type: `?format=` first, else the Accept header, else JSON."""
    by_format = {"json": JSON, "csv": CSV, "html": HTML}
    if choice is not None:
        return by_format[choice]
    best = request.accept_mimetypes.best_match([JSON, *offered])
    return best or JSON


def also(*media_types: str) -> dict[Any, Any]:
    """Document other media types of a 200 response beside its JSON schema."""
    text = {"schema": {"type": "string"}}
    # An int key, as flask-smorest's own response doc uses, so the two merge.
    return {200: {"content": {media_type: text for media_type in media_types}}}


def attachment(body: str, media_type: str, filename: str | None = None) -> Response:
    """Wrap a rendered document; CSV comes as a download with a file name."""
    response = Response(body, mimetype=media_type)
    if filename:
        response.headers["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


# --- cost reports ------------------------------------------------------------------


class CostQuerySchema(Schema):
    group_by = fields.String(
        load_default="project",
        validate=validate.OneOf(cost_reports.GROUPS),
        metadata={"description": "project, workforce, vendor, batch, worker or day (UTC)"},
    )
    project_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    workforce_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    vendor_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    start = fields.Date(validate=DAYS, metadata={"description": "First UTC day (inclusive)"})
    end = fields.Date(validate=DAYS, metadata={"description": "Last UTC day (exclusive)"})
    format = fields.String(
        validate=validate.OneOf(["json", "csv"]),
        metadata={"description": "Default: from the Accept header, else JSON."},
    )


class CostSplitSchema(Schema):
    currency = fields.String(required=True)
    total = SignedMoney(required=True)
    rewards = SignedMoney(
        required=True, metadata={"description": "Rewards, bonuses, vendor charges (not gold)"}
    )
    fees = SignedMoney(required=True, metadata={"description": "Platform and vendor fees"})
    gold = SignedMoney(required=True, metadata={"description": "Everything spent on gold"})
    other = SignedMoney(required=True, metadata={"description": "Adjustments and refunds"})
    entries = fields.Integer(required=True)


class CostGroupSchema(Schema):
    key = fields.String(
        required=True, allow_none=True, metadata={"description": "Id or ISO day; null: none"}
    )
    name = fields.String(required=True, allow_none=True)
    currency = fields.String(required=True, attribute="cost.currency")
    total = SignedMoney(required=True, attribute="cost.total")
    rewards = SignedMoney(required=True, attribute="cost.rewards")
    fees = SignedMoney(required=True, attribute="cost.fees")
    gold = SignedMoney(required=True, attribute="cost.gold")
    other = SignedMoney(required=True, attribute="cost.other")
    entries = fields.Integer(required=True, attribute="cost.entries")


class CostReportSchema(Schema):
    group_by = fields.String(required=True)
    start = fields.Date(required=True, allow_none=True)
    end = fields.Date(required=True, allow_none=True)
    groups = fields.List(fields.Nested(CostGroupSchema), required=True)
    totals = fields.List(
        fields.Nested(CostSplitSchema),
        required=True,
        metadata={"description": "Grand totals, one per currency"},
    )


class FormatQuerySchema(Schema):
    format = fields.String(
        validate=validate.OneOf(["json", "csv"]),
        metadata={"description": "Default: from the Accept header, else JSON."},
    )


class CostPerLabelSchema(Schema):
    project_id = fields.Integer(required=True)
    currency = fields.String(required=True)
    items = fields.Integer(required=True, metadata={"description": "Non-gold items"})
    labelled_items = fields.Integer(
        required=True, metadata={"description": "Non-gold items with an aggregated label"}
    )
    total = SignedMoney(required=True)
    rewards = SignedMoney(required=True)
    fees = SignedMoney(required=True)
    gold = SignedMoney(required=True, metadata={"description": "The gold overhead"})
    other = SignedMoney(required=True)
    cost_per_label = SignedMoney(
        required=True, allow_none=True, metadata={"description": "total / labelled_items"}
    )
    cost_per_label_without_gold = SignedMoney(
        required=True, allow_none=True, metadata={"description": "(total - gold) / labelled"}
    )
    note = fields.String(required=True, allow_none=True)


@bp.route("/costs")
class Costs(MethodView):
    @authorize(*REPORT_READERS)
    @bp.arguments(CostQuerySchema, location="query")
    @bp.response(200, CostReportSchema)
    @bp.doc(responses=also(CSV))
    @with_session
    def get(self, query: dict[str, Any], session: Session) -> Any:
        """Ledger totals grouped by project, workforce, vendor, batch, worker or day."""
        media_type = wants(query.pop("format", None), (CSV,))
        report = cost_reports.cost_report(session, **query)
        if media_type == CSV:
            body = cost_reports.render_cost_report_csv(report)
            return attachment(body, CSV, f"costs-by-{report.group_by}.csv")
        return report


@bp.route("/projects/<id:project_id>/cost-per-label")
class CostPerLabel(MethodView):
    @authorize(*REPORT_READERS)
    @bp.arguments(FormatQuerySchema, location="query")
    @bp.response(200, CostPerLabelSchema)
    @bp.doc(responses=also(CSV))
    @with_session
    def get(self, query: dict[str, Any], project_id: int, session: Session) -> Any:
        """Project cost / labelled items, with and without gold, split into rewards, fees, gold."""
        media_type = wants(query.get("format"), (CSV,))
        result = cost_reports.cost_per_label(session, project_id)
        if media_type == CSV:
            body = cost_reports.render_cost_per_label_csv(result)
            return attachment(body, CSV, f"cost-per-label-{project_id}.csv")
        return result


# --- budgets -----------------------------------------------------------------------


class BudgetSchema(Schema):
    scope = fields.String(required=True, validate=validate.OneOf(["project", "workforce"]))
    scope_id = fields.Integer(required=True)
    currency = fields.String(required=True)
    limit = Money(required=True, allow_none=True, metadata={"description": "null: no limit"})
    committed = Money(required=True, metadata={"description": "Spent: the ledger's sum"})
    reserved = Money(
        required=True, metadata={"description": "Held for open and leased slots and bonuses"}
    )
    in_use = Money(required=True)
    remaining = Money(required=True, allow_none=True, metadata={"description": "null: no limit"})


class WorkforceBudgetQuerySchema(Schema):
    currency = Text(validate=CURRENCY, metadata={"description": "Default: its rate card's"})


class WorkforceBudgetSchema(Schema):
    budget = Money(required=True, allow_none=True, metadata={"description": "null: no limit"})
    currency = Text(validate=CURRENCY, metadata={"description": "Default: its rate card's"})


@bp.route("/projects/<id:project_id>/budget")
class ProjectBudget(MethodView):
    @authorize(*REPORT_READERS)
    @bp.response(200, BudgetSchema)
    @with_session
    def get(self, project_id: int, session: Session) -> Any:
        """A project's budget: limit, committed, reserved and remaining."""
        return budgets.project_budget(session, project_id)


@bp.route("/workforces/<id:workforce_id>/budget")
class WorkforceBudget(MethodView):
    @authorize(*REPORT_READERS)
    @bp.arguments(WorkforceBudgetQuerySchema, location="query")
    @bp.response(200, BudgetSchema)
    @with_session
    def get(self, query: dict[str, Any], workforce_id: int, session: Session) -> Any:
        """A workforce's budget in one currency (across all its projects)."""
        workforce = get_workforce(session, workforce_id)
        currency = query.get("currency") or budgets.workforce_currency(session, workforce)
        return budgets.workforce_budget(session, workforce, currency)

    @authorize(*BUDGET_WRITERS)
    @bp.arguments(WorkforceBudgetSchema)
    @bp.response(200, BudgetSchema)
    @with_session
    def put(self, data: dict[str, Any], workforce_id: int, session: Session) -> Any:
        """Set or clear a workforce's spending limit (on top of each project's budget)."""
        workforce = get_workforce(session, workforce_id)
        budgets.set_workforce_budget(session, workforce, data["budget"])
        audit.record(
            session,
            current_principal(),
            "workforce.budget",
            "workforce",
            workforce_id,
            budget=None if data["budget"] is None else format_amount(data["budget"]),
        )
        currency = data.get("currency") or budgets.workforce_currency(session, workforce)
        return budgets.workforce_budget(session, workforce, currency)


# --- invoices ----------------------------------------------------------------------


class InvoiceCreateSchema(Schema):
    """Build a draft invoice of a vendor's uninvoiced ledger entries before period_end."""

    vendor_id = fields.Integer(required=True, validate=validate.Range(min=1, max=MAX_ID))
    period_start = fields.Date(required=True, validate=DAYS)
    period_end = fields.Date(
        required=True, validate=DAYS, metadata={"description": "Exclusive (UTC day)"}
    )
    group_by = fields.String(load_default="batch", validate=validate.OneOf(["batch", "project"]))
    number = Text(
        validate=validate.Regexp(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,39}$"),
        metadata={"description": "Default: INV-<vendor>-<period start>-<n>"},
    )


class InvoiceLineSchema(Schema):
    description = fields.String(required=True)
    project_id = fields.Integer(required=True, allow_none=True)
    batch_id = fields.Integer(required=True, allow_none=True)
    quantity = fields.Integer(required=True, metadata={"description": "Answers, signed"})
    amount = MicrosMoney(required=True, attribute="amount_micros")
    exact_amount = MicrosMoney(required=True, attribute="exact_amount_micros")
    is_carried_over = fields.Boolean(required=True)


class InvoiceSchema(Schema):
    id = fields.Integer(required=True)
    number = fields.String(required=True)
    vendor_id = fields.Integer(required=True)
    vendor_name = fields.String(required=True)
    period_start = fields.Date(required=True)
    period_end = fields.Date(required=True, metadata={"description": "Exclusive"})
    group_by = fields.String(required=True)
    currency = fields.String(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["draft", "issued"]))
    total = MicrosMoney(
        required=True, attribute="total_micros", metadata={"description": "Whole cents"}
    )
    exact_total = MicrosMoney(required=True, attribute="exact_total_micros")
    lines = fields.List(fields.Nested(InvoiceLineSchema), required=True)
    issued_at = fields.DateTime(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)


class InvoiceListQuerySchema(PageQuerySchema):
    vendor_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    status = fields.String(validate=validate.OneOf(["draft", "issued"]))
    format = fields.String(validate=validate.OneOf(["json", "csv"]))


class InvoiceFormatQuerySchema(Schema):
    format = fields.String(
        validate=validate.OneOf(["json", "csv", "html"]),
        metadata={"description": "Default: from the Accept header, else JSON."},
    )


InvoicePageSchema = page_schema(InvoiceSchema, "InvoicePage")
INVOICE_LIST_COLUMNS = (
    "id",
    "number",
    "vendor_id",
    "vendor_name",
    "period_start",
    "period_end",
    "status",
    "currency",
    "total",
    "issued_at",
)


def _invoice_list_csv(page: list[invoices.StoredInvoice]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(INVOICE_LIST_COLUMNS)
    for stored in page:
        writer.writerow(
            (
                stored.id,
                stored.number,
                stored.vendor_id,
                stored.vendor_name,
                stored.period_start.isoformat(),
                stored.period_end.isoformat(),
                stored.status,
                stored.currency,
                format_amount(invoices.total_of(stored)),
                "" if stored.issued_at is None else stored.issued_at.isoformat(),
            )
        )
    return buffer.getvalue()


@bp.route("/invoices")
class Invoices(MethodView):
    @authorize(*INVOICE_READERS)
    @bp.arguments(InvoiceListQuerySchema, location="query")
    @bp.response(200, InvoicePageSchema)
    @bp.doc(responses=also(CSV))
    @with_session
    def get(self, query: dict[str, Any], session: Session) -> Any:
        """List invoices, newest first."""
        media_type = wants(query.pop("format", None), (CSV,))
        page, total = invoices.list_invoices(session, **query)
        if media_type == CSV:
            return attachment(_invoice_list_csv(page), CSV, "invoices.csv")
        return {"data": page, "total": total, "limit": query["limit"], "offset": query["offset"]}

    @authorize(*INVOICE_WRITERS)
    @bp.arguments(InvoiceCreateSchema)
    @bp.response(201, InvoiceSchema)
    @with_session
    def post(self, data: dict[str, Any], session: Session) -> Any:
        """Draft a vendor's invoice for a period from its uninvoiced ledger entries."""
        stored = invoices.create_invoice(session, **data)
        audit.record(
            session,
            current_principal(),
            "invoice.create",
            "invoice",
            stored.id,
            number=stored.number,
        )
        return stored


def _render(stored: invoices.StoredInvoice, media_type: str) -> Any:
    if media_type == CSV:
        return attachment(render_csv(invoices.to_billing(stored)), CSV, f"{stored.number}.csv")
    if media_type == HTML:
        return attachment(render_html(invoices.to_billing(stored)), HTML)
    return stored


@bp.route("/invoices/<id:invoice_id>")
class InvoiceById(MethodView):
    @authorize(*INVOICE_READERS)
    @bp.arguments(InvoiceFormatQuerySchema, location="query")
    @bp.response(200, InvoiceSchema)
    @bp.doc(responses=also(CSV, HTML))
    @with_session
    def get(self, query: dict[str, Any], invoice_id: int, session: Session) -> Any:
        """One invoice as JSON, CSV (`?format=csv`) or a printable page (`?format=html`)."""
        media_type = wants(query.get("format"), (CSV, HTML))
        return _render(invoices.get_invoice(session, invoice_id), media_type)

    @authorize(*INVOICE_WRITERS)
    @bp.response(204)
    @with_session
    def delete(self, invoice_id: int, session: Session) -> Any:
        """Delete a draft invoice (its entries go to the next one); issued invoices stay (409)."""
        invoices.delete_invoice(session, invoice_id)
        audit.record(session, current_principal(), "invoice.delete", "invoice", invoice_id)
        return "", 204


@bp.route("/invoices/<id:invoice_id>/html")
class InvoiceHtml(MethodView):
    @authorize(*INVOICE_READERS)
    @bp.response(200, description="Printable HTML", content_type=HTML)
    @bp.doc(responses=also(HTML))
    @with_session
    def get(self, invoice_id: int, session: Session) -> Any:
        """One invoice as a printable HTML page."""
        return _render(invoices.get_invoice(session, invoice_id), HTML)


@bp.route("/invoices/<id:invoice_id>/issue")
class InvoiceIssue(MethodView):
    @authorize(*INVOICE_WRITERS)
    @bp.response(200, InvoiceSchema)
    @with_session
    def post(self, invoice_id: int, session: Session) -> Any:
        """Issue a draft invoice; it never changes again (409 if already issued)."""
        stored = invoices.issue_invoice(session, invoice_id)
        audit.record(
            session,
            current_principal(),
            "invoice.issue",
            "invoice",
            invoice_id,
            number=stored.number,
        )
        return stored
