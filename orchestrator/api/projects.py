"""Projects: create, list, get, update, archive."""

from decimal import Decimal
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import (
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates,
    validates_schema,
)
from sqlalchemy.orm import Session

from orchestrator.api.common import (
    JsonObject,
    Money,
    PageQuerySchema,
    Text,
    authorize,
    current_principal,
    page_schema,
    with_session,
)
from orchestrator.services import audit, projects
from quality.methods import METHODS

bp = Blueprint("projects", __name__, url_prefix="/api/v1/projects", description="Labeling projects")

READERS = ("admin", "ops", "finance")
WRITERS = ("admin", "ops")
DEFAULT_OVERLAP = 3
CURRENCY = validate.Regexp(r"^[A-Z]{3}$", error="must be a 3-letter ISO 4217 code such as USD")


class ProjectUpdateSchema(Schema):
    """Settings to change; every field is optional. Also the base of the create schema."""

    name = Text(validate=validate.Length(min=1, max=200))
    labels = fields.List(
        Text(validate=validate.Length(min=1, max=255)),
        validate=validate.Length(min=1, max=1000),
        metadata={"description": "The allowed labels (categorical classification)."},
    )
    task_type = Text(validate=validate.OneOf(["classification"]))
    instructions = Text(validate=validate.Length(max=100_000))
    overlap = fields.Integer(validate=validate.Range(min=1, max=100))
    max_overlap = fields.Integer(
        allow_none=True,
        validate=validate.Range(min=1, max=1000),
        metadata={"description": "Cap for dynamic overlap; null means no cap."},
    )
    confidence_target = fields.Float(validate=validate.Range(min=0, max=1, min_inclusive=False))
    gold_rate = fields.Float(validate=validate.Range(min=0, max=1, max_inclusive=False))
    gold_accuracy_threshold = fields.Float(validate=validate.Range(min=0, max=1))
    gold_min_answers = fields.Integer(validate=validate.Range(min=1, max=10_000))
    exclude_blocked_answers = fields.Boolean()
    aggregation_method = Text(validate=validate.OneOf(METHODS))
    aggregation_params = JsonObject(keys=Text())
    reward = Money(metadata={"description": "Reward per answer, decimal string."})
    currency = Text(validate=CURRENCY)
    budget = Money(allow_none=True, metadata={"description": "Spending limit; null = none."})
    lease_seconds = fields.Integer(allow_none=True, validate=validate.Range(min=10, max=86_400))

    @validates("labels")
    def labels_unique(self, labels: list[str], **_: Any) -> None:
        """Refuse repeated labels."""
        repeated = sorted({label for label in labels if labels.count(label) > 1})
        if repeated:
            raise ValidationError(f"labels must be unique; repeated: {', '.join(repeated)}")

    @validates_schema
    def overlap_order(self, data: dict[str, Any], **_: Any) -> None:
        """Refuse max_overlap below overlap when both are given."""
        overlap, max_overlap = data.get("overlap"), data.get("max_overlap")
        if overlap is not None and max_overlap is not None and max_overlap < overlap:
            raise ValidationError(f"must be >= overlap ({overlap})", "max_overlap")


class ProjectCreateSchema(ProjectUpdateSchema):
    """Create a project: only `name` and `labels` are required."""

    name = Text(required=True, validate=validate.Length(min=1, max=200))
    labels = fields.List(
        Text(validate=validate.Length(min=1, max=255)),
        required=True,
        validate=validate.Length(min=1, max=1000),
    )
    task_type = Text(load_default="classification", validate=validate.OneOf(["classification"]))
    instructions = Text(load_default="", validate=validate.Length(max=100_000))
    overlap = fields.Integer(load_default=DEFAULT_OVERLAP, validate=validate.Range(min=1, max=100))
    confidence_target = fields.Float(
        load_default=0.99, validate=validate.Range(min=0, max=1, min_inclusive=False)
    )
    gold_rate = fields.Float(
        load_default=0.1, validate=validate.Range(min=0, max=1, max_inclusive=False)
    )
    gold_accuracy_threshold = fields.Float(
        validate=validate.Range(min=0, max=1),
        metadata={
            "description": "Default: 20% of the way from guessing to perfect (0.6 on two "
            "labels, 0.4 on four), set at creation; changing labels later keeps it."
        },
    )
    gold_min_answers = fields.Integer(load_default=10, validate=validate.Range(min=1, max=10_000))
    exclude_blocked_answers = fields.Boolean(load_default=True)
    aggregation_method = Text(load_default="dawid_skene", validate=validate.OneOf(METHODS))
    aggregation_params = JsonObject(keys=Text(), load_default=dict)
    reward = Money(load_default=Decimal("0.00"))
    currency = Text(load_default="USD", validate=CURRENCY)

    @post_load
    def default_max_overlap(self, data: dict[str, Any], **_: Any) -> dict[str, Any]:
        """Default max_overlap to overlap + 2 when it was not given at all."""
        data.setdefault("max_overlap", data["overlap"] + 2)
        return data


