"""Liveness and readiness: /healthz checks the database."""

from typing import Any

import sqlalchemy as sa
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from orchestrator.api.common import sessions

bp = Blueprint("health", __name__, description="Health")


class HealthSchema(Schema):
    status = fields.String(required=True)
    database = fields.String(required=True)


@bp.route("/healthz")
class Health(MethodView):
    @bp.response(200, HealthSchema)
    @bp.alt_response(503, schema=HealthSchema, description="Database unreachable")
    @bp.doc(security=[])
    def get(self) -> Any:
        """Report whether the service and its database answer."""
        try:
            with sessions().begin() as session:
                session.execute(sa.text("SELECT 1"))
        except sa.exc.SQLAlchemyError:
            return {"status": "unavailable", "database": "unreachable"}, 503
        return {"status": "ok", "database": "ok"}
