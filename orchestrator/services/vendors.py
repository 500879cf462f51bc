"""The vendor API's operations: a vendor's batches, their tasks, and bulk answers.

Scope: a vendor sees a batch only when the batch's workforce belongs to it; any
other batch, existing or not, is "not found", so existence never leaks.

Gold: vendor batches carry their gold slots up front (see `connectors.vendor`),
and nothing here tells a gold task from another: tasks are known by an opaque
`task_ref`, never by the item's id or external id, and no gold answer leaves.

Answers: the rows are checked with a few queries for the whole request (the
batch's open slots, claimed with SKIP LOCKED in one statement; what the workers
answered before; who is blocked), then in order in Python (task of this batch,
label in the schema, worker not blocked, even by a gold answer earlier in the
request, no second answer by the worker on the item, an open slot left), and
stored through `AnswerIntake`, the path every workforce shares, so gold scoring,
blocking, worker records and the ledger (at the workforce's rate card) work
exactly as for the internal pool. A vendor worker is a Quorum `Worker` in
the vendor's workforce, known by the vendor's own id (qualified by the workforce).
"""

from collections import OrderedDict, defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from connectors.vendor import task_ref
from orchestrator.errors import ConflictError, InvalidInputError, NotFoundError
from orchestrator.models import (
    Assignment,
    Batch,
    BatchItem,
    Item,
    Project,
    Worker,
    Workforce,
)
from orchestrator.models.batches import OPEN_BATCH_STATUSES
from orchestrator.services import bulk
from orchestrator.services.answers import AnswerIntake, NewAnswer, Slot

A = Assignment.__table__

# Why a row was refused; each reason tells the vendor what to do.
REJECT_CODES = (
    "unknown_task",
    "invalid_label",
    "worker_blocked",
    "duplicate_answer",
    "no_open_slot",
)


class RowsRejectedError(InvalidInputError):
    """An all-or-nothing submission had refused rows, so nothing was stored."""

    code = "rows_rejected"


@dataclass(frozen=True)
class VendorBatch:
    """A batch as its vendor sees it: no gold count, no item ids."""

    id: int
    status: str
    title: str
    instructions: str
    labels: list[str]
    overlap: int
    task_count: int
    open_slots: int
    due_at: datetime | None
    published_at: datetime | None
    created_at: datetime


@dataclass(frozen=True)
class VendorTask:
    """One task: its opaque reference and the item's data."""

    task_ref: str
    data: dict[str, Any]


ROW_TEXT_LIMITS = {"task_ref": 64, "worker_id": 255, "label": 255}
"""The longest value of each text field of a submitted row (characters; at least 1)."""


@dataclass(frozen=True)
class AnswerRow:
    """One submitted answer."""

    task_ref: str
    worker_id: str
    label: str
    time_spent_ms: int | None = None


@dataclass
class Submission:
    """What happened to each row of a bulk submission."""

    batch_id: int
    atomic: bool
    accepted: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    @property
    def accepted_count(self) -> int:
        return len(self.accepted)

    @property
    def rejected_count(self) -> int:
        return len(self.rejected)


def _open_slots() -> sa.ScalarSelect[int]:
    return (
        sa.select(sa.func.count(A.c.id))
        .where(A.c.batch_id == Batch.id, A.c.status == "open")
        .scalar_subquery()
    )


def _vendor_batches(vendor_id: int) -> sa.Select[Any]:
    return (
        sa.select(
            Batch,
            Project.name,
            Project.instructions,
            Project.labels,
            Project.overlap,
            _open_slots().label("open_slots"),
        )
        .join(Workforce, Workforce.id == Batch.workforce_id)
        .join(Project, Project.id == Batch.project_id)
        .where(Workforce.vendor_id == vendor_id, Workforce.kind == "vendor")
    )


def _view(row: Any) -> VendorBatch:
    batch: Batch = row[0]
    return VendorBatch(
        id=batch.id,
        status=batch.status,
        title=row.name,
        instructions=row.instructions,
        labels=list(row.labels),
        overlap=row.overlap,
        task_count=batch.item_count + batch.gold_count,
        open_slots=row.open_slots,
        due_at=batch.due_at,
        published_at=batch.published_at,
        created_at=batch.created_at,
    )


def list_batches(
    session: Session, *, vendor_id: int, status: str | None, limit: int, offset: int
) -> tuple[list[VendorBatch], int]:
    """Return a page of the vendor's batches (`status="open"`: published or in progress)."""
    query = _vendor_batches(vendor_id)
    if status == "open":
        query = query.where(Batch.status.in_(OPEN_BATCH_STATUSES))
    elif status is not None:
        query = query.where(Batch.status == status)
    total = session.scalar(sa.select(sa.func.count()).select_from(query.subquery()))
    rows = session.execute(query.order_by(Batch.id).limit(limit).offset(offset)).all()
    return [_view(row) for row in rows], int(total or 0)


