"""MTurk review records: each assignment's decision, and the workers blocked on MTurk."""

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from orchestrator.db import Base, utcnow
from orchestrator.models.types import BigId, UtcDateTime

# approving/rejecting: the decision is recorded and MTurk may or may not have it yet (the
# next run asks GetAssignment); approved/rejected: MTurk has it and the ledger is written.
MTURK_REVIEW_STATUSES = ("approving", "approved", "rejecting", "rejected")
# Why some of an assignment's answers were not stored (it is still paid when approved):
# answered_already: its worker had answered the item through a sibling HIT (an item's
# slots split over several HITs); no_open_slot: the item needed no more answers.
UNSTORED_REASONS = ("answered_already", "no_open_slot")


class MTurkReview(Base):
    """Quorum's decision on one MTurk assignment, written before MTurk is told."""

    __tablename__ = "mturk_review"
    __table_args__ = (sa.UniqueConstraint("workforce_id", "assignment_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workforce_id: Mapped[int] = mapped_column(sa.ForeignKey("workforce.id"))
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("project.id"), index=True)
    batch_id: Mapped[int | None] = mapped_column(sa.ForeignKey("batch.id", ondelete="SET NULL"))
    assignment_id: Mapped[str] = mapped_column(sa.String(64))
    hit_id: Mapped[str] = mapped_column(sa.String(64))
    worker_ref: Mapped[str] = mapped_column(sa.String(255))
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    feedback: Mapped[str] = mapped_column(sa.String(1024), default="")
    # Answers of the assignment that were not stored, and why (see UNSTORED_REASONS).
    unstored_answers: Mapped[int] = mapped_column(sa.Integer, default=0)
    unstored_reason: Mapped[str | None] = mapped_column(sa.String(32))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class MTurkBlock(Base):
    """A worker blocked for quality whose block was sent to MTurk."""

    __tablename__ = "mturk_block"
    __table_args__ = (sa.UniqueConstraint("workforce_id", "worker_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    workforce_id: Mapped[int] = mapped_column(sa.ForeignKey("workforce.id"))
    worker_id: Mapped[int] = mapped_column(sa.ForeignKey("worker.id"))
    reason: Mapped[str] = mapped_column(sa.String(500), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
