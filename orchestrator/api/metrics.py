"""Prometheus metrics at /metrics (a bearer key of role admin or ops, as Prometheus sends one)."""

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy.orm import Session

from orchestrator.api.common import authorize, with_session
from orchestrator.metrics import render_metrics

bp = Blueprint("metrics", __name__, description="Operations")


@bp.route("/metrics")
class Metrics(MethodView):
    @authorize("admin", "ops")
    @bp.response(200, description="Prometheus text format 0.0.4", content_type="text/plain")
    @with_session
    def get(self, session: Session) -> Any:
        """Hand-outs, answers, queue depths, aggregation runs and spend, from the database."""
        return Response(render_metrics(session), mimetype="text/plain; version=0.0.4")
