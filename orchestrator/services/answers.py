"""Storing accepted answers, scoring gold, and blocking workers who fail it.

Every workforce's answers come through `accept_answer`, so gold scoring, worker
records and blocking work the same for the internal pool, vendors and MTurk.
"""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.db import insert_ignoring_conflicts, utcnow
from orchestrator.errors import InvalidInputError
from orchestrator.models import Answer, Assignment, Item, Project, Worker, WorkerProject
from quality.gold import should_block


@dataclass(frozen=True)
class AcceptedAnswer:
    """The stored answer, and whether it got its worker blocked."""

    answer: Answer
    blocked_worker: bool


def check_label(project: Project, label: object) -> str:
    """Return the label if the project's schema allows it, else raise a 422 naming `label`."""
    if not isinstance(label, str) or label not in project.labels:
        raise InvalidInputError(
            f"label {label!r} is not one of the project's labels",
            details={"label": [f"must be one of: {', '.join(project.labels)}"]},
        )
    return label


def worker_record(session: Session, worker_id: int, project_id: int) -> WorkerProject:
    """Return a worker's record in a project, created if new, locked for this transaction."""
    insert_ignoring_conflicts(
        session,
        WorkerProject.__table__,
        {
            "worker_id": worker_id,
            "project_id": project_id,
            "answers": 0,
            "gold_answers": 0,
            "gold_correct": 0,
            "gold_seen": 0,
            "tasks_seen": 0,
            "status": "active",
        },
        ["worker_id", "project_id"],
    )
    record = session.scalar(
        sa.select(WorkerProject)
        .where(WorkerProject.worker_id == worker_id, WorkerProject.project_id == project_id)
        .with_for_update()
    )
    assert record is not None  # inserted just above
    return record


def accept_answer(
    session: Session,
    *,
    project: Project,
    assignment: Assignment,
    worker_id: int,
    label: str,
    time_spent_ms: int | None = None,
    external_id: str | None = None,
) -> AcceptedAnswer:
    """Store an answer on a slot, score it if gold, and block the worker if gold says so."""
    now = utcnow()
    gold_label = None
    if assignment.is_gold:
        gold_label = session.scalar(sa.select(Item.gold_label).where(Item.id == assignment.item_id))
    is_correct = None if gold_label is None else label == gold_label
    answer = Answer(
        assignment_id=assignment.id,
        item_id=assignment.item_id,
        project_id=assignment.project_id,
        batch_id=assignment.batch_id,
        workforce_id=assignment.workforce_id,
        worker_id=worker_id,
        label=label,
        is_gold=assignment.is_gold,
        is_correct=is_correct,
        time_spent_ms=time_spent_ms,
        external_id=external_id,
        created_at=now,
    )
    session.add(answer)
    assignment.status = "answered"
    assignment.worker_id = worker_id
    assignment.answered_at = now
    session.execute(
        sa.update(Item)
        .where(Item.id == assignment.item_id)
        .values(answer_count=Item.answer_count + 1)
    )
    record = worker_record(session, worker_id, project.id)
    record.answers += 1
    if is_correct is not None:
        record.gold_answers += 1
        record.gold_correct += int(is_correct)
        session.execute(
            sa.update(Worker)
            .where(Worker.id == worker_id)
            .values(
                gold_answers=Worker.gold_answers + 1,
                gold_correct=Worker.gold_correct + int(is_correct),
            )
        )
    session.flush()
    blocked = record.status == "active" and should_block(
        record.gold_answers,
        record.gold_correct,
        threshold=project.gold_accuracy_threshold,
        min_answers=project.gold_min_answers,
    )
    if blocked:
        accuracy = record.gold_correct / record.gold_answers
        block_worker(
            session,
            project,
            record,
            reason=f"gold accuracy {accuracy:.0%} below {project.gold_accuracy_threshold:.0%} "
            f"after {record.gold_answers} gold answers",
        )
    return AcceptedAnswer(answer, blocked)


def block_worker(session: Session, project: Project, record: WorkerProject, *, reason: str) -> None:
    """Block a worker in a project: no more work, leases withdrawn, answers maybe excluded."""
    now = utcnow()
    record.status = "blocked"
    record.blocked_at = now
    record.block_reason = reason
    live_leases = sa.and_(
        Assignment.project_id == project.id,
        Assignment.worker_id == record.worker_id,
        Assignment.status == "leased",
    )
    reopen_slots(session, live_leases, ended_status="released")
    if not project.exclude_blocked_answers:
        return
    excluded = session.execute(
        sa.update(Answer)
        .where(
            Answer.project_id == project.id,
            Answer.worker_id == record.worker_id,
            Answer.status == "accepted",
            Answer.is_gold.is_(False),
        )
        .values(status="excluded")
        .returning(Answer.assignment_id, Answer.item_id)
    ).all()
    if not excluded:
        return
    for _, item_id in excluded:
        session.execute(
            sa.update(Item).where(Item.id == item_id).values(answer_count=Item.answer_count - 1)
        )
    reopen_slots(
        session,
        Assignment.id.in_([assignment_id for assignment_id, _ in excluded if assignment_id]),
        ended_status="excluded",
    )


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
