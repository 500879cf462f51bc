"""Aggregated results: labels with confidences, and on-demand re-aggregation."""

from typing import Any

from flask import Response
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from orchestrator.api.common import authorize, current_principal, with_session
from orchestrator.services import aggregation, audit, results
from orchestrator.services.projects import get_project

bp = Blueprint("results", __name__, url_prefix="/api/v1/projects", description="Results")


class ResultsQuerySchema(Schema):
    format = fields.String(load_default="jsonl", validate=validate.OneOf(results.FORMATS))
    distribution = fields.Boolean(
        load_default=False, metadata={"description": "Add each item's per-label distribution."}
    )
    include_gold = fields.Boolean(load_default=False, metadata={"description": "Add gold items."})


class RunSchema(Schema):
    project_id = fields.Integer(required=True)
    ran = fields.Boolean(required=True, metadata={"description": "False: nothing changed"})
    answers = fields.Integer(required=True)
    items = fields.Integer(required=True)
    iterations = fields.Integer(required=True, allow_none=True)
    converged = fields.Boolean(required=True, allow_none=True)
    seconds = fields.Float(required=True)
    topped_up = fields.Integer(
        required=True, metadata={"description": "Slots opened for unsure items"}
    )


@bp.route("/<id:project_id>/results")
class ProjectResults(MethodView):
    @authorize("admin", "ops")
    @bp.arguments(ResultsQuerySchema, location="query")
    @bp.response(
        200,
        description="One line per item (JSON Lines) or CSV",
        content_type="application/x-ndjson",
    )
    @bp.alt_response(200, description="CSV", content_type="text/csv", success=True)
    @with_session
    def get(self, query: dict[str, Any], project_id: int, session: Session) -> Any:
        """Each item's label, confidence and answer count; re-aggregates if answers changed."""
        project = get_project(session, project_id)
        aggregation.refresh(session, project_id)
        rows = results.result_rows(
            session,
            project_id,
            include_gold=query["include_gold"],
            distribution=query["distribution"],
        )
        body = "".join(
            results.render(
                rows, query["format"], list(project.labels), distribution=query["distribution"]
            )
        )
        return Response(body, mimetype=results.MEDIA_TYPES[query["format"]])


@bp.route("/<id:project_id>/aggregate")
class ProjectAggregate(MethodView):
    @authorize("admin", "ops")
    @bp.response(200, RunSchema)
    @with_session
    def post(self, project_id: int, session: Session) -> Any:
        """Re-aggregate now and give unsure items one more slot (dynamic overlap)."""
        summary = aggregation.aggregate_project(session, project_id, force=True)
        opened = aggregation.top_up(session, project_id)
        audit.record(
            session,
            current_principal(),
            "project.aggregate",
            "project",
            project_id,
            answers=summary.answers,
            topped_up=opened,
        )
        return {**summary.__dict__, "topped_up": opened}