def get_batch(session: Session, *, vendor_id: int, batch_id: int) -> VendorBatch:
    """Return one of the vendor's batches; any other batch is NotFoundError."""
    row = session.execute(_vendor_batches(vendor_id).where(Batch.id == batch_id)).one_or_none()
    if row is None:
        raise NotFoundError(f"batch {batch_id} not found")
    return _view(row)


# batch id -> (refs in order, ref -> item id); a batch's items never change once made.
_INDEX_CACHE: "OrderedDict[tuple[int, str], tuple[list[str], dict[str, int]]]" = OrderedDict()
_INDEX_CACHE_SIZE = 256


def _task_index(session: Session, batch_id: int, salt: str) -> tuple[list[str], dict[str, int]]:
    """Return the batch's task refs in listing order and the ref -> item id map."""
    cached = _INDEX_CACHE.get((batch_id, salt))
    if cached is not None:
        _INDEX_CACHE.move_to_end((batch_id, salt))
        return cached
    item_ids = session.scalars(sa.select(BatchItem.item_id).where(BatchItem.batch_id == batch_id))
    by_ref = {task_ref(salt, item_id): item_id for item_id in item_ids}
    # Listed in ref order: pseudo-random, so position says nothing of import order or gold.
    index = (sorted(by_ref), by_ref)
    _INDEX_CACHE[(batch_id, salt)] = index
    if len(_INDEX_CACHE) > _INDEX_CACHE_SIZE:
        _INDEX_CACHE.popitem(last=False)
    return index


def _scoped_batch(session: Session, vendor_id: int, batch_id: int) -> Batch:
    batch = session.scalar(
        sa.select(Batch)
        .join(Workforce, Workforce.id == Batch.workforce_id)
        .where(Batch.id == batch_id, Workforce.vendor_id == vendor_id, Workforce.kind == "vendor")
    )
    if batch is None:
        raise NotFoundError(f"batch {batch_id} not found")
    return batch


def _salt(batch: Batch) -> str:
    # The vendor connector draws a salt at publish; a batch without one keys on its id.
    return str((batch.connector_state or {}).get("task_salt") or f"batch-{batch.id}")


def list_tasks(
    session: Session, *, vendor_id: int, batch_id: int, limit: int, offset: int
) -> tuple[VendorBatch, list[VendorTask], int]:
    """Return the batch and a page of its tasks (gold among them, looking the same)."""
    view = get_batch(session, vendor_id=vendor_id, batch_id=batch_id)
    batch = _scoped_batch(session, vendor_id, batch_id)
    refs, by_ref = _task_index(session, batch.id, _salt(batch))
    page = refs[offset : offset + limit]
    data = dict(
        session.execute(
            sa.select(Item.id, Item.data).where(Item.id.in_([by_ref[ref] for ref in page]))
        ).all()
    )
    return view, [VendorTask(ref, data[by_ref[ref]] or {}) for ref in page], len(refs)


def ensure_workers(session: Session, workforce_id: int, refs: Iterable[str]) -> dict[str, Any]:
    """Return `ref -> (id, status)` of the workforce's workers, creating the new ones."""
    refs = sorted(set(refs))
    if not refs:
        return {}
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[
        session.get_bind().dialect.name
    ](Worker)
    session.execute(
        insert.values(
            [
                {
                    "workforce_id": workforce_id,
                    "external_id": ref,
                    "status": "active",
                    "gold_answers": 0,
                    "gold_correct": 0,
                }
                for ref in refs
            ]
        ).on_conflict_do_nothing(index_elements=["workforce_id", "external_id"])
    )
    rows = session.execute(
        sa.select(Worker.external_id, Worker.id, Worker.status).where(
            Worker.workforce_id == workforce_id, bulk.among(session, Worker.external_id, refs)
        )
    ).all()
    return {row.external_id: row for row in rows}


