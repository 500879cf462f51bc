"""Vendor quality and SLA: gold accuracy, rejected rows, throughput and late batches.

Figures per vendor, over all of its vendor workforces:

- gold accuracy: correct / all answers its workers gave on gold items (excluded
  answers count too: they were delivered), with the 95% Wilson interval of
  `quality.gold`. The vendor's own view counts only batches that are closed
  (completed or cancelled): live figures would tell a vendor which task was gold
  (submit one row, watch the count move);
- rejected rows: rows refused / rows submitted, through the bulk endpoint and in
  results files read from the vendor's S3 bucket. Each submission's counts are kept
  in the audit log (`vendor.submission`, with the vendor), with the reason codes;
- answers per hour: answers stored in the last 24 hours / 24 (a rolling window,
  so a burst of seconds does not read as thousands an hour);
- late batches: of the batches with a `due_at` (cancelled ones aside), those still
  open past it, or completed but not delivered by it: an answer came after it or
  its open slots were withdrawn when it passed (the scheduler's `close_batches`).
"""

from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.db import utcnow
from orchestrator.errors import NotFoundError
from orchestrator.models import (
    Answer,
    ApiKey,
    Assignment,
    AuditEvent,
    Batch,
    Vendor,
    Workforce,
)
from orchestrator.models.batches import CLOSED_BATCH_STATUSES, OPEN_BATCH_STATUSES
from orchestrator.services import audit
from orchestrator.services.keys import Principal
from orchestrator.services.vendors import REJECT_CODES
from quality.gold import GoldStats

SUBMISSION = "vendor.submission"
THROUGHPUT_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class VendorQuality:
    """One vendor's quality and SLA figures at `as_of`."""

    vendor_id: int
    vendor: str
    as_of: datetime
    gold: GoldStats
    # True: gold figures count closed batches only (the vendor's own view).
    gold_closed_batches_only: bool
    submissions: int
    rows_submitted: int
    rows_rejected: int
    rejected_share: float | None
    rejected_by_reason: dict[str, int]
    answers_total: int
    answers_last_24h: int
    answers_per_hour: float
    batches_with_due: int
    batches_late: int
    batches_late_open: int
    late_share: float | None


def record_submission(
    session: Session,
    principal: Principal | None,
    *,
    vendor_id: int,
    batch_id: int,
    rows: int,
    accepted: int,
    rejected_codes: list[str],
) -> None:
    """Record the counts of one submission in the audit log, in the caller's transaction.

    `principal` is the vendor's key for the bulk endpoint, None for a results file read
    from the vendor's S3 bucket; both count in the vendor's figures.
    """
    reasons = dict(sorted(Counter(rejected_codes).items()))
    audit.record(
        session,
        principal,
        SUBMISSION,
        "batch",
        batch_id,
        vendor_id=vendor_id,
        rows=rows,
        accepted=accepted,
        rejected=len(rejected_codes),
        reasons=reasons,
    )


