"""The vendor-facing API: a vendor's own batches, their tasks, and bulk answers.

Every route admits vendor keys only and is scoped to the key's vendor: another
vendor's batch is a 404, exactly like a batch that does not exist. No response
says whether a task is gold or carries a gold answer, an item id or external id.

`POST /vendor/batches/{id}/answers` takes an `Idempotency-Key` (Stripe semantics,
kept 7 days since answers cost money): see `orchestrator.services.idempotency`.
"""

from typing import Any

from flask import jsonify, request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from orchestrator.api.bulk_rows import BulkRows
from orchestrator.api.common import (
    PageQuerySchema,
    Text,
    authorize,
    current_principal,
    sessions,
    with_session,
)
from orchestrator.errors import ForbiddenError
from orchestrator.models.batches import BATCH_STATUSES
from orchestrator.services import idempotency, vendor_quality, vendors
from orchestrator.services.answers import MAX_TIME_SPENT_MS

bp = Blueprint("vendor", __name__, url_prefix="/api/v1/vendor", description="Vendor API")

VENDOR = ("vendor",)
MAX_ROWS = 5000


def _vendor_id() -> int:
    vendor_id = current_principal().vendor_id
    if vendor_id is None:  # a vendor key always has a vendor; guard against bad data
        raise ForbiddenError("this key has no vendor scope")
    return vendor_id


class VendorBatchQuerySchema(PageQuerySchema):
    status = fields.String(
        load_default="open",
        validate=validate.OneOf(("open", "all", *BATCH_STATUSES)),
        metadata={"description": "open (published or in progress, the default), all, or one"},
    )


class VendorBatchSchema(Schema):
    """A batch as its vendor sees it."""

    id = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(BATCH_STATUSES))
    title = fields.String(required=True)
    instructions = fields.String(required=True)
    labels = fields.List(fields.String(), required=True)
    overlap = fields.Integer(
        required=True, metadata={"description": "Answers wanted per task, from distinct workers"}
    )
    task_count = fields.Integer(required=True)
    open_slots = fields.Integer(required=True, metadata={"description": "Answers still wanted"})
    due_at = fields.DateTime(required=True, allow_none=True)
    published_at = fields.DateTime(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)


