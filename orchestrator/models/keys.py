"""API keys: only a hash is stored."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db import Base, utcnow
from orchestrator.models.types import BigId, UtcDateTime

ROLES = ("admin", "ops", "finance", "vendor", "worker")


class ApiKey(Base):
    """A bearer key with one role; vendor keys are scoped to a vendor, worker keys to a worker."""

    __tablename__ = "api_key"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    # Public prefix, shown in listings so people can tell keys apart.
    prefix: Mapped[str] = mapped_column(sa.String(16), index=True)
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    name: Mapped[str] = mapped_column(sa.String(120), default="")
    vendor_id: Mapped[int | None] = mapped_column(sa.ForeignKey("vendor.id"), index=True)
    worker_id: Mapped[int | None] = mapped_column(sa.ForeignKey("worker.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
