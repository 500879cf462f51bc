"""Workforces: register and list the pools of workers Quorum dispatches to."""

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from orchestrator.api.common import JsonObject, Text, authorize, current_principal, with_session
from orchestrator.services import audit, workforces

bp = Blueprint("workforces", __name__, url_prefix="/api/v1/workforces", description="Workforces")


class WorkforceCreateSchema(Schema):
    """Register a workforce. Secrets are never sent: a `*_env` key names an environment variable."""

    name = Text(required=True, validate=validate.Length(min=1, max=120))
    kind = Text(required=True, validate=validate.OneOf(workforces.KINDS))
    connector = Text(
        validate=validate.Length(min=1, max=64),
        metadata={"description": "Entry point in `quorum.connectors`; defaults to the kind."},
    )
    config = JsonObject(keys=Text(), load_default=dict)
    vendor = Text(
        validate=validate.Length(min=1, max=120),
        metadata={"description": "Vendor name (vendor workforces); created if new."},
    )


class WorkforceSchema(Schema):
    id = fields.Integer(required=True)
    name = fields.String(required=True)
    kind = fields.String(required=True)
    connector = fields.String(required=True)
    config = fields.Dict(required=True)
    vendor_id = fields.Integer(required=True, allow_none=True)
    status = fields.String(required=True)
    created_at = fields.DateTime(required=True)


class WorkforceListSchema(Schema):
    data = fields.List(fields.Nested(WorkforceSchema), required=True)


@bp.route("")
class Workforces(MethodView):
    @authorize("admin", "ops", "finance")
    @bp.response(200, WorkforceListSchema)
    @with_session
    def get(self, session: Session) -> Any:
        """List workforces."""
        return {"data": workforces.list_workforces(session)}

    @authorize("admin", "ops")
    @bp.arguments(WorkforceCreateSchema)
    @bp.response(201, WorkforceSchema)
    @with_session
    def post(self, data: dict[str, Any], session: Session) -> Any:
        """Register a workforce (internal pool, MTurk or vendor)."""
        workforce = workforces.create_workforce(session, **data)
        audit.record(session, current_principal(), "workforce.create", "workforce", workforce.id)
        return workforce


@bp.route("/<id:workforce_id>")
class WorkforceById(MethodView):
    @authorize("admin", "ops", "finance")
    @bp.response(200, WorkforceSchema)
    @with_session
    def get(self, workforce_id: int, session: Session) -> Any:
        """Get one workforce."""
        return workforces.get_workforce(session, workforce_id)
