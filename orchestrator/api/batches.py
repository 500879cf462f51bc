"""Batches: dispatch a project's items to a workforce; progress and worker reports."""

from decimal import Decimal
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, pre_dump, validate
from sqlalchemy.orm import Session

from orchestrator.api.common import INSTANTS, Money, authorize, current_principal, with_session
from orchestrator.models.batches import BATCH_STATUSES
from orchestrator.services import audit, dispatch, reports

bp = Blueprint("batches", __name__, url_prefix="/api/v1", description="Dispatch and progress")

OPS = ("admin", "ops")
READERS = ("admin", "ops", "finance")


class DispatchSchema(Schema):
    """Split the project's pending items into batches for one workforce and publish them."""

    workforce_id = fields.Integer(required=True, validate=validate.Range(min=1, max=2**63 - 1))
    batch_size = fields.Integer(
        validate=validate.Range(min=1, max=100_000),
        metadata={"description": "Items per batch; default: all pending items in one batch."},
    )
    max_items = fields.Integer(
        validate=validate.Range(min=1, max=10_000_000),
        metadata={"description": "Dispatch at most this many pending items."},
    )
    due_at = fields.AwareDateTime(
        default_timezone=None,
        validate=INSTANTS,
        metadata={"description": "When the workforce should be done."},
    )


class PackagingSchema(Schema):
    """How an MTurk batch was packed into HITs, and what splitting 10+ slots saved (USD)."""

    hits = fields.Integer(required=True, metadata={"description": "HITs planned at publishing"})
    cost = Money(required=True, metadata={"description": "Rewards plus MTurk fees as packed"})
    cost_without_split = Money(
        required=True, metadata={"description": "The same with one HIT per item group"}
    )
    saving = Money(required=True, metadata={"description": "cost_without_split - cost"})

    @pre_dump
    def amounts(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Read the amounts the connector keeps as strings."""
        money = ("cost", "cost_without_split", "saving")
        return {**data, **{key: Decimal(data[key]) for key in money}}


class BatchSchema(Schema):
    id = fields.Integer(required=True)
    project_id = fields.Integer(required=True)
    workforce_id = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(BATCH_STATUSES))
    external_ref = fields.String(required=True, allow_none=True)
    item_count = fields.Integer(required=True)
    gold_count = fields.Integer(required=True)
    slot_count = fields.Integer(required=True)
    due_at = fields.DateTime(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    published_at = fields.DateTime(required=True, allow_none=True)
    completed_at = fields.DateTime(required=True, allow_none=True)
    packaging = fields.Nested(
        PackagingSchema,
        required=True,
        allow_none=True,
        attribute="connector_state.packaging",
        dump_default=None,
        metadata={"description": "MTurk batches once published; null otherwise"},
    )


class BatchListSchema(Schema):
    data = fields.List(fields.Nested(BatchSchema), required=True)


class BatchProgressSchema(Schema):
    batch_id = fields.Integer(required=True)
    status = fields.String(required=True)
    items = fields.Integer(required=True)
    gold_items = fields.Integer(required=True)
    open = fields.Integer(required=True)
    leased = fields.Integer(required=True)
    answered = fields.Integer(required=True)


class ProgressSchema(Schema):
    project_id = fields.Integer(required=True)
    items = fields.Integer(required=True, metadata={"description": "Non-gold items"})
    gold_items = fields.Integer(required=True)
    pending = fields.Integer(required=True, metadata={"description": "Waiting to be dispatched"})
    in_progress = fields.Integer(required=True)
    answered_to_overlap = fields.Integer(required=True)
    batches = fields.List(fields.Nested(BatchProgressSchema), required=True)


class WorkerReportSchema(Schema):
    worker_id = fields.Integer(required=True)
    external_id = fields.String(required=True)
    workforce = fields.String(required=True)
    status = fields.String(required=True)
    block_reason = fields.String(required=True, allow_none=True)
    answers = fields.Integer(required=True)
    gold_answers = fields.Integer(required=True, attribute="gold.answers")
    gold_correct = fields.Integer(required=True, attribute="gold.correct")
    gold_accuracy = fields.Float(required=True, allow_none=True, attribute="gold.accuracy")
    gold_accuracy_interval = fields.List(
        fields.Float(),
        required=True,
        attribute="gold.interval",
        metadata={"description": "95% Wilson interval"},
    )
    total_gold_answers = fields.Integer(required=True, attribute="gold_total.answers")
    total_gold_accuracy = fields.Float(
        required=True, allow_none=True, attribute="gold_total.accuracy"
    )
    median_seconds = fields.Float(required=True, allow_none=True)
    skill = fields.Float(required=True, allow_none=True)


class WorkerReportListSchema(Schema):
    data = fields.List(fields.Nested(WorkerReportSchema), required=True)


@bp.route("/projects/<id:project_id>/batches")
class ProjectBatches(MethodView):
    @authorize(*READERS)
    @bp.response(200, BatchListSchema)
    @with_session
    def get(self, project_id: int, session: Session) -> Any:
        """List a project's batches."""
        return {"data": dispatch.list_batches(session, project_id)}

    @authorize(*OPS)
    @bp.arguments(DispatchSchema)
    @bp.response(201, BatchListSchema)
    @with_session
    def post(self, data: dict[str, Any], project_id: int, session: Session) -> Any:
        """Dispatch pending items to a workforce, in batches; answers 409 when none are pending."""
        batches = dispatch.dispatch(session, project_id, **data)
        audit.record(
            session,
            current_principal(),
            "batches.dispatch",
            "project",
            project_id,
            batches=[b.id for b in batches],
            workforce_id=data["workforce_id"],
        )
        return {"data": batches}


@bp.route("/batches/<id:batch_id>")
class BatchById(MethodView):
    @authorize(*READERS)
    @bp.response(200, BatchSchema)
    @with_session
    def get(self, batch_id: int, session: Session) -> Any:
        """Get one batch."""
        return dispatch.get_batch(session, batch_id)


@bp.route("/batches/<id:batch_id>/cancel")
class BatchCancel(MethodView):
    @authorize(*OPS)
    @bp.response(200, BatchSchema)
    @with_session
    def post(self, batch_id: int, session: Session) -> Any:
        """Cancel a batch: its open and leased slots close; unanswered items become pending."""
        batch = dispatch.cancel_batch(session, batch_id)
        audit.record(session, current_principal(), "batch.cancel", "batch", batch_id)
        return batch


@bp.route("/projects/<id:project_id>/progress")
class ProjectProgress(MethodView):
    @authorize(*READERS)
    @bp.response(200, ProgressSchema)
    @with_session
    def get(self, project_id: int, session: Session) -> Any:
        """Items pending, in progress and answered to overlap, in total and per batch."""
        return reports.project_progress(session, project_id)


@bp.route("/projects/<id:project_id>/workers")
class ProjectWorkers(MethodView):
    @authorize(*OPS)
    @bp.response(200, WorkerReportListSchema)
    @with_session
    def get(self, project_id: int, session: Session) -> Any:
        """Per worker: answers, gold accuracy with its interval, median time, status."""
        return {"data": reports.project_workers(session, project_id)}
