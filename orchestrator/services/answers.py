"""Storing accepted answers, scoring gold, and blocking workers who fail it.

Every workforce's answers come through `accept_answer`, so gold scoring, worker
records and blocking work the same for the internal pool, vendors and MTurk.
This is a hot path: it runs a handful of Core statements and no ORM loads.
"""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from orchestrator.db import utcnow
from orchestrator.errors import InvalidInputError
from orchestrator.models import Answer, Assignment, Item, Project, Worker, WorkerProject
from orchestrator.services import ledger
from quality.gold import should_block


@dataclass(frozen=True)
class Slot:
    """The parts of an assignment row that storing an answer needs."""

    id: int
    item_id: int
    project_id: int
    batch_id: int
    workforce_id: int
    is_gold: bool


@dataclass(frozen=True)
class AcceptedAnswer:
    """The stored answer's id and label, and whether it got its worker blocked."""

    answer_id: int
    label: str
    blocked_worker: bool


def check_label(labels: list[str], label: object) -> str:
    """Return the label if the project's schema allows it, else raise a 422 naming `label`."""
    if not isinstance(label, str) or label not in labels:
        raise InvalidInputError(
            f"label {label!r} is not one of the project's labels",
            details={"label": [f"must be one of: {', '.join(labels)}"]},
        )
    return label


def upsert_worker_record(
    session: Session, worker_id: int, project_id: int, **increments: int
) -> sa.Row:
    """Add to a worker's counters in a project (creating the record) and return the new row."""
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect](WorkerProject)
    table = WorkerProject.__table__
    counters = ("answers", "gold_answers", "gold_correct", "gold_seen", "tasks_seen")
    statement = (
        insert.values(
            worker_id=worker_id,
            project_id=project_id,
            status="active",
            **{name: increments.get(name, 0) for name in counters},
        )
        .on_conflict_do_update(
            index_elements=["worker_id", "project_id"],
            set_={name: table.c[name] + increments[name] for name in increments},
        )
        .returning(*table.c)
    )
    return session.execute(statement).one()


def accept_answer(
    session: Session,
    *,
    slot: Slot,
    worker_id: int,
    label: str,
    gold_label: str | None,
    time_spent_ms: int | None = None,
    external_id: str | None = None,
) -> AcceptedAnswer:
    """Store an answer on a slot, score it if gold, and block the worker if gold says so."""
    now = utcnow()
    is_correct = None if not slot.is_gold or gold_label is None else label == gold_label
    answer_id = session.execute(
        sa.insert(Answer.__table__)
        .values(
            assignment_id=slot.id,
            item_id=slot.item_id,
            project_id=slot.project_id,
            batch_id=slot.batch_id,
            workforce_id=slot.workforce_id,
            worker_id=worker_id,
            label=label,
            status="accepted",
            is_gold=slot.is_gold,
            is_correct=is_correct,
            time_spent_ms=time_spent_ms,
            external_id=external_id,
            created_at=now,
        )
        .returning(Answer.__table__.c.id)
    ).scalar_one()
    session.execute(
        sa.update(Assignment.__table__)
        .where(Assignment.__table__.c.id == slot.id)
        .values(status="answered", worker_id=worker_id, answered_at=now)
    )
    session.execute(
        sa.update(Item.__table__)
        .where(Item.__table__.c.id == slot.item_id)
        .values(answer_count=Item.__table__.c.answer_count + 1)
    )
    # Billing: the answer's cost goes on the ledger (before the early return below).
    ledger.record_accepted_answer(
        session,
        slot=slot,
        answer_id=answer_id,
        worker_id=worker_id,
        accepted_at=now,
        time_spent_ms=time_spent_ms,
    )
    gold = {} if is_correct is None else {"gold_answers": 1, "gold_correct": int(is_correct)}
    record = upsert_worker_record(session, worker_id, slot.project_id, answers=1, **gold)
    if not gold:
        return AcceptedAnswer(answer_id, label, False)
    worker = Worker.__table__
    session.execute(
        sa.update(worker)
        .where(worker.c.id == worker_id)
        .values(
            gold_answers=worker.c.gold_answers + 1,
            gold_correct=worker.c.gold_correct + gold["gold_correct"],
        )
    )
    return AcceptedAnswer(answer_id, label, _block_if_failing(session, record))


