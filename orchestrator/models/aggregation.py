"""Aggregation runs: when a project's answers were turned into labels, and how."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db import Base, JSONDocument, utcnow
from orchestrator.models.types import BigId, UtcDateTime


class AggregationRun(Base):
    """One aggregation of a project; the newest one's state warm-starts the next."""

    __tablename__ = "aggregation_run"
    __table_args__ = (sa.Index("ix_aggregation_run_project_id_id", "project_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("project.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(sa.String(40))
    # The newest answer id included: a run is stale once a newer answer exists.
    last_answer_id: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    answers: Mapped[int] = mapped_column(sa.Integer, default=0)
    items: Mapped[int] = mapped_column(sa.Integer, default=0)
    iterations: Mapped[int | None] = mapped_column(sa.Integer)
    converged: Mapped[bool | None] = mapped_column(sa.Boolean)
    log_likelihood: Mapped[float | None] = mapped_column(sa.Float)
    seconds: Mapped[float] = mapped_column(sa.Float, default=0.0)
    warm_start: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
