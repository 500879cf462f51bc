"""Bonuses: ops pays a worker, or every worker above a gold accuracy, exactly once."""

from decimal import Decimal
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema
from sqlalchemy.orm import Session

from orchestrator.api.common import (
    MAX_ID,
    Money,
    Text,
    authorize,
    current_principal,
    sessions,
    with_session,
)
from orchestrator.errors import InvalidInputError
from orchestrator.services import bonuses

bp = Blueprint("bonuses", __name__, url_prefix="/api/v1/projects", description="Bonuses")

READERS = ("admin", "ops", "finance")
WRITERS = ("admin", "ops")
KEY = validate.Length(min=1, max=255)


class BonusCreateSchema(Schema):
    """A bonus for one worker (`worker_id`) or for every active worker of the project whose
    gold accuracy is at least `min_gold_accuracy` after `min_gold_answers` gold answers."""

    amount = Money(required=True, metadata={"description": "Per worker, above zero"})
    reason = Text(required=True, validate=validate.Length(min=1, max=500))
    worker_id = fields.Integer(validate=validate.Range(min=1, max=MAX_ID))
    min_gold_accuracy = fields.Float(validate=validate.Range(min=0, max=1))
    min_gold_answers = fields.Integer(
        validate=validate.Range(min=1, max=100_000),
        metadata={"description": "Default: the project's gold_min_answers"},
    )
    client_token = Text(
        validate=KEY, metadata={"description": "Retry token, if no Idempotency-Key header"}
    )

    @validates_schema
    def one_target(self, data: dict[str, Any], **_: Any) -> None:
        """Require exactly one of worker_id and min_gold_accuracy, and a positive amount."""
        if ("worker_id" in data) == ("min_gold_accuracy" in data):
            raise ValidationError(
                "give exactly one of worker_id and min_gold_accuracy", "worker_id"
            )
        if "min_gold_answers" in data and "worker_id" in data:
            raise ValidationError("only with min_gold_accuracy", "min_gold_answers")
        if data.get("amount") is not None and data["amount"] <= Decimal(0):
            raise ValidationError("must be above zero", "amount")


class IdempotencyHeadersSchema(Schema):
    idempotency_key = Text(
        data_key="Idempotency-Key",
        validate=KEY,
        metadata={"description": "Makes retries safe: the same key never pays twice"},
    )


class BonusPaymentSchema(Schema):
    id = fields.Integer(required=True)
    worker_id = fields.Integer(required=True)
    worker_ref = fields.String(required=True)
    workforce_id = fields.Integer(required=True)
    amount = Money(required=True)
    fee = Money(required=True)
    cost = Money(required=True, metadata={"description": "amount + fee"})
    status = fields.String(required=True, validate=validate.OneOf(["pending", "paid", "failed"]))
    error = fields.String(required=True, allow_none=True)
    paid_at = fields.DateTime(required=True, allow_none=True)


class BonusGrantSchema(Schema):
    project_id = fields.Integer(required=True)
    idempotency_key = fields.String(required=True, attribute="key")
    amount = Money(required=True)
    currency = fields.String(required=True)
    reason = fields.String(required=True)
    total = Money(required=True, metadata={"description": "Bonuses plus fees, failed excluded"})
    replayed = fields.Boolean(required=True)
    bonuses = fields.List(fields.Nested(BonusPaymentSchema), required=True)


class BonusSchema(BonusPaymentSchema):
    idempotency_key = fields.String(required=True)
    currency = fields.String(required=True)
    reason = fields.String(required=True)
    created_at = fields.DateTime(required=True)


class BonusListSchema(Schema):
    data = fields.List(fields.Nested(BonusSchema), required=True)


@bp.route("/<id:project_id>/bonuses")
class Bonuses(MethodView):
    @authorize(*READERS)
    @bp.response(200, BonusListSchema)
    @with_session
    def get(self, project_id: int, session: Session) -> Any:
        """Every bonus of a project, oldest first."""
        return {"data": bonuses.list_bonuses(session, project_id)}

    @authorize(*WRITERS)
    @bp.arguments(IdempotencyHeadersSchema, location="headers")
    @bp.arguments(BonusCreateSchema)
    @bp.response(201, BonusGrantSchema)
    def post(self, headers: dict[str, Any], data: dict[str, Any], project_id: int) -> Any:
        """Pay a bonus through the workforce's connector and into the ledger, exactly once.

        Send an `Idempotency-Key` header (or `client_token`): a retry with the same key
        replays the first answer (`replayed: true`) and never pays twice; the same key
        with a different request is a 409.
        """
        header, token = headers.get("idempotency_key"), data.pop("client_token", None)
        if header and token and header != token:
            raise InvalidInputError(
                "client_token and the Idempotency-Key header differ",
                details={"client_token": ["differs from the Idempotency-Key header"]},
            )
        key = header or token
        if not key:
            raise InvalidInputError(
                "send an Idempotency-Key header or a client_token, so a retry never pays twice",
                details={"client_token": ["required without an Idempotency-Key header"]},
            )
        outcome = bonuses.grant_bonuses(
            sessions(),
            bonuses.BonusRequest(project_id=project_id, key=key, **data),
            principal=current_principal(),
        )
        return outcome, 201, {"Idempotent-Replayed": "true"} if outcome.replayed else {}