def _block_if_failing(session: Session, record: sa.Row) -> bool:
    if record.status != "active":
        return False
    project = session.get(Project, record.project_id)
    assert project is not None
    if not should_block(
        record.gold_answers,
        record.gold_correct,
        threshold=project.gold_accuracy_threshold,
        min_answers=project.gold_min_answers,
    ):
        return False
    accuracy = record.gold_correct / record.gold_answers
    block_worker(
        session,
        project,
        record.worker_id,
        reason=f"gold accuracy {accuracy:.0%} below {project.gold_accuracy_threshold:.0%} "
        f"after {record.gold_answers} gold answers",
    )
    return True


def block_worker(session: Session, project: Project, worker_id: int, *, reason: str) -> None:
    """Block a worker in a project: no more work, leases withdrawn, answers maybe excluded."""
    session.execute(
        sa.update(WorkerProject)
        .where(WorkerProject.worker_id == worker_id, WorkerProject.project_id == project.id)
        .values(status="blocked", blocked_at=utcnow(), block_reason=reason)
        .execution_options(synchronize_session=False)
    )
    live_leases = sa.and_(
        Assignment.project_id == project.id,
        Assignment.worker_id == worker_id,
        Assignment.status == "leased",
    )
    reopen_slots(session, live_leases, ended_status="released")
    if not project.exclude_blocked_answers:
        return
    excluded = session.execute(
        sa.update(Answer)
        .where(
            Answer.project_id == project.id,
            Answer.worker_id == worker_id,
            Answer.status == "accepted",
            Answer.is_gold.is_(False),
        )
        .values(status="excluded")
        .returning(Answer.assignment_id, Answer.item_id)
        .execution_options(synchronize_session=False)
    ).all()
    for _, item_id in excluded:
        session.execute(
            sa.update(Item).where(Item.id == item_id).values(answer_count=Item.answer_count - 1)
        )
    # Billing: excluded answers get reversing ledger entries, never an edit.
    ledger.reverse_excluded_answers(
        session, project_id=project.id, worker_id=worker_id, memo=reason
    )
    assignment_ids = [assignment_id for assignment_id, _ in excluded if assignment_id]
    if assignment_ids:
        reopen_slots(session, Assignment.id.in_(assignment_ids), ended_status="excluded")


def reopen_slots(session: Session, condition: sa.ColumnElement[bool], *, ended_status: str) -> int:
    """End the matching slots with `ended_status` and put a fresh open slot in each one's place.

    The ended rows keep their worker, so history shows who saw what and the
    hand-out never gives that worker the item again. Gold slots are not reopened:
    the pool creates them on demand.
    """
    ended = session.execute(
        sa.update(Assignment)
        .where(condition)
        .values(status=ended_status)
        .returning(
            Assignment.batch_id,
            Assignment.item_id,
            Assignment.project_id,
            Assignment.workforce_id,
            Assignment.is_gold,
            Assignment.reserved_micros,
        )
        .execution_options(synchronize_session=False)
    ).all()
    fresh = [
        {
            "batch_id": row.batch_id,
            "item_id": row.item_id,
            "project_id": row.project_id,
            "workforce_id": row.workforce_id,
            "is_gold": False,
            "status": "open",
            "reserved_micros": row.reserved_micros,
            "created_at": utcnow(),
        }
        for row in ended
        if not row.is_gold
    ]
    if fresh:
        session.execute(sa.insert(Assignment), fresh)
    return len(ended)
