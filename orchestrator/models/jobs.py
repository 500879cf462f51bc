"""Scheduler job runs: one row per job per tick, so each tick runs in exactly one process."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db import Base, JSONDocument, utcnow
from orchestrator.models.types import BigId, UtcDateTime


class JobRun(Base):
    """A job's run for one tick (its interval number); the unique key makes it run once."""

    __tablename__ = "job_run"
    __table_args__ = (sa.UniqueConstraint("job", "tick"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    job: Mapped[str] = mapped_column(sa.String(64))
    tick: Mapped[int] = mapped_column(sa.BigInteger)
    # Which process ran it (host:pid), for operators and tests.
    runner: Mapped[str] = mapped_column(sa.String(200))
    # ok, or failed (the job raised; `changed` holds the error). A run of a job with its
    # own transactions shows no seconds until it finishes.
    status: Mapped[str] = mapped_column(sa.String(16), default="ok", server_default="ok")
    seconds: Mapped[float | None] = mapped_column(sa.Float)
    changed: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
