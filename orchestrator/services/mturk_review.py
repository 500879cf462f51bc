"""Reviewing MTurk work: approve or reject each assignment, pay through the ledger, block, close.

The `review_mturk` scheduler job runs after polling, outside any long transaction:

1. Reconcile: a decision recorded as `approving`/`rejecting` whose outcome was never
   recorded (a crash between the MTurk call and the ledger write) is looked up with
   GetAssignment. Approved on MTurk: the ledger entries are written now, once; still
   Submitted: the call is made again. Nothing is approved or paid twice.
2. Blocks: workers blocked for quality in a project are blocked on MTurk
   (CreateWorkerBlock and the block qualification), once per workforce.
3. Review: every Submitted assignment of the workforce's live HITs is stored first
   (collection.store_collected, idempotent by assignment id), then decided by the
   project's policy: rejected, with a RequesterFeedback text, only on a clear gold
   failure (the worker is blocked for quality in the project) or an unreadable answer;
   approved otherwise. The decision is committed before MTurk is called. An
   assignment MTurk approved by itself (the HIT type's auto-approval delay, the
   backstop when this job does not run) is stored and recorded as approved.
4. Top-up: an item whose open slots outnumber the assignments its HITs can still
   bring (excluded or rejected answers, duplicates below) gets them back on MTurk:
   CreateAdditionalAssignmentsForHIT on one of its HITs when that keeps the HIT on the
   same side of MTurk's 10-assignment surcharge, else a further HIT (`add_hit`, token
   derived from the batch, the items and the HIT's number).
5. Close: HITs of completed or cancelled batches (cancelling calls no MTurk from the
   request) are expired and deleted once nothing is left to review.

Split HITs: when an item's slots are split over sibling HITs to avoid the surcharge,
MTurk cannot stop one worker from taking two of them. Qualification requirements are
the only per-worker gate MTurk offers, and they cannot be granted before the worker
accepts the second HIT (both can be accepted before the first is submitted), so it is
handled after the fact: the second assignment was done in good faith and is approved
and paid, its answer is not stored (a worker answers an item once), the review records
it (`unstored_reason = "answered_already"`, ledger entries without an answer, memo
"duplicate"), and the slot it did not fill stays open, so the top-up gives it to
someone else.

Money: MTurk charges when it approves, so an assignment's reward and MTurk's fee (as
billing.fees computes it, from the HIT's reward and MaxAssignments) go on the ledger
when its approval is recorded, keyed `mturk:<workforce>:<assignment>:<kind>`; rejected
work costs nothing, and its stored answers are marked rejected (their slots reopen).
Until then the answered slots stay reserved in the budgets (services.budgets).
Bonuses go through orchestrator.services.bonuses (deterministic UniqueRequestToken,
ledger entries with MTurk's bonus fee).
"""

import logging
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from billing import ledger as book
from billing.fees import MTURK_LARGE_HIT_ASSIGNMENTS, mturk_assignment_fee
from billing.money import from_micros, to_micros
from connectors.base import ConnectorError, SubmissionRef
from connectors.mturk import MTurkAssignment, MTurkConnector
from orchestrator.db import utcnow
from orchestrator.models import (
    Answer,
    Assignment,
    Batch,
    MTurkBlock,
    MTurkReview,
    Worker,
    WorkerProject,
    Workforce,
)
from orchestrator.models.batches import CLOSED_BATCH_STATUSES
from orchestrator.services import ledger
from orchestrator.services.answers import change_answer_counts, reopen_slots
from orchestrator.services.collection import store_collected
from orchestrator.services.dispatch import batch_spec
from orchestrator.services.workforces import connector_for

log = logging.getLogger("quorum.mturk")

LARGE = MTURK_LARGE_HIT_ASSIGNMENTS  # HITs this big pay MTurk's extra 20%
REVIEWED_BATCHES = ("published", "in_progress", "completed", "cancelled")
REJECTED_FOR_QUALITY = (
    "Rejected: your answers to this task's known-answer check questions were too often "
    "wrong ({reason}). Thank you for your time."
)
REJECTED_UNREADABLE = "Rejected: the submission held no answer we could read."


@dataclass(frozen=True)
class _Live:
    batch_id: int
    project_id: int
    status: str
    ref: SubmissionRef


