"""Items: bulk import (JSON array, JSON Lines, CSV) and listing."""

from typing import Any

from flask import request
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from orchestrator.api.common import (
    MAX_UPLOAD_BYTES,
    PageQuerySchema,
    authorize,
    current_principal,
    current_settings,
    page_schema,
    sessions,
    with_session,
)
from orchestrator.services import audit, items
from orchestrator.services.item_formats import format_for, read_rows

bp = Blueprint("items", __name__, url_prefix="/api/v1/projects", description="Items to label")


class ItemInputSchema(Schema):
    """One item in an upload (JSON array element or JSON Lines line)."""

    external_id = fields.String(
        required=True, validate=validate.Length(min=1, max=255), metadata={"description": "Your id"}
    )
    data = fields.Dict(required=True, metadata={"description": "What the worker sees"})
    gold_label = fields.String(
        allow_none=True, metadata={"description": "Known answer: makes this a gold item"}
    )


class ImportQuerySchema(Schema):
    """How to treat bad rows."""

    mode = fields.String(
        load_default="all_or_nothing",
        validate=validate.OneOf(items.IMPORT_MODES),
        metadata={
            "description": "all_or_nothing: one bad row stores nothing (default); "
            "partial: store good rows, report bad ones."
        },
    )
    dry_run = fields.Boolean(
        load_default=False, metadata={"description": "Validate and count only; store nothing."}
    )


class RowErrorSchema(Schema):
    line = fields.Integer(
        required=True, metadata={"description": "Line (or array element), 1-based"}
    )
    field = fields.String(required=True)
    message = fields.String(required=True)


class ImportReportSchema(Schema):
    """Counts of an import, and the refused rows."""

    created = fields.Integer(required=True)
    unchanged = fields.Integer(
        required=True, metadata={"description": "Already there, same content"}
    )
    rejected = fields.Integer(required=True)
    errors = fields.List(fields.Nested(RowErrorSchema), required=True)
    errors_truncated = fields.Boolean(required=True)


class ItemSchema(Schema):
    """An item as ops see it (gold label included: this route is not worker-facing)."""

    id = fields.Integer(required=True)
    external_id = fields.String(required=True)
    data = fields.Dict(required=True)
    gold_label = fields.String(required=True, allow_none=True)
    label = fields.String(required=True, allow_none=True)
    confidence = fields.Float(required=True, allow_none=True)
    answer_count = fields.Integer(required=True)
    created_at = fields.DateTime(required=True)


ItemPageSchema = page_schema(ItemSchema, "ItemPage")

UPLOAD_DOC = {
    "requestBody": {
        "required": True,
        "description": "Items as a JSON array, JSON Lines (one object per line) or CSV "
        "(columns external_id, optional gold_label, every other column goes into data).",
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/ItemInput"}}
            },
            "application/x-ndjson": {"schema": {"type": "string"}},
            "text/csv": {"schema": {"type": "string"}},
        },
    }
}


@bp.route("/<id:project_id>/items")
class ProjectItems(MethodView):
    @authorize("admin", "ops")
    @bp.arguments(PageQuerySchema, location="query")
    @bp.response(200, ItemPageSchema)
    @with_session
    def get(self, query: dict[str, Any], project_id: int, session: Session) -> dict[str, Any]:
        """List a project's items in import order."""
        page, total = items.list_items(session, project_id, **query)
        return {"data": page, "total": total, **query}

    @authorize("admin", "ops")
    @bp.arguments(ImportQuerySchema, location="query")
    @bp.response(200, ImportReportSchema, description="Nothing new (all unchanged), or dry run")
    @bp.alt_response(201, schema=ImportReportSchema, description="Items created")
    @bp.doc(**UPLOAD_DOC)
    def post(self, query: dict[str, Any], project_id: int) -> Any:
        """Import items; idempotent on external_id."""
        fmt = format_for(request.content_type)
        request.max_content_length = MAX_UPLOAD_BYTES  # a file, streamed: not MAX_BODY_BYTES
        settings = current_settings()
        with sessions().begin() as session:
            report = items.import_items(
                session,
                project_id,
                read_rows(request.stream, fmt),
                chunk_size=settings.import_chunk_size,
                max_errors=settings.max_import_errors,
                **query,
            )
            audit.record(
                session,
                current_principal(),
                "items.import",
                "project",
                project_id,
                created=report.created,
                unchanged=report.unchanged,
                rejected=report.rejected,
            )
        status = 201 if report.created and not query["dry_run"] else 200
        return report.as_dict(), status
