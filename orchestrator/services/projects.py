"""Projects: create, read, update, archive."""

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from billing.money import to_micros
from orchestrator.db import utcnow
from orchestrator.errors import ConflictError, InvalidInputError, NotFoundError
from orchestrator.models import Answer, Item, Project
from quality.gold import default_accuracy_threshold

MONEY_FIELDS = {"reward": "reward_micros", "budget": "budget_micros"}


def _store_money(values: dict[str, Any]) -> dict[str, Any]:
    stored = dict(values)
    for field, column in MONEY_FIELDS.items():
        if field in stored:
            amount: Decimal | None = stored.pop(field)
            stored[column] = None if amount is None else to_micros(amount)
    return stored


def create_project(session: Session, **values: Any) -> Project:
    """Create a project from validated settings (money as Decimal).

    Without a `gold_accuracy_threshold`, the project gets the default for its number of
    labels (`quality.gold.default_accuracy_threshold`), set once: a later change of labels
    keeps it.
    """
    if "gold_accuracy_threshold" not in values:
        values["gold_accuracy_threshold"] = default_accuracy_threshold(len(values["labels"]))
    project = Project(**_store_money(values))
    session.add(project)
    session.flush()
    return project


def get_project(session: Session, project_id: int, *, for_update: bool = False) -> Project:
    """Return a project or raise NotFoundError."""
    query = sa.select(Project).where(Project.id == project_id)
    if for_update:
        query = query.with_for_update()
    project = session.scalar(query)
    if project is None:
        raise NotFoundError(f"project {project_id} not found")
    return project


def list_projects(
    session: Session, *, status: str | None = None, limit: int = 50, offset: int = 0
) -> tuple[list[Project], int]:
    """Return one page of projects (newest first) and the total count."""
    query = sa.select(Project)
    if status:
        query = query.where(Project.status == status)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery())) or 0
    page = session.scalars(query.order_by(Project.id.desc()).limit(limit).offset(offset))
    return list(page), total


def update_project(session: Session, project_id: int, **changes: Any) -> Project:
    """Change a project's settings; archived projects are read-only."""
    project = get_project(session, project_id, for_update=True)
    if project.status == "archived":
        raise ConflictError(f"project {project_id} is archived and cannot be changed")
    overlap = changes.get("overlap", project.overlap)
    max_overlap = changes.get("max_overlap", project.max_overlap)
    if max_overlap is not None and max_overlap < overlap:
        raise InvalidInputError(
            "max_overlap must be at least overlap",
            details={"max_overlap": [f"must be >= overlap ({overlap})"]},
        )
    if "labels" in changes:
        _check_label_change(session, project, changes["labels"])
    for column, value in _store_money(changes).items():
        setattr(project, column, value)
    project.updated_at = utcnow()
    session.flush()
    return project


def _check_label_change(session: Session, project: Project, labels: list[str]) -> None:
    # Removing a label that stored gold or answers use would orphan them.
    removed = set(project.labels) - set(labels)
    if not removed:
        return
    in_use = set(
        session.scalars(
            sa.select(Item.gold_label).where(
                Item.project_id == project.id, Item.gold_label.in_(removed)
            )
        )
    ) | set(
        session.scalars(
            sa.select(Answer.label).where(
                Answer.project_id == project.id, Answer.label.in_(removed)
            )
        )
    )
    if in_use:
        raise ConflictError(
            "labels in use by gold items or answers cannot be removed",
            details={"labels": [f"in use: {', '.join(sorted(in_use))}"]},
        )


def archive_project(session: Session, project_id: int) -> Project:
    """Archive a project: it keeps its data but takes no more changes or work."""
    project = get_project(session, project_id, for_update=True)
    if project.status != "archived":
        project.status = "archived"
        project.archived_at = utcnow()
        project.updated_at = project.archived_at
    return project


def project_counts(session: Session, project_id: int) -> dict[str, int]:
    """Return the number of items and gold items of a project."""
    row = session.execute(
        sa.select(
            sa.func.count(Item.id),
            sa.func.count(Item.gold_label),
        ).where(Item.project_id == project_id)
    ).one()
    return {"items": row[0], "gold_items": row[1]}
