"""Answers given by workers."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db import Base, JSONDocument, utcnow
from orchestrator.models.types import BigId, UtcDateTime

ANSWER_STATUSES = ("accepted", "rejected", "excluded")


class Answer(Base):
    """One worker's answer to one item; a worker answers an item at most once."""

    __tablename__ = "answer"
    __table_args__ = (
        sa.UniqueConstraint("item_id", "worker_id"),
        # The connector's id for the answer (MTurk assignment id, vendor row key).
        sa.UniqueConstraint("workforce_id", "external_id"),
        sa.Index("ix_answer_project_created", "project_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    assignment_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("assignment.id", ondelete="SET NULL"), unique=True
    )
    item_id: Mapped[int] = mapped_column(sa.ForeignKey("item.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("project.id", ondelete="CASCADE"))
    batch_id: Mapped[int | None] = mapped_column(sa.ForeignKey("batch.id", ondelete="SET NULL"))
    workforce_id: Mapped[int] = mapped_column(sa.ForeignKey("workforce.id"))
    worker_id: Mapped[int] = mapped_column(sa.ForeignKey("worker.id"), index=True)
    label: Mapped[str] = mapped_column(sa.String(255))
    # Room for richer answers (multi-label, spans) beside the categorical label.
    value: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    status: Mapped[str] = mapped_column(sa.String(16), default="accepted")
    is_gold: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    is_correct: Mapped[bool | None] = mapped_column(sa.Boolean)
    time_spent_ms: Mapped[int | None] = mapped_column(sa.Integer)
    external_id: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