def review_mturk(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Review, pay, block, top up and close the work of every MTurk workforce."""
    counts: Counter[str] = Counter()
    with sessions.begin() as session:
        workforces = list(
            session.scalars(
                sa.select(Workforce).where(Workforce.kind == "mturk", Workforce.status == "active")
            )
        )
    for workforce in workforces:
        connector = connector_for(workforce)
        if not isinstance(connector, MTurkConnector):
            continue
        try:
            counts.update(_review_workforce(sessions, workforce.id, connector))
        except ConnectorError as exc:
            log.warning("mturk review interrupted", extra={"workforce_id": workforce.id})
            counts["unavailable"] += 1
            log.info("mturk review will retry", extra={"error": exc.message})
    return {key: value for key, value in counts.items() if value}


def _review_workforce(
    sessions: sessionmaker[Session], workforce_id: int, connector: MTurkConnector
) -> Counter[str]:
    counts: Counter[str] = Counter()
    counts.update(_reconcile(sessions, workforce_id, connector))
    counts.update(_sync_blocks(sessions, workforce_id, connector))
    with sessions.begin() as session:
        live = [
            _Live(batch.id, batch.project_id, batch.status, _ref(batch))
            for batch in session.scalars(
                sa.select(Batch)
                .where(Batch.workforce_id == workforce_id, Batch.status.in_(REVIEWED_BATCHES))
                .order_by(Batch.id)
            )
            if batch.connector_state.get("hits") and not batch.connector_state.get("closed_at")
        ]
    for batch in live:
        for found in connector.assignments(batch.ref, statuses=("Submitted", "Approved")):
            outcome = _review_one(sessions, workforce_id, connector, batch, found)
            if outcome is not None:
                counts[outcome] += 1
        if batch.status in CLOSED_BATCH_STATUSES:
            counts["batches_closed"] += _close(sessions, connector, batch)
        else:
            counts["assignments_added"] += _top_up(sessions, connector, batch)
    return counts


def _ref(batch: Batch) -> SubmissionRef:
    return SubmissionRef(batch.id, batch.external_ref, batch.connector_state)


# --- reviewing -------------------------------------------------------------------------


def _review_one(
    sessions: sessionmaker[Session],
    workforce_id: int,
    connector: MTurkConnector,
    batch: _Live,
    found: MTurkAssignment,
) -> str | None:
    """Store, decide, record the intent, tell MTurk, record the outcome: one assignment.

    Returns what happened (`approved`, `rejected`, `auto_approved`), or None when the
    assignment was settled already.
    """
    with sessions.begin() as session:
        known = session.scalar(
            sa.select(MTurkReview).where(
                MTurkReview.workforce_id == workforce_id,
                MTurkReview.assignment_id == found.assignment_id,
            )
        )
        if known is None:
            outcome, unstored, reason = _store(session, workforce_id, batch.batch_id, found)
            if found.status == "Approved":
                accept, feedback = True, ""
            else:
                accept, feedback = _decide(session, workforce_id, batch.project_id, found, outcome)
            known = MTurkReview(
                workforce_id=workforce_id,
                project_id=batch.project_id,
                batch_id=batch.batch_id,
                assignment_id=found.assignment_id,
                hit_id=found.hit_id,
                worker_ref=found.worker_ref,
                status="approving" if accept else "rejecting",
                feedback=feedback,
                unstored_answers=unstored,
                unstored_reason=reason,
            )
            session.add(known)
        elif found.status != "Submitted" or known.status not in ("approving", "rejecting"):
            return None
        status, feedback = known.status, known.feedback
    # The intent is committed: a crash from here on is reconciled by the next run.
    if found.status == "Submitted":
        if status == "approving":
            connector.approve(found.assignment_id, feedback)
        else:
            connector.reject(found.assignment_id, feedback)
    _settle(sessions, workforce_id, found.assignment_id, found.reward, found.max_assignments)
    if found.status == "Approved":
        return "auto_approved"
    return "approved" if status == "approving" else "rejected"


def _store(
    session: Session, workforce_id: int, batch_id: int, found: MTurkAssignment
) -> tuple[Counter[str], int, str | None]:
    """Store an assignment's answers; return the outcome, how many were not stored, and why."""
    outcome = store_collected(session, batch_id, list(found.answers))
    stored = set(
        session.scalars(
            sa.select(Answer.external_id).where(
                Answer.workforce_id == workforce_id,
                Answer.external_id.in_([answer.external_id for answer in found.answers]),
            )
        )
    )
    unstored = [int(a.task_ref) for a in found.answers if a.external_id not in stored]
    if not unstored:
        return outcome, 0, None
    answered_already = session.scalar(
        sa.select(
            sa.exists().where(
                Answer.item_id.in_(unstored),
                Answer.worker_id
                == sa.select(Worker.id)
                .where(Worker.workforce_id == workforce_id, Worker.external_id == found.worker_ref)
                .scalar_subquery(),
            )
        )
    )
    if answered_already:
        return outcome, len(unstored), "answered_already"
    return outcome, len(unstored), "no_open_slot" if outcome["no_open_slot"] else None


def _decide(
    session: Session,
    workforce_id: int,
    project_id: int,
    found: MTurkAssignment,
    outcome: Counter[str],
) -> tuple[bool, str]:
    """Approve unless the worker failed gold in the project, or the answer was unreadable."""
    record = session.execute(
        sa.select(WorkerProject.status, WorkerProject.block_reason)
        .join(Worker, Worker.id == WorkerProject.worker_id)
        .where(
            Worker.workforce_id == workforce_id,
            Worker.external_id == found.worker_ref,
            WorkerProject.project_id == project_id,
        )
    ).one_or_none()
    if record is not None and record.status == "blocked":
        return False, REJECTED_FOR_QUALITY.format(reason=record.block_reason or "gold checks")
    if not found.is_readable or not found.answers or outcome["invalid_label"]:
        return False, REJECTED_UNREADABLE
    return True, ""


def _reconcile(
    sessions: sessionmaker[Session], workforce_id: int, connector: MTurkConnector
) -> Counter[str]:
    """Finish decisions whose outcome was never recorded, asking MTurk what happened."""
    counts: Counter[str] = Counter()
    with sessions.begin() as session:
        pending = list(
            session.scalars(
                sa.select(MTurkReview.assignment_id).where(
                    MTurkReview.workforce_id == workforce_id,
                    MTurkReview.status.in_(("approving", "rejecting")),
                )
            )
        )
    for assignment_id in pending:
        found = connector.assignment(assignment_id)
        if found.status == "Submitted":
            with sessions.begin() as session:
                review = _review_row(session, workforce_id, assignment_id)
                status, feedback = review.status, review.feedback
            if status == "approving":
                connector.approve(assignment_id, feedback)
            else:
                connector.reject(assignment_id, feedback)
        # MTurk's own outcome wins: a rejection that never reached MTurk before the
        # auto-approval delay ran out is an approval, and it was paid.
        _settle(
            sessions,
            workforce_id,
            assignment_id,
            found.reward,
            found.max_assignments,
            approved_on_mturk=found.status == "Approved",
        )
        counts["reconciled"] += 1
    return counts


def _review_row(session: Session, workforce_id: int, assignment_id: str) -> MTurkReview:
    review = session.scalar(
        sa.select(MTurkReview)
        .where(MTurkReview.workforce_id == workforce_id, MTurkReview.assignment_id == assignment_id)
        .with_for_update()
    )
    assert review is not None
    return review


def _settle(
    sessions: sessionmaker[Session],
    workforce_id: int,
    assignment_id: str,
    reward: Decimal | None,
    max_assignments: int | None,
    *,
    approved_on_mturk: bool = False,
) -> None:
    """Record MTurk's outcome; an approval writes its ledger entries (idempotent keys).

    The outcome is the recorded decision, or an approval when MTurk says it approved.
    """
    with sessions.begin() as session:
        review = _review_row(session, workforce_id, assignment_id)
        if review.status in ("approved", "rejected"):
            return
        if review.status == "approving" or approved_on_mturk:
            assert reward is not None and max_assignments is not None
            record_approval(session, review, reward=reward, max_assignments=max_assignments)
            review.status = "approved"
        else:
            record_rejection(session, review)
            review.status = "rejected"
        review.decided_at = utcnow()


def record_approval(
    session: Session, review: MTurkReview, *, reward: Decimal, max_assignments: int
) -> None:
    """Write an approved assignment's reward and MTurk fee, split over its stored answers."""
    batch = session.get(Batch, review.batch_id) if review.batch_id else None
    masters = bool(batch.connector_state.get("masters")) if batch else False
    fee = mturk_assignment_fee(reward, assignments_per_hit=max_assignments, masters=masters)
    answers = session.execute(
        sa.select(Answer.id, Answer.worker_id, Answer.is_gold)
        .where(_answers_of(review))
        .order_by(Answer.id)
    ).all()
    worker_id = session.scalar(
        sa.select(Worker.id).where(
            Worker.workforce_id == review.workforce_id, Worker.external_id == review.worker_ref
        )
    )
    now = utcnow()
    shares: list[Any] = list(answers) or [None]
    # An assignment paid without a stored answer says why on its entries.
    note = {
        "answered_already": ": duplicate, its worker answered the item through a sibling HIT",
        "no_open_slot": ": surplus, the item needed no more answers",
    }.get(review.unstored_reason or "", "")
    entries = []
    for kind, amount, memo in (
        (book.EntryKind.REWARD, reward, "MTurk reward"),
        (book.EntryKind.PLATFORM_FEE, fee, "MTurk commission"),
    ):
        for answer, part in zip(shares, _split(amount, len(shares)), strict=True):
            entries.append(
                book.LedgerEntry(
                    kind=kind,
                    amount=part,
                    currency="USD",
                    occurred_at=now,
                    project_id=review.project_id,
                    batch_id=review.batch_id,
                    workforce_id=review.workforce_id,
                    worker_id=worker_id,
                    answer_id=answer.id if answer else None,
                    is_gold=bool(answer and answer.is_gold),
                    memo=f"{memo}, assignment {review.assignment_id}{note}",
                )
            )
    ledger.write_entries(
        session, ledger.keyed(f"mturk:{review.workforce_id}:{review.assignment_id}", entries), None
    )


def record_rejection(session: Session, review: MTurkReview) -> None:
    """Mark a rejected assignment's stored answers rejected; their slots reopen.

    Rejected work is not paid, so it is not used either: the answers leave
    aggregation and the budget's reservation, and live batches ask for the answer again.
    """
    rows = session.execute(
        sa.update(Answer)
        .where(_answers_of(review), Answer.status == "accepted")
        .values(status="rejected")
        .returning(Answer.assignment_id, Answer.item_id)
        .execution_options(synchronize_session=False)
    ).all()
    change_answer_counts(session, Counter(item_id for _, item_id in rows), sign=-1)
    slots = Assignment.id.in_([slot for slot, _ in rows if slot is not None])
    batch = session.get(Batch, review.batch_id) if review.batch_id else None
    if batch is not None and batch.status not in CLOSED_BATCH_STATUSES:
        reopen_slots(session, slots, ended_status="excluded")
    else:
        # A finished batch takes no more answers: the items become pending again.
        session.execute(
            sa.update(Assignment)
            .where(slots)
            .values(status="excluded")
            .execution_options(synchronize_session=False)
        )


def _answers_of(review: MTurkReview) -> sa.ColumnElement[bool]:
    """The stored answers of a reviewed assignment (`id`, or `id:item` with several items)."""
    return sa.and_(
        Answer.workforce_id == review.workforce_id,
        sa.or_(
            Answer.external_id == review.assignment_id,
            Answer.external_id.like(f"{review.assignment_id}:%"),
        ),
    )


def _split(amount: Decimal, parts: int) -> list[Decimal]:
    """Split an amount into `parts` micro-exact shares that add up to it."""
    micros = to_micros(amount)
    base, extra = divmod(micros, parts)
    return [from_micros(base + (1 if index < extra else 0)) for index in range(parts)]


# --- blocks, top-ups, closing ----------------------------------------------------------


def _sync_blocks(
    sessions: sessionmaker[Session], workforce_id: int, connector: MTurkConnector
) -> Counter[str]:
    """Block on MTurk every worker of the workforce blocked for quality in some project."""
    counts: Counter[str] = Counter()
    with sessions.begin() as session:
        todo = session.execute(
            sa.select(Worker.id, Worker.external_id, sa.func.min(WorkerProject.block_reason))
            .join(WorkerProject, WorkerProject.worker_id == Worker.id)
            .where(
                Worker.workforce_id == workforce_id,
                WorkerProject.status == "blocked",
                ~sa.exists().where(
                    MTurkBlock.workforce_id == workforce_id, MTurkBlock.worker_id == Worker.id
                ),
            )
            .group_by(Worker.id, Worker.external_id)
        ).all()
    for worker_id, worker_ref, reason in todo:
        connector.block_worker(worker_ref, reason=reason or "blocked by Quorum's quality checks")
        with sessions.begin() as session:
            session.add(
                MTurkBlock(workforce_id=workforce_id, worker_id=worker_id, reason=reason or "")
            )
        counts["workers_blocked"] += 1
    return counts


def _top_up(sessions: sessionmaker[Session], connector: MTurkConnector, batch: _Live) -> int:
    """Give MTurk the open slots its HITs can no longer fill; return how many were added.

    Per group of items sharing HITs: what is still coming from MTurk is each HIT's
    MaxAssignments less its reviewed assignments (less its unclaimed ones once expired).
    A missing answer goes on a HIT that stays on its side of the 10-assignment line,
    else on a further HIT of at most 9 assignments. MTurk is asked (GetHIT) only about
    groups whose open slots exceed what our own records say is still coming (the HITs'
    recorded MaxAssignments less the assignments reviewed), so a fresh batch costs no call.
    """
    with sessions.begin() as session:
        open_slots: Counter[str] = Counter(
            {
                str(item_id): count
                for item_id, count in session.execute(
                    sa.select(Assignment.item_id, sa.func.count())
                    .where(Assignment.batch_id == batch.batch_id, Assignment.status == "open")
                    .group_by(Assignment.item_id)
                )
            }
        )
        reviewed: Counter[str] = Counter(
            {
                hit_id: count
                for hit_id, count in session.execute(
                    sa.select(MTurkReview.hit_id, sa.func.count())
                    .where(MTurkReview.batch_id == batch.batch_id)
                    .group_by(MTurkReview.hit_id)
                )
            }
        )
    if not open_slots:
        return 0
    groups: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for hit in batch.ref.state.get("hits", []):
        groups.setdefault(tuple(hit["tasks"]), []).append(hit)
    added = 0
    for refs, hits in groups.items():
        wanted = max(open_slots[ref] for ref in refs)
        coming = sum(int(hit["max_assignments"]) - reviewed[hit["hit_id"]] for hit in hits)
        if wanted > coming:
            added += _fill(sessions, connector, batch, refs, hits, wanted)
    return added


def _fill(
    sessions: sessionmaker[Session],
    connector: MTurkConnector,
    batch: _Live,
    refs: tuple[str, ...],
    hits: list[dict[str, Any]],
    wanted: int,
) -> int:
    now = utcnow()
    views = [connector.call("GetHIT", HITId=hit["hit_id"])["HIT"] for hit in hits]
    coming = 0
    for view in views:
        expired = view["Expiration"] <= now
        coming += int(view["MaxAssignments"]) - int(view.get("NumberOfAssignmentsCompleted", 0))
        coming -= int(view.get("NumberOfAssignmentsAvailable", 0)) if expired else 0
    missing = wanted - coming
    if missing <= 0:
        return 0
    for hit, view in zip(hits, views, strict=True):
        current = int(view["MaxAssignments"])
        if view.get("HITStatus") == "Disposed" or view["Expiration"] <= now:
            continue
        if (current >= LARGE) == (current + missing >= LARGE):
            # The token names the HIT's size before the extension: a repeat after a lost
            # response is refused as a duplicate, and the next extension has a new token.
            connector.extend_hit(
                hit["hit_id"], missing, token=f"quorum-x-{hit['hit_id']}-{current}"
            )
            _record_hit(sessions, batch.batch_id, {**hit, "max_assignments": current + missing})
            return missing
    added = 0
    while added < missing:
        size = min(missing - added, LARGE - 1)
        with sessions.begin() as session:
            stored = session.get(Batch, batch.batch_id)
            assert stored is not None
            spec = batch_spec(session, stored)
            part = len(stored.connector_state.get("hits", []))
        _record_hit(sessions, batch.batch_id, connector.add_hit(spec, refs, size, part=part))
        added += size
    return added


def _record_hit(sessions: sessionmaker[Session], batch_id: int, record: dict[str, Any]) -> None:
    """Add a HIT to the batch's connector state, or replace its record (same HIT id)."""
    with sessions.begin() as session:
        stored = session.get(Batch, batch_id, with_for_update=True)
        assert stored is not None
        state = dict(stored.connector_state)
        hits = list(state.get("hits", []))
        known = [index for index, hit in enumerate(hits) if hit["hit_id"] == record["hit_id"]]
        if known:
            hits[known[0]] = record
        else:
            hits.append(record)
        state["hits"] = hits
        stored.connector_state = state


def _close(sessions: sessionmaker[Session], connector: MTurkConnector, batch: _Live) -> int:
    """Expire and delete a finished batch's HITs; mark the batch once they are all gone."""
    if not connector.close_hits(batch.ref):
        return 0
    with sessions.begin() as session:
        stored = session.get(Batch, batch.batch_id)
        assert stored is not None
        stored.connector_state = {**stored.connector_state, "closed_at": utcnow().isoformat()}
    return 1
