"""The S3 hand-off's log: every object Quorum wrote to or read from a vendor's bucket."""

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db import Base, JSONDocument, utcnow
from orchestrator.models.types import BigId, UtcDateTime

# manifest: a batch written to the bucket (the manifest's key and ETag); closure: the
# notice that an exported batch closed; results: a results file read from it (each
# version, by ETag, once).
S3_OBJECT_KINDS = ("manifest", "closure", "results")
# written: a manifest or closure notice in the bucket; reporting: a results file's answers
# are stored and its report is still to be written (the next run retries); reported: the
# report is written.
S3_OBJECT_STATUSES = ("written", "reporting", "reported")
# What became of a results file: processed (its rows went through the bulk checks, each
# accepted or rejected) or refused whole (no batch of this workforce, too big, not text).
S3_RESULTS_OUTCOMES = ("processed", "refused")


class VendorS3Object(Base):
    """One version of one object in a vendor's bucket that Quorum wrote or read."""

    __tablename__ = "vendor_s3_object"
    __table_args__ = (sa.UniqueConstraint("workforce_id", "key", "etag"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workforce_id: Mapped[int] = mapped_column(sa.ForeignKey("workforce.id"))
    # The batch it belongs to; None for a results file naming no batch of the workforce.
    batch_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("batch.id", ondelete="SET NULL"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(16))
    key: Mapped[str] = mapped_column(sa.String(1024))
    etag: Mapped[str] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    outcome: Mapped[str | None] = mapped_column(sa.String(16))
    rows: Mapped[int] = mapped_column(sa.Integer, default=0)
    accepted: Mapped[int] = mapped_column(sa.Integer, default=0)
    rejected: Mapped[int] = mapped_column(sa.Integer, default=0)
    # The report written back to the vendor (results files only).
    report: Mapped[dict[str, Any] | None] = mapped_column(JSONDocument)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    reported_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