class VendorBatchPageSchema(Schema):
    data = fields.List(fields.Nested(VendorBatchSchema), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


class VendorTaskSchema(Schema):
    task_ref = fields.String(required=True, metadata={"description": "Opaque task reference"})
    data = fields.Dict(required=True)


class VendorTaskPageSchema(Schema):
    batch_id = fields.Integer(required=True)
    instructions = fields.String(required=True)
    labels = fields.List(fields.String(), required=True)
    overlap = fields.Integer(required=True)
    data = fields.List(fields.Nested(VendorTaskSchema), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


def _text(name: str) -> validate.Length:
    return validate.Length(min=1, max=vendors.ROW_TEXT_LIMITS[name])


class AnswerRowSchema(Schema):
    task_ref = Text(required=True, validate=_text("task_ref"))
    worker_id = Text(
        required=True,
        validate=_text("worker_id"),
        metadata={"description": "The vendor's own id of the worker who answered"},
    )
    label = Text(required=True, validate=_text("label"))
    time_spent_ms = fields.Integer(
        load_default=None, allow_none=True, validate=validate.Range(min=0, max=MAX_TIME_SPENT_MS)
    )


class SubmitSchema(Schema):
    answers = BulkRows(
        AnswerRowSchema,
        required=True,
        validate=validate.Length(min=1, max=MAX_ROWS),
    )


class SubmitQuerySchema(Schema):
    atomic = fields.Boolean(
        load_default=False,
        metadata={"description": "All or nothing: store no row unless every row is valid"},
    )


class IdempotencyHeaderSchema(Schema):
    idempotency_key = Text(
        data_key="Idempotency-Key",
        validate=validate.Length(min=1, max=255),
        metadata={"description": "Retry safely: the same key replays the first response"},
    )


class AcceptedRowSchema(Schema):
    row = fields.Integer(required=True, metadata={"description": "Index in `answers`"})
    task_ref = fields.String(required=True)
    worker_id = fields.String(required=True)
    answer_id = fields.Integer(required=True)


class RejectedRowSchema(Schema):
    row = fields.Integer(required=True, metadata={"description": "Index in `answers`"})
    task_ref = fields.String(required=True)
    worker_id = fields.String(required=True)
    code = fields.String(required=True, validate=validate.OneOf(vendors.REJECT_CODES))
    reason = fields.String(required=True)


class SubmissionSchema(Schema):
    batch_id = fields.Integer(required=True)
    atomic = fields.Boolean(required=True)
    accepted_count = fields.Integer(required=True)
    rejected_count = fields.Integer(required=True)
    accepted = fields.List(fields.Nested(AcceptedRowSchema), required=True)
    rejected = fields.List(fields.Nested(RejectedRowSchema), required=True)


@bp.route("/batches")
class VendorBatches(MethodView):
    @authorize(*VENDOR)
    @bp.arguments(VendorBatchQuerySchema, location="query")
    @bp.response(200, VendorBatchPageSchema)
    @with_session
    def get(self, query: dict[str, Any], session: Session) -> Any:
        """List your batches (by default the open ones), oldest first."""
        status = None if query["status"] == "all" else query["status"]
        data, total = vendors.list_batches(
            session,
            vendor_id=_vendor_id(),
            status=status,
            limit=query["limit"],
            offset=query["offset"],
        )
        return {"data": data, "total": total, "limit": query["limit"], "offset": query["offset"]}


@bp.route("/batches/<id:batch_id>")
class VendorBatchById(MethodView):
    @authorize(*VENDOR)
    @bp.response(200, VendorBatchSchema)
    @with_session
    def get(self, batch_id: int, session: Session) -> Any:
        """One of your batches; 404 for any batch that is not yours."""
        return vendors.get_batch(session, vendor_id=_vendor_id(), batch_id=batch_id)


@bp.route("/batches/<id:batch_id>/tasks")
class VendorBatchTasks(MethodView):
    @authorize(*VENDOR)
    @bp.arguments(PageQuerySchema, location="query")
    @bp.response(200, VendorTaskPageSchema)
    @with_session
    def get(self, query: dict[str, Any], batch_id: int, session: Session) -> Any:
        """A page of the batch's tasks, with its instructions and labels."""
        batch, tasks, total = vendors.list_tasks(
            session,
            vendor_id=_vendor_id(),
            batch_id=batch_id,
            limit=query["limit"],
            offset=query["offset"],
        )
        return {
            "batch_id": batch.id,
            "instructions": batch.instructions,
            "labels": batch.labels,
            "overlap": batch.overlap,
            "data": tasks,
            "total": total,
            "limit": query["limit"],
            "offset": query["offset"],
        }


@bp.route("/batches/<id:batch_id>/answers")
class VendorBatchAnswers(MethodView):
    @authorize(*VENDOR)
    @bp.arguments(SubmitQuerySchema, location="query")
    @bp.arguments(IdempotencyHeaderSchema, location="headers")
    @bp.arguments(SubmitSchema)
    @bp.response(200, SubmissionSchema)
    @bp.alt_response(409, description="Batch closed, or the Idempotency-Key conflicts")
    def post(
        self, query: dict[str, Any], headers: dict[str, Any], body: dict[str, Any], batch_id: int
    ) -> Any:
        """Submit answers in bulk: each row is accepted or rejected with a reason.

        Valid rows are stored even when others are refused, unless `atomic=true`
        (then any refused row makes it a 422 and nothing is stored). The same
        `Idempotency-Key` with the same request replays the first response
        (header `Idempotent-Replayed: true`) and stores nothing again; with a
        different request, or while the first is still running, it is a 409.
        """
        vendor_id = _vendor_id()
        rows = [vendors.AnswerRow(**row) for row in body["answers"]]
        try:
            return _submit(vendor_id, batch_id, rows, query["atomic"], headers)
        except vendors.RowsRejectedError as refused:
            # Nothing was stored, but the refused rows count in the vendor's SLA figures.
            with sessions().begin() as session:
                _record_counts(session, batch_id, rows, [], refused.details["rows"])
            raise


def _submit(
    vendor_id: int,
    batch_id: int,
    rows: list[vendors.AnswerRow],
    atomic: bool,
    headers: dict[str, Any],
) -> Any:
    def submit(session: Session) -> dict[str, Any]:
        result = vendors.submit_answers(
            session, vendor_id=vendor_id, batch_id=batch_id, rows=rows, atomic=atomic
        )
        _record_counts(session, batch_id, rows, result.accepted, result.rejected)
        dumped: dict[str, Any] = SubmissionSchema().dump(result)
        return dumped

    key = headers.get("idempotency_key")
    if key is None:
        with sessions().begin() as session:
            return _json(submit(session), 200)
    request_hash = idempotency.fingerprint(
        "POST", request.path, {"atomic": atomic}, request.get_json(silent=True)
    )
    with sessions().begin() as session:
        outcome = idempotency.claim(
            session,
            scope=f"vendor:{vendor_id}",
            key=key,
            request_hash=request_hash,
            retention=idempotency.MONEY_RETENTION,
        )
    if isinstance(outcome, idempotency.Replay):
        return _json(outcome.body, outcome.status, replayed=True)
    try:
        with sessions().begin() as session:
            dumped = submit(session)
            idempotency.complete(session, outcome, status=200, body=dumped)
    except BaseException:
        with sessions().begin() as session:
            idempotency.release(session, outcome)
        raise
    return _json(dumped, 200)


def _record_counts(
    session: Session,
    batch_id: int,
    rows: list[vendors.AnswerRow],
    accepted: list[dict[str, Any]],
    rejected: list[dict[str, Any]],
) -> None:
    vendor_quality.record_submission(
        session,
        current_principal(),
        vendor_id=_vendor_id(),
        batch_id=batch_id,
        rows=len(rows),
        accepted=len(accepted),
        rejected_codes=[row["code"] for row in rejected],
    )


def _json(body: dict[str, Any], status: int, *, replayed: bool = False) -> Any:
    response = jsonify(body)
    response.status_code = status
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return response
