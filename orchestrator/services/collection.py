"""Talking to push workforces: publishing their batches and collecting their answers.

Both run outside any transaction, between two: read what to do, call the connector,
record the result.

- Publishing: dispatch commits a push workforce's batch as `created`, which makes
  the batch row its own outbox record; `publish_pending` sends it and marks it
  `published`. After a crash between the two it is sent again, so connectors
  publish idempotently per batch id (MTurk: a UniqueRequestToken derived from it).
- Collecting: a push connector is polled for every answer it holds (polling is the
  source of truth). Storing is idempotent by the connector's answer id, so polling
  the same answers again stores nothing twice.
"""

from collections import Counter
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import CollectedAnswer, ConnectorError, SubmissionRef
from orchestrator.models import (
    Answer,
    Assignment,
    Batch,
    Item,
    Project,
    Worker,
    WorkerProject,
    Workforce,
)
from orchestrator.services.answers import Slot, accept_answer
from orchestrator.services.dispatch import batch_spec, mark_published
from orchestrator.services.workforces import connector_for

A = Assignment.__table__


@dataclass(frozen=True)
class _Polled:
    batch_id: int
    workforce: Workforce
    ref: SubmissionRef


def publish_pending(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Publish the `created` batches of push workforces; mark each one once it is sent."""
    with sessions.begin() as session:
        pending = [
            (batch.id, workforce, batch_spec(session, batch))
            for batch, workforce in session.execute(
                sa.select(Batch, Workforce)
                .join(Workforce, Workforce.id == Batch.workforce_id)
                .where(Batch.status == "created", Workforce.status == "active")
                .order_by(Batch.id)
            ).all()
            if not connector_for(workforce).is_pull
        ]
    counts: Counter[str] = Counter()
    for batch_id, workforce, spec in pending:
        connector = connector_for(workforce)
        try:
            ref = connector.publish(spec)
        except ConnectorError:
            counts["unavailable"] += 1  # stays `created`: the next run tries again
            continue
        with sessions.begin() as session:
            batch = session.scalar(sa.select(Batch).where(Batch.id == batch_id).with_for_update())
            if batch is not None and batch.status == "created":
                mark_published(session, batch, ref, connector)
                counts["published"] += 1
    return dict(counts)


def poll_connectors(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Poll every live batch of every push workforce and store the new answers."""
    with sessions.begin() as session:
        due = [
            _Polled(
                batch.id,
                workforce,
                SubmissionRef(batch.id, batch.external_ref, batch.connector_state),
            )
            for batch, workforce in session.execute(
                sa.select(Batch, Workforce)
                .join(Workforce, Workforce.id == Batch.workforce_id)
                .where(Batch.status.in_(("published", "in_progress")), Workforce.status == "active")
            ).all()
            if not connector_for(workforce).is_pull
        ]
    counts: Counter[str] = Counter()
    for polled in due:
        try:
            collected = connector_for(polled.workforce).collect(polled.ref)
        except ConnectorError:
            counts["unavailable"] += 1  # the next poll tries again; nothing is lost
            continue
        with sessions.begin() as session:
            counts.update(store_collected(session, polled.batch_id, collected))
    counts["batches"] = len(due)
    return dict(counts)


def store_collected(
    session: Session, batch_id: int, answers: list[CollectedAnswer]
) -> Counter[str]:
    """Store collected answers of one batch; already stored ones (same answer id) are skipped."""
    batch = session.get(Batch, batch_id)
    assert batch is not None
    project = session.get(Project, batch.project_id)
    assert project is not None
    known = set(
        session.scalars(
            sa.select(Answer.external_id).where(
                Answer.workforce_id == batch.workforce_id,
                Answer.external_id.in_([a.external_id for a in answers]),
            )
        )
    )
    outcome: Counter[str] = Counter()
    for collected in answers:
        if collected.external_id in known:
            outcome["already_stored"] += 1
            continue
        outcome[_store_one(session, batch, project, collected)] += 1
        known.add(collected.external_id)
    return outcome


def _store_one(session: Session, batch: Batch, project: Project, collected: CollectedAnswer) -> str:
    if collected.label not in project.labels:
        return "invalid_label"
    worker_id = _worker_id(session, batch.workforce_id, collected.worker_ref)
    blocked = session.scalar(
        sa.select(WorkerProject.status).where(
            WorkerProject.worker_id == worker_id, WorkerProject.project_id == project.id
        )
    )
    if blocked == "blocked":
        return "worker_blocked"
    slot = _open_slot(session, batch.id, int(collected.task_ref), worker_id)
    if slot is None:
        return "no_open_slot"
    gold_label = session.scalar(sa.select(Item.gold_label).where(Item.id == slot.item_id))
    accept_answer(
        session,
        slot=Slot(
            slot.id, slot.item_id, slot.project_id, slot.batch_id, slot.workforce_id, slot.is_gold
        ),
        worker_id=worker_id,
        label=collected.label,
        gold_label=gold_label,
        time_spent_ms=collected.time_spent_ms,
        external_id=collected.external_id,
    )
    return "stored"


def _worker_id(session: Session, workforce_id: int, worker_ref: str) -> int:
    worker_id = session.scalar(
        sa.select(Worker.id).where(
            Worker.workforce_id == workforce_id, Worker.external_id == worker_ref
        )
    )
    if worker_id is None:
        worker = Worker(workforce_id=workforce_id, external_id=worker_ref)
        session.add(worker)
        session.flush()
        worker_id = worker.id
    return worker_id


def _open_slot(session: Session, batch_id: int, item_id: int, worker_id: int) -> Any:
    answered_by_worker = sa.exists().where(Answer.item_id == item_id, Answer.worker_id == worker_id)
    query = (
        sa.select(A.c.id, A.c.item_id, A.c.project_id, A.c.batch_id, A.c.workforce_id, A.c.is_gold)
        .where(
            A.c.batch_id == batch_id,
            A.c.item_id == item_id,
            A.c.status.in_(("open", "leased")),
            ~answered_by_worker,
        )
        .order_by(A.c.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True, of=A)
    return session.execute(query).one_or_none()
