"""Webhook deliveries of a workforce: the delivery log, and replaying a delivery."""

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from orchestrator.api.common import PageQuerySchema, authorize, current_principal, with_session
from orchestrator.models.outbox import ATTEMPT_OUTCOMES, OUTBOX_STATUSES
from orchestrator.services import audit, outbox

bp = Blueprint(
    "deliveries",
    __name__,
    url_prefix="/api/v1/workforces",
    description="Webhook deliveries (Standard Webhooks) and their delivery log",
)


class DeliveryQuerySchema(PageQuerySchema):
    status = fields.String(validate=validate.OneOf(OUTBOX_STATUSES))


class DeliveryAttemptSchema(Schema):
    """One try: when it started, what came back and how long it took."""

    attempt = fields.Integer(required=True)
    started_at = fields.DateTime(required=True)
    outcome = fields.String(required=True, validate=validate.OneOf(ATTEMPT_OUTCOMES))
    status_code = fields.Integer(required=True, allow_none=True)
    error = fields.String(required=True, allow_none=True)
    duration_ms = fields.Integer(required=True, allow_none=True)


class DeliverySchema(Schema):
    """A webhook message and every try at sending it."""

    id = fields.Integer(required=True)
    message_id = fields.String(
        required=True, metadata={"description": "The webhook-id, the same on every try"}
    )
    event = fields.String(required=True)
    target = fields.String(required=True)
    batch_id = fields.Integer(required=True, allow_none=True)
    payload = fields.Dict(required=True)
    status = fields.String(required=True, validate=validate.OneOf(OUTBOX_STATUSES))
    attempts = fields.Integer(required=True)
    next_attempt_at = fields.DateTime(required=True)
    delivered_at = fields.DateTime(required=True, allow_none=True)
    last_error = fields.String(required=True, allow_none=True)
    created_at = fields.DateTime(required=True)
    tries = fields.List(fields.Nested(DeliveryAttemptSchema), required=True)


class DeliveryPageSchema(Schema):
    data = fields.List(fields.Nested(DeliverySchema), required=True)
    total = fields.Integer(required=True)
    limit = fields.Integer(required=True)
    offset = fields.Integer(required=True)


def _dump(message: Any, tries: list[Any]) -> dict[str, Any]:
    fields_ = DeliverySchema().fields
    row = {name: getattr(message, name) for name in fields_ if name != "tries"}
    row["tries"] = tries
    return row


@bp.route("/<id:workforce_id>/deliveries")
class Deliveries(MethodView):
    @authorize("admin", "ops")
    @bp.arguments(DeliveryQuerySchema, location="query")
    @bp.response(200, DeliveryPageSchema)
    @with_session
    def get(self, query: dict[str, Any], workforce_id: int, session: Session) -> Any:
        """List a workforce's webhook deliveries, newest first, with every try."""
        messages, tries, total = outbox.list_deliveries(
            session,
            workforce_id,
            status=query.get("status"),
            limit=query["limit"],
            offset=query["offset"],
        )
        return {
            "data": [_dump(m, tries[m.id]) for m in messages],
            "total": total,
            "limit": query["limit"],
            "offset": query["offset"],
        }


@bp.route("/<id:workforce_id>/deliveries/<id:delivery_id>/replay")
class DeliveryReplay(MethodView):
    @authorize("admin", "ops")
    @bp.response(202, DeliverySchema)
    @with_session
    def post(self, workforce_id: int, delivery_id: int, session: Session) -> Any:
        """Send a delivery again at the next sender run, with the same webhook-id."""
        message = outbox.replay(session, workforce_id, delivery_id)
        audit.record(session, current_principal(), "delivery.replay", "outbox_message", message.id)
        return _dump(message, outbox.list_attempts(session, message.id))
