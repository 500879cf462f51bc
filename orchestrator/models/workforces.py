"""Workforces, vendors and workers."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db import Base, JSONDocument, utcnow
from orchestrator.models.types import BigId, UtcDateTime


class Vendor(Base):
    """An outside labeling company that works through the vendor API."""

    __tablename__ = "vendor"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    contact_email: Mapped[str | None] = mapped_column(sa.String(254))
    webhook_url: Mapped[str | None] = mapped_column(sa.String(2000))
    # Name of the environment variable holding the webhook signing secret, never the secret.
    webhook_secret_env: Mapped[str | None] = mapped_column(sa.String(120))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Workforce(Base):
    """A pool of workers reached through one connector (internal, mturk or vendor)."""

    __tablename__ = "workforce"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(120), unique=True)
    kind: Mapped[str] = mapped_column(sa.String(16))
    # Entry-point name in the `quorum.connectors` group; defaults to the kind.
    connector: Mapped[str] = mapped_column(sa.String(64))
    # Non-secret settings; secrets appear only as names of environment variables.
    config: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    vendor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vendor.id"), index=True)
    budget_micros: Mapped[int | None] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Worker(Base):
    """One person in one workforce, known by that workforce's own id."""

    __tablename__ = "worker"
    __table_args__ = (sa.UniqueConstraint("workforce_id", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workforce_id: Mapped[int] = mapped_column(sa.ForeignKey("workforce.id"), index=True)
    external_id: Mapped[str] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    # Gold record across projects; per-project figures live in WorkerProject.
    gold_answers: Mapped[int] = mapped_column(sa.Integer, default=0)
    gold_correct: Mapped[int] = mapped_column(sa.Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class WorkerProject(Base):
    """A worker's record in one project: answers, gold score, block status."""

    __tablename__ = "worker_project"
    __table_args__ = (sa.UniqueConstraint("worker_id", "project_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    worker_id: Mapped[int] = mapped_column(sa.ForeignKey("worker.id"), index=True)
    project_id: Mapped[int] = mapped_column(
        sa.ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    answers: Mapped[int] = mapped_column(sa.Integer, default=0)
    gold_answers: Mapped[int] = mapped_column(sa.Integer, default=0)
    gold_correct: Mapped[int] = mapped_column(sa.Integer, default=0)
    gold_seen: Mapped[int] = mapped_column(sa.Integer, default=0)
    tasks_seen: Mapped[int] = mapped_column(sa.Integer, default=0)
    skill: Mapped[float | None] = mapped_column(sa.Float)
    status: Mapped[str] = mapped_column(sa.String(16), default="active")
    blocked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    block_reason: Mapped[str | None] = mapped_column(sa.String(500))
