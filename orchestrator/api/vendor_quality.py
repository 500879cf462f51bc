"""Vendor quality and SLA figures: for ops per vendor, and for a vendor its own.

No route here names a gold item or a gold answer: the figures are counts and
shares, and the vendor's own gold figures count closed batches only (see
`orchestrator.services.vendor_quality`).

The rejected-row counts are recorded by the bulk submission route itself, in the
submission's transaction (a replayed response is not counted again).
"""

import logging
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields
from sqlalchemy.orm import Session

from orchestrator.api.common import authorize, current_principal, with_session
from orchestrator.errors import ForbiddenError
from orchestrator.services import vendor_quality

log = logging.getLogger(__name__)

bp = Blueprint(
    "vendor_quality", __name__, url_prefix="/api/v1", description="Vendor quality and SLA"
)


class GoldFiguresSchema(Schema):
    answers = fields.Integer(required=True, metadata={"description": "Answers on gold items"})
    correct = fields.Integer(required=True)
    accuracy = fields.Float(required=True, allow_none=True, metadata={"description": "0..1"})
    interval_low = fields.Function(
        lambda gold: gold.interval[0],
        required=True,
        metadata={"type": "number", "description": "95% Wilson interval, lower bound"},
    )
    interval_high = fields.Function(
        lambda gold: gold.interval[1],
        required=True,
        metadata={"type": "number", "description": "95% Wilson interval, upper bound"},
    )


class VendorQualitySchema(Schema):
    vendor_id = fields.Integer(required=True)
    vendor = fields.String(required=True)
    as_of = fields.DateTime(required=True)
    gold = fields.Nested(GoldFiguresSchema, required=True)
    gold_closed_batches_only = fields.Boolean(
        required=True,
        metadata={"description": "Gold figures count closed batches only (a vendor's own view)"},
    )
    submissions = fields.Integer(
        required=True, metadata={"description": "Bulk submissions and S3 results files read"}
    )
    rows_submitted = fields.Integer(required=True)
    rows_rejected = fields.Integer(required=True)
    rejected_share = fields.Float(required=True, allow_none=True)
    rejected_by_reason = fields.Dict(keys=fields.String(), values=fields.Integer(), required=True)
    answers_total = fields.Integer(required=True)
    answers_last_24h = fields.Integer(required=True)
    answers_per_hour = fields.Float(
        required=True, metadata={"description": "Answers in the last 24 hours / 24"}
    )
    batches_with_due = fields.Integer(
        required=True, metadata={"description": "Batches with a due time (not cancelled)"}
    )
    batches_late = fields.Integer(
        required=True,
        metadata={"description": "Still open past due, or not delivered in full by it"},
    )
    batches_late_open = fields.Integer(
        required=True, metadata={"description": "Of the late ones, those still open"}
    )
    late_share = fields.Float(required=True, allow_none=True)


class VendorQualityListSchema(Schema):
    data = fields.List(fields.Nested(VendorQualitySchema), required=True)


@bp.route("/vendors/quality")
class VendorsQuality(MethodView):
    @authorize("admin", "ops")
    @bp.response(200, VendorQualityListSchema)
    @with_session
    def get(self, session: Session) -> Any:
        """Quality and SLA figures of every vendor."""
        return {"data": vendor_quality.list_vendor_quality(session)}


@bp.route("/vendors/<id:vendor_id>/quality")
class VendorQualityById(MethodView):
    @authorize("admin", "ops")
    @bp.response(200, VendorQualitySchema)
    @with_session
    def get(self, vendor_id: int, session: Session) -> Any:
        """One vendor's quality and SLA figures."""
        return vendor_quality.get_vendor_quality(session, vendor_id)


@bp.route("/vendor/quality")
class OwnQuality(MethodView):
    @authorize("vendor")
    @bp.response(200, VendorQualitySchema)
    @with_session
    def get(self, session: Session) -> Any:
        """Your own quality and SLA figures (gold figures over your closed batches)."""
        vendor_id = current_principal().vendor_id
        if vendor_id is None:  # a vendor key always has a vendor; guard against bad data
            raise ForbiddenError("this key has no vendor scope")
        return vendor_quality.get_vendor_quality(session, vendor_id, own_view=True)