def submit_answers(
    session: Session,
    *,
    vendor_id: int,
    batch_id: int,
    rows: Sequence[AnswerRow],
    atomic: bool = False,
) -> Submission:
    """Check and store a vendor's answers; valid rows are stored unless `atomic`.

    Raises:
        NotFoundError: The batch is not this vendor's (or does not exist).
        ConflictError: The batch or its project takes no more answers.
        RowsRejectedError: `atomic` and at least one row was refused; nothing stored.
    """
    batch = _scoped_batch(session, vendor_id, batch_id)
    if batch.status not in OPEN_BATCH_STATUSES:
        raise ConflictError(
            f"batch {batch_id} is {batch.status}; it takes no more answers",
            details={"batch": [batch.status]},
        )
    project = session.get(Project, batch.project_id)
    assert project is not None
    if project.status != "active":
        raise ConflictError(
            f"batch {batch_id}'s project is {project.status}; it takes no more answers",
            details={"batch": [f"project {project.status}"]},
        )
    _, by_ref = _task_index(session, batch.id, _salt(batch))
    labels = list(project.labels)
    result = Submission(batch_id=batch.id, atomic=atomic)

    def reject(index: int, row: AnswerRow, code: str, reason: str) -> None:
        result.rejected.append(
            {
                "row": index,
                "task_ref": row.task_ref,
                "worker_id": row.worker_id,
                "code": code,
                "reason": reason,
            }
        )

    checked: list[tuple[int, AnswerRow, int]] = []
    for index, row in enumerate(rows):
        item_id = by_ref.get(row.task_ref)
        if item_id is None:
            reject(index, row, "unknown_task", f"no task {row.task_ref!r} in batch {batch.id}")
        elif row.label not in labels:
            reject(
                index,
                row,
                "invalid_label",
                f"label {row.label!r} is not one of: {', '.join(labels)}",
            )
        else:
            checked.append((index, row, item_id))

    workers = ensure_workers(session, batch.workforce_id, (row.worker_id for _, row, _ in checked))
    worker_ids = [worker.id for worker in workers.values()]
    item_ids = sorted({item_id for _, _, item_id in checked})
    blocked: dict[int, str] = {
        worker.id: f"worker {ref!r} is {worker.status} in this workforce"
        for ref, worker in workers.items()
        if worker.status != "active"
    }
    intake = AnswerIntake(session)
    for worker_id, status in intake.lock_workers(project.id, worker_ids).items():
        if status == "blocked":
            blocked.setdefault(worker_id, BLOCKED_REASON)
    # Every slot a worker ever held on an item (answered, excluded, expired...) counts as seen.
    seen = set(
        session.execute(
            sa.select(A.c.item_id, A.c.worker_id)
            .where(
                bulk.among(session, A.c.item_id, item_ids),
                bulk.among(session, A.c.worker_id, worker_ids),
            )
            .distinct()
        ).all()
    )
    slots_query = (
        sa.select(A.c.id, A.c.item_id, A.c.is_gold)
        .where(
            A.c.batch_id == batch.id,
            A.c.status == "open",
            bulk.among(session, A.c.item_id, item_ids),
        )
        .order_by(A.c.id)
    )
    if session.get_bind().dialect.name == "postgresql":
        # A slot another request is filling right now is skipped, never waited for.
        slots_query = slots_query.with_for_update(skip_locked=True)
    open_slots: dict[int, deque[Any]] = defaultdict(deque)
    for slot in session.execute(slots_query).all():
        open_slots[slot.item_id].append(slot)
    gold_labels = dict(
        session.execute(
            sa.select(Item.id, Item.gold_label).where(
                bulk.among(session, Item.id, item_ids), Item.gold_label.is_not(None)
            )
        ).all()
    )

    stored_rows: list[dict[str, Any]] = []
    for index, row, item_id in checked:
        worker = workers[row.worker_id]
        if worker.id in blocked:
            reject(index, row, "worker_blocked", blocked[worker.id])
            continue
        if (item_id, worker.id) in seen:
            reject(
                index,
                row,
                "duplicate_answer",
                f"worker {row.worker_id!r} already answered task {row.task_ref!r}; "
                "each task needs answers from distinct workers",
            )
            continue
        if not open_slots[item_id]:
            reject(
                index,
                row,
                "no_open_slot",
                f"task {row.task_ref!r} has no open slot: it has all the answers it needs "
                "for now (or another request is filling its last ones); pick another task",
            )
            continue
        slot = open_slots[item_id].popleft()
        got_blocked = intake.add(
            NewAnswer(
                Slot(slot.id, item_id, project.id, batch.id, batch.workforce_id, slot.is_gold),
                worker.id,
                row.label,
                gold_labels.get(item_id),
                row.time_spent_ms,
            )
        )
        seen.add((item_id, worker.id))
        stored_rows.append({"row": index, "task_ref": row.task_ref, "worker_id": row.worker_id})
        if got_blocked:
            blocked[worker.id] = BLOCKED_REASON

    result.rejected.sort(key=lambda rejected: rejected["row"])
    if atomic and result.rejected:
        raise RowsRejectedError(
            f"{len(result.rejected)} of {len(rows)} rows were refused; "
            "nothing was stored (atomic=true)",
            details={"rows": result.rejected},
        )
    for accepted, stored in zip(stored_rows, intake.finish(), strict=True):
        result.accepted.append({**accepted, "answer_id": stored.answer_id})
    if result.accepted and batch.status == "published":
        batch.status = "in_progress"
    return result


# The stored reason names gold figures; the vendor gets what to do, not how we measure.
BLOCKED_REASON = (
    "worker is blocked in this project: their measured accuracy fell below the "
    "project's threshold; their answers are refused, send this work to another worker"
)
