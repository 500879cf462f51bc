"""The internal pool's worker-facing routes: get a task, answer it, or give it back.

Nothing here says whether an item is gold, and no gold answer ever leaves.
"""

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from orchestrator.api.common import (
    Text,
    authorize,
    current_principal,
    current_settings,
    with_session,
)
from orchestrator.services import pool
from orchestrator.services.answers import MAX_TIME_SPENT_MS

bp = Blueprint("tasks", __name__, url_prefix="/api/v1/tasks", description="Internal pool tasks")


class NextTaskQuerySchema(Schema):
    project_id = fields.Integer(
        validate=validate.Range(min=1, max=2**63 - 1),
        metadata={"description": "Only tasks of this project."},
    )


class TaskSchema(Schema):
    """A leased task: the item's data, the instructions and the allowed labels."""

    lease_id = fields.String(required=True, attribute="token")
    expires_at = fields.DateTime(required=True)
    project_id = fields.Integer(required=True)
    data = fields.Dict(required=True)
    instructions = fields.String(required=True)
    labels = fields.List(fields.String(), required=True)


class AnswerSchema(Schema):
    label = Text(required=True, validate=validate.Length(min=1, max=255))
    time_spent_ms = fields.Integer(
        validate=validate.Range(min=0, max=MAX_TIME_SPENT_MS),
        metadata={"description": "Default: measured from the lease."},
    )


class AnswerReceiptSchema(Schema):
    answer_id = fields.Integer(required=True)
    label = fields.String(required=True)


@bp.route("/next")
class NextTask(MethodView):
    @authorize("worker")
    @bp.arguments(NextTaskQuerySchema, location="query")
    @bp.response(200, TaskSchema)
    @bp.alt_response(204, description="No task for you right now")
    @with_session
    def get(self, query: dict[str, Any], session: Session) -> Any:
        """Lease the next task to the calling worker."""
        principal = current_principal()
        lease = pool.next_task(
            session,
            worker_id=principal.worker_id,
            project_id=query.get("project_id"),
            default_lease_seconds=current_settings().lease_seconds,
        )
        if lease is None:
            return "", 204
        return lease


class SuiteQuerySchema(NextTaskQuerySchema):
    size = fields.Integer(
        load_default=10,
        validate=validate.Range(min=1, max=pool.MAX_SUITE),
        metadata={"description": "How many tasks to lease at once, each of a different item."},
    )


class SuiteSchema(Schema):
    """A task suite: several leased tasks of one project."""

    tasks = fields.List(fields.Nested(TaskSchema), required=True)


class SuiteAnswerSchema(AnswerSchema):
    lease_id = Text(required=True, validate=validate.Length(min=1, max=64))


class SuiteAnswersSchema(Schema):
    answers = fields.List(
        fields.Nested(SuiteAnswerSchema),
        required=True,
        validate=validate.Length(min=1, max=pool.MAX_SUITE),
    )


class SuiteAcceptedSchema(Schema):
    row = fields.Integer(required=True, metadata={"description": "Index in `answers`"})
    lease_id = fields.String(required=True)
    answer_id = fields.Integer(required=True)
    label = fields.String(required=True)


class SuiteRejectedSchema(Schema):
    row = fields.Integer(required=True, metadata={"description": "Index in `answers`"})
    lease_id = fields.String(required=True)
    code = fields.String(required=True, validate=validate.OneOf(pool.SUITE_REJECT_CODES))
    reason = fields.String(required=True)


class SuiteReceiptSchema(Schema):
    accepted_count = fields.Integer(required=True)
    rejected_count = fields.Integer(required=True)
    accepted = fields.List(fields.Nested(SuiteAcceptedSchema), required=True)
    rejected = fields.List(fields.Nested(SuiteRejectedSchema), required=True)


@bp.route("/suite")
class NextSuite(MethodView):
    @authorize("worker")
    @bp.arguments(SuiteQuerySchema, location="query")
    @bp.response(200, SuiteSchema)
    @bp.alt_response(204, description="No task for you right now")
    @with_session
    def get(self, query: dict[str, Any], session: Session) -> Any:
        """Lease a suite of up to `size` tasks of one project to the calling worker."""
        leases = pool.next_tasks(
            session,
            worker_id=current_principal().worker_id,
            count=query["size"],
            project_id=query.get("project_id"),
            default_lease_seconds=current_settings().lease_seconds,
        )
        if not leases:
            return "", 204
        return {"tasks": leases}


@bp.route("/answers")
class SuiteAnswers(MethodView):
    @authorize("worker")
    @bp.arguments(SuiteAnswersSchema)
    @bp.response(200, SuiteReceiptSchema)
    @with_session
    def post(self, data: dict[str, Any], session: Session) -> Any:
        """Answer several leased tasks at once; each bad row is refused with its reason."""
        outcomes = pool.submit_answers(
            session,
            worker_id=current_principal().worker_id,
            answers=[pool.SuiteAnswer(**row) for row in data["answers"]],
        )
        accepted = [vars(o) for o in outcomes if o.code is None]
        rejected = [vars(o) for o in outcomes if o.code is not None]
        return {
            "accepted_count": len(accepted),
            "rejected_count": len(rejected),
            "accepted": accepted,
            "rejected": rejected,
        }


@bp.route("/<string:lease_id>/answer")
class TaskAnswer(MethodView):
    @authorize("worker")
    @bp.arguments(AnswerSchema)
    @bp.response(201, AnswerReceiptSchema)
    @with_session
    def post(self, data: dict[str, Any], lease_id: str, session: Session) -> Any:
        """Answer a leased task; 409 if the lease expired, was answered or is not yours."""
        accepted = pool.submit_answer(
            session, worker_id=current_principal().worker_id, token=lease_id, **data
        )
        return {"answer_id": accepted.answer_id, "label": accepted.label}


@bp.route("/<string:lease_id>/release")
class TaskRelease(MethodView):
    @authorize("worker")
    @bp.response(204)
    @with_session
    def post(self, lease_id: str, session: Session) -> Any:
        """Give a leased task back without answering it."""
        pool.release_task(session, worker_id=current_principal().worker_id, token=lease_id)
        return "", 204