def _share(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def _gold(session: Session, vendor_id: int, *, closed_only: bool) -> GoldStats:
    query = (
        sa.select(
            sa.func.count(Answer.id),
            sa.func.coalesce(sa.func.sum(sa.case((Answer.is_correct.is_(True), 1), else_=0)), 0),
        )
        .join(Workforce, Workforce.id == Answer.workforce_id)
        .where(
            Workforce.vendor_id == vendor_id,
            Answer.is_gold.is_(True),
            Answer.is_correct.is_not(None),
        )
    )
    if closed_only:
        query = query.join(Batch, Batch.id == Answer.batch_id).where(
            Batch.status.in_(CLOSED_BATCH_STATUSES)
        )
    answers, correct = session.execute(query).one()
    return GoldStats.from_counts(int(answers), int(correct))


def _submissions(session: Session, vendor_id: int) -> tuple[int, int, int, dict[str, int]]:
    details = AuditEvent.details
    sums = [
        sa.func.count(AuditEvent.id),
        sa.func.coalesce(sa.func.sum(details["rows"].as_integer()), 0),
        sa.func.coalesce(sa.func.sum(details["rejected"].as_integer()), 0),
        *(
            sa.func.coalesce(sa.func.sum(details[("reasons", code)].as_integer()), 0)
            for code in REJECT_CODES
        ),
    ]
    # Events recorded before they named their vendor count for their key's vendor.
    row = session.execute(
        sa.select(*sums)
        .outerjoin(ApiKey, ApiKey.id == AuditEvent.api_key_id)
        .where(
            AuditEvent.action == SUBMISSION,
            sa.or_(
                details["vendor_id"].as_integer() == vendor_id,
                sa.and_(details["vendor_id"].as_integer().is_(None), ApiKey.vendor_id == vendor_id),
            ),
        )
    ).one()
    count, rows, rejected, *by_code = (int(value) for value in row)
    reasons = {code: n for code, n in zip(REJECT_CODES, by_code, strict=True) if n}
    return count, rows, rejected, reasons


def _answers(session: Session, vendor_id: int, since: datetime) -> tuple[int, int]:
    total, recent = session.execute(
        sa.select(
            sa.func.count(Answer.id),
            sa.func.coalesce(sa.func.sum(sa.case((Answer.created_at >= since, 1), else_=0)), 0),
        )
        .join(Workforce, Workforce.id == Answer.workforce_id)
        .where(Workforce.vendor_id == vendor_id)
    ).one()
    return int(total), int(recent)


def _batches(session: Session, vendor_id: int, now: datetime) -> tuple[int, int, int]:
    last_answer = (
        sa.select(sa.func.max(Answer.created_at))
        .where(Answer.batch_id == Batch.id)
        .scalar_subquery()
    )
    withdrawn = sa.exists().where(Assignment.batch_id == Batch.id, Assignment.status == "cancelled")
    open_late = sa.and_(Batch.status.in_(OPEN_BATCH_STATUSES), Batch.due_at <= now)
    completed_late = sa.and_(
        Batch.status == "completed", sa.or_(withdrawn, last_answer > Batch.due_at)
    )
    total, late, late_open = session.execute(
        sa.select(
            sa.func.count(Batch.id),
            sa.func.coalesce(
                sa.func.sum(sa.case((sa.or_(open_late, completed_late), 1), else_=0)), 0
            ),
            sa.func.coalesce(sa.func.sum(sa.case((open_late, 1), else_=0)), 0),
        )
        .join(Workforce, Workforce.id == Batch.workforce_id)
        .where(
            Workforce.vendor_id == vendor_id,
            Batch.due_at.is_not(None),
            Batch.status != "cancelled",
        )
    ).one()
    return int(total), int(late), int(late_open)


def _figures(session: Session, vendor: Vendor, *, own_view: bool, now: datetime) -> VendorQuality:
    gold = _gold(session, vendor.id, closed_only=own_view)
    submissions, rows, rejected, reasons = _submissions(session, vendor.id)
    total, recent = _answers(session, vendor.id, now - THROUGHPUT_WINDOW)
    with_due, late, late_open = _batches(session, vendor.id, now)
    return VendorQuality(
        vendor_id=vendor.id,
        vendor=vendor.name,
        as_of=now,
        gold=gold,
        gold_closed_batches_only=own_view,
        submissions=submissions,
        rows_submitted=rows,
        rows_rejected=rejected,
        rejected_share=_share(rejected, rows),
        rejected_by_reason=reasons,
        answers_total=total,
        answers_last_24h=recent,
        answers_per_hour=recent / (THROUGHPUT_WINDOW.total_seconds() / 3600),
        batches_with_due=with_due,
        batches_late=late,
        batches_late_open=late_open,
        late_share=_share(late, with_due),
    )


def get_vendor_quality(
    session: Session, vendor_id: int, *, own_view: bool = False, now: datetime | None = None
) -> VendorQuality:
    """Return a vendor's figures; `own_view` is what the vendor itself may see."""
    vendor = session.get(Vendor, vendor_id)
    if vendor is None:
        raise NotFoundError(f"vendor {vendor_id} not found")
    return _figures(session, vendor, own_view=own_view, now=now or utcnow())


def list_vendor_quality(session: Session, *, now: datetime | None = None) -> list[VendorQuality]:
    """Return every vendor's figures (ops view), by vendor id."""
    now = now or utcnow()
    vendors = session.scalars(sa.select(Vendor).order_by(Vendor.id))
    return [_figures(session, vendor, own_view=False, now=now) for vendor in vendors]
