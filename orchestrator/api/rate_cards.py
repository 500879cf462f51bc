"""Rate cards: a workforce's dated prices and fee terms (ops writes, finance reads)."""

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from orchestrator.api.common import (
    CURRENCY,
    INSTANTS,
    Money,
    Text,
    authorize,
    current_principal,
    with_session,
)
from orchestrator.services import audit, rate_cards

bp = Blueprint("rate_cards", __name__, url_prefix="/api/v1/workforces", description="Rate cards")

READERS = ("admin", "ops", "finance")
WRITERS = ("admin", "ops")


class FeeTermsSchema(Schema):
    """Fee terms; which ones apply depends on the workforce's kind."""

    fee_rate = Money(metadata={"description": "vendor: share of each charge added as a fee"})
    fee_per_answer = Money(metadata={"description": "vendor, internal: fixed fee per answer"})
    minimum_per_invoice = Money(metadata={"description": "vendor: smallest invoice amount"})
    hourly_cost = Money(metadata={"description": "internal: cost of a worker per hour"})
    expected_seconds = fields.Integer(
        validate=validate.Range(min=1, max=86_400),
        metadata={"description": "internal, hourly: time reserved per answer (default 600)"},
    )
    masters = fields.Boolean(metadata={"description": "mturk: HITs require Masters (+5%)"})
    assignments_per_hit = fields.Integer(
        validate=validate.Range(min=1, max=1000),
        metadata={"description": "mturk: MaxAssignments (default: the project's overlap)"},
    )


class RateCardCreateSchema(Schema):
    """A new card applies from `effective_from` (default now) until the next one starts."""

    effective_from = fields.AwareDateTime(default_timezone=None, validate=INSTANTS)
    currency = Text(load_default="USD", validate=CURRENCY)
    price_per_answer = Money(
        required=True, metadata={"description": "Reward (internal, MTurk) or vendor charge"}
    )
    price_per_item = Money(
        allow_none=True, metadata={"description": "vendor: charged on an item's first answer"}
    )
    price_per_gold_answer = Money(
        allow_none=True, metadata={"description": "vendor: price of a gold answer, if different"}
    )
    gold_billable = fields.Boolean(
        load_default=True, metadata={"description": "vendor: may it bill gold answers?"}
    )
    fees = fields.Nested(FeeTermsSchema, load_default=dict)


class RateCardSchema(Schema):
    id = fields.Integer(required=True)
    workforce_id = fields.Integer(required=True)
    effective_from = fields.DateTime(required=True)
    currency = fields.String(required=True)
    price_per_answer = Money(required=True)
    price_per_item = Money(required=True, allow_none=True)
    price_per_gold_answer = Money(required=True, allow_none=True)
    gold_billable = fields.Boolean(required=True)
    fees = fields.Dict(required=True)
    created_at = fields.DateTime(required=True)


class RateCardListSchema(Schema):
    data = fields.List(fields.Nested(RateCardSchema), required=True)


def _shown(card: Any) -> dict[str, Any]:
    terms = rate_cards.card_terms(card)
    return {
        "id": card.id,
        "workforce_id": card.workforce_id,
        "effective_from": card.effective_from,
        "currency": card.currency,
        "price_per_answer": terms.price_per_answer,
        "price_per_item": terms.price_per_item,
        "price_per_gold_answer": terms.price_per_gold_answer,
        "gold_billable": card.gold_billable,
        "fees": rate_cards.fee_terms_of(card),
        "created_at": card.created_at,
    }


@bp.route("/<id:workforce_id>/rate-cards")
class RateCards(MethodView):
    @authorize(*READERS)
    @bp.response(200, RateCardListSchema)
    @with_session
    def get(self, workforce_id: int, session: Session) -> Any:
        """A workforce's rate cards, oldest start first."""
        return {
            "data": [_shown(card) for card in rate_cards.list_rate_cards(session, workforce_id)]
        }

    @authorize(*WRITERS)
    @bp.arguments(RateCardCreateSchema)
    @bp.response(201, RateCardSchema)
    @with_session
    def post(self, data: dict[str, Any], workforce_id: int, session: Session) -> Any:
        """Add a dated rate card; answers already on the ledger keep the rate they had."""
        card = rate_cards.create_rate_card(session, workforce_id=workforce_id, **data)
        audit.record(
            session,
            current_principal(),
            "rate_card.create",
            "workforce",
            workforce_id,
            rate_card_id=card.id,
        )
        return _shown(card)