class ProjectSchema(Schema):
    """A project as the API shows it."""

    id = fields.Integer(required=True)
    name = fields.String(required=True)
    labels = fields.List(fields.String(), required=True)
    task_type = fields.String(required=True)
    instructions = fields.String(required=True)
    overlap = fields.Integer(required=True)
    max_overlap = fields.Integer(required=True, allow_none=True)
    confidence_target = fields.Float(required=True)
    gold_rate = fields.Float(required=True)
    gold_accuracy_threshold = fields.Float(required=True)
    gold_min_answers = fields.Integer(required=True)
    exclude_blocked_answers = fields.Boolean(required=True)
    aggregation_method = fields.String(required=True)
    aggregation_params = fields.Dict(required=True)
    reward = Money(required=True)
    currency = fields.String(required=True)
    budget = Money(required=True, allow_none=True)
    lease_seconds = fields.Integer(required=True, allow_none=True)
    status = fields.String(
        required=True, validate=validate.OneOf(["active", "archived", "completed"])
    )
    created_at = fields.DateTime(required=True)
    updated_at = fields.DateTime(required=True)
    archived_at = fields.DateTime(required=True, allow_none=True)


class ProjectListQuerySchema(PageQuerySchema):
    """Filters for listing projects."""

    status = fields.String(validate=validate.OneOf(["active", "archived", "completed"]))


ProjectPageSchema = page_schema(ProjectSchema, "ProjectPage")


@bp.route("")
class Projects(MethodView):
    @authorize(*READERS)
    @bp.arguments(ProjectListQuerySchema, location="query")
    @bp.response(200, ProjectPageSchema)
    @with_session
    def get(self, query: dict[str, Any], session: Session) -> dict[str, Any]:
        """List projects, newest first."""
        page, total = projects.list_projects(session, **query)
        return {"data": page, "total": total, "limit": query["limit"], "offset": query["offset"]}

    @authorize(*WRITERS)
    @bp.arguments(ProjectCreateSchema)
    @bp.response(201, ProjectSchema)
    @with_session
    def post(self, data: dict[str, Any], session: Session) -> Any:
        """Create a project. Only `name` and `labels` are required."""
        project = projects.create_project(session, **data)
        audit.record(session, current_principal(), "project.create", "project", project.id)
        return project


@bp.route("/<id:project_id>")
class ProjectById(MethodView):
    @authorize(*READERS)
    @bp.response(200, ProjectSchema)
    @with_session
    def get(self, project_id: int, session: Session) -> Any:
        """Get one project."""
        return projects.get_project(session, project_id)

    @authorize(*WRITERS)
    @bp.arguments(ProjectUpdateSchema)
    @bp.response(200, ProjectSchema)
    @with_session
    def patch(self, changes: dict[str, Any], project_id: int, session: Session) -> Any:
        """Change some of a project's settings."""
        project = projects.update_project(session, project_id, **changes)
        audit.record(
            session,
            current_principal(),
            "project.update",
            "project",
            project_id,
            fields=sorted(changes),
        )
        return project


@bp.route("/<id:project_id>/archive")
class ProjectArchive(MethodView):
    @authorize(*WRITERS)
    @bp.response(200, ProjectSchema)
    @with_session
    def post(self, project_id: int, session: Session) -> Any:
        """Archive a project: its data stays readable, it takes no more changes or work."""
        project = projects.archive_project(session, project_id)
        audit.record(session, current_principal(), "project.archive", "project", project_id)
        return project
