"""Stored responses of requests sent with an `Idempotency-Key`, replayed on retry."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db import Base, JSONDocument, utcnow
from orchestrator.models.types import BigId, UtcDateTime

IDEMPOTENCY_STATUSES = ("processing", "completed")


class IdempotencyKey(Base):
    """One key of one caller: the request's fingerprint and, once done, its response.

    `scope` names the caller (e.g. `vendor:7`), so two callers' keys never collide.
    A `processing` row belongs to a request still running; a `completed` one holds
    the status and body to replay until `expires_at`.
    """

    __tablename__ = "idempotency_key"
    __table_args__ = (sa.UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scope: Mapped[str] = mapped_column(sa.String(64))
    key: Mapped[str] = mapped_column(sa.String(255))
    # SHA-256 of method, path, query and canonical body.
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16), default="processing")
    response_status: Mapped[int | None] = mapped_column(sa.Integer)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    # When the running request claimed the key; a stale claim (a crashed process) is taken over.
    locked_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
