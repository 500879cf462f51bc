"""Dispatch: split a project's pending items into batches for a workforce and publish them.

An item is pending while its live slots (open, leased or answered) number fewer
than the project's overlap, counted across every workforce, so dispatching to
several workforces over time never asks for more than `overlap` answers.

Gold: each batch records a sample of the project's gold items. Pull workforces
(the internal pool) serve them on demand, so each worker's share follows
`gold_rate` (see `orchestrator.services.pool`). Push workforces receive them as
ordinary tasks with `overlap` slots each, about `gold_rate` of the batch's tasks.
An ordinary item goes to a workforce once (again only after its slots there were
withdrawn as overdue), so a gold item seen in two of its batches would give itself
away: a push workforce gets gold it has not been sent before, and only once all of the
project's gold has gone to it are items sent again (logged, so that ops can add gold).
"""

import logging
import random
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from connectors.base import BatchSpec, Connector, SubmissionRef, TaskSpec
from orchestrator.db import refresh_statistics, utcnow
from orchestrator.errors import ConflictError, NotFoundError
from orchestrator.models import Assignment, Batch, BatchItem, Item, Project, Workforce
from orchestrator.models.batches import CLOSED_BATCH_STATUSES, LIVE_STATUSES
from orchestrator.services import budgets, webhooks
from orchestrator.services.projects import get_project
from orchestrator.services.workforces import connector_for, get_workforce

log = logging.getLogger("quorum.dispatch")


def pending_items(session: Session, project: Project) -> list[tuple[int, int]]:
    """Return `(item_id, slots_needed)` for non-gold items short of their overlap, in order."""
    live = sa.func.count(Assignment.id)
    rows = session.execute(
        sa.select(Item.id, live)
        .outerjoin(
            Assignment,
            sa.and_(Assignment.item_id == Item.id, Assignment.status.in_(LIVE_STATUSES)),
        )
        .where(Item.project_id == project.id, Item.gold_label.is_(None))
        .group_by(Item.id)
        .having(live < project.overlap)
        .order_by(Item.id)
    ).all()
    return [(item_id, project.overlap - count) for item_id, count in rows]


def gold_sample_size(items: int, gold_rate: float) -> int:
    """How many gold items to mix into a batch of `items` so that about gold_rate is gold."""
    if gold_rate <= 0 or items == 0:
        return 0
    return max(1, round(items * gold_rate / (1 - gold_rate)))


def dispatch(
    session: Session,
    project_id: int,
    *,
    workforce_id: int,
    batch_size: int | None = None,
    max_items: int | None = None,
    due_at: datetime | None = None,
    seed: int | None = None,
) -> list[Batch]:
    """Create and publish batches of the project's pending items for one workforce."""
    project = get_project(session, project_id, for_update=True)  # one dispatch at a time
    if project.status != "active":
        raise ConflictError(f"project {project_id} is {project.status}; it takes no new work")
    workforce = get_workforce(session, workforce_id)
    if workforce.status != "active":
        raise ConflictError(f"workforce {workforce_id} is {workforce.status}")
    pending = pending_items(session, project)[:max_items]
    if not pending:
        raise ConflictError(
            "no pending items: every item already has its overlap of live slots",
            details={"items": ["nothing to dispatch"]},
        )
    gold_ids = list(
        session.scalars(
            sa.select(Item.id).where(Item.project_id == project.id, Item.gold_label.is_not(None))
        )
    )
    rng = random.Random(seed)
    size = batch_size or len(pending)
    connector = connector_for(workforce)
    # Billing: every slot's expected cost must fit the budget before anything is made (409).
    reservation = budgets.plan_dispatch(
        session, project, workforce, pending, gold_ids, size, is_pull=connector.gold_on_demand
    )
    batches = []
    pull = connector.gold_on_demand
    sent_gold = set() if pull else _gold_sent(session, project.id, workforce.id)
    for start in range(0, len(pending), size):
        chunk = pending[start : start + size]
        wanted = min(len(gold_ids), gold_sample_size(len(chunk), project.gold_rate))
        gold = _draw_gold(rng, gold_ids, sent_gold, wanted)
        if not pull:
            if sent_gold.intersection(gold):
                log.warning(
                    "gold sent again to a workforce: the project needs more gold items",
                    extra={"project_id": project.id, "workforce_id": workforce.id},
                )
            sent_gold.update(gold)
        batch = _create_batch(session, project, workforce, chunk, gold, pull, due_at)
        reservation.apply(session, batch)  # billing: reserve the slots before publishing
        _publish(session, project, batch, connector)
        batches.append(batch)
    slots = sum(batch.slot_count for batch in batches)
    refresh_statistics(session, slots, Assignment, BatchItem)
    return batches


def _gold_sent(session: Session, project_id: int, workforce_id: int) -> set[int]:
    """The project's gold items already placed in any of a workforce's batches."""
    return set(
        session.scalars(
            sa.select(BatchItem.item_id)
            .join(Batch, Batch.id == BatchItem.batch_id)
            .where(
                Batch.project_id == project_id,
                Batch.workforce_id == workforce_id,
                BatchItem.is_gold.is_(True),
            )
        )
    )


def _draw_gold(rng: random.Random, gold_ids: list[int], sent: set[int], wanted: int) -> list[int]:
    """Draw `wanted` gold items, those not in `sent` first (all of `gold_ids` if none sent)."""
    fresh = [item_id for item_id in gold_ids if item_id not in sent]
    if len(fresh) >= wanted:
        return rng.sample(fresh, wanted)
    again = [item_id for item_id in gold_ids if item_id in sent]
    return fresh + rng.sample(again, wanted - len(fresh))


def _create_batch(
    session: Session,
    project: Project,
    workforce: Workforce,
    chunk: Sequence[tuple[int, int]],
    gold: Sequence[int],
    is_pull: bool,
    due_at: datetime | None,
) -> Batch:
    now = utcnow()
    # The internal pool makes gold slots on demand; other workforces (vendors pulling
    # through the API included) get them up front, so gold looks like any other task.
    gold_slots = [] if is_pull else [(item_id, project.overlap) for item_id in gold]
    slots = [*chunk, *gold_slots]
    batch = Batch(
        project_id=project.id,
        workforce_id=workforce.id,
        status="created",
        item_count=len(chunk),
        gold_count=len(gold),
        slot_count=sum(n for _, n in slots),
        due_at=due_at,
        created_at=now,
    )
    session.add(batch)
    session.flush()
    session.execute(
        sa.insert(BatchItem),
        [{"batch_id": batch.id, "item_id": item_id, "is_gold": False} for item_id, _ in chunk]
        + [{"batch_id": batch.id, "item_id": item_id, "is_gold": True} for item_id in gold],
    )
    gold_set = set(gold)
    session.execute(
        sa.insert(Assignment),
        [
            {
                "batch_id": batch.id,
                "item_id": item_id,
                "project_id": project.id,
                "workforce_id": workforce.id,
                "is_gold": item_id in gold_set,
                "status": "open",
                "reserved_micros": 0,
                "created_at": now,
            }
            for item_id, count in slots
            for _ in range(count)
        ],
    )
    return batch


def _publish(session: Session, project: Project, batch: Batch, connector: Connector) -> None:
    if not connector.is_pull:
        # Push workforces are called outside this transaction: the batch row, committed
        # as `created`, is the outbox record the scheduler publishes from
        # (services.collection.publish_pending), so a crash neither loses nor repeats it.
        return
    mark_published(session, batch, connector.publish(batch_spec(session, batch)), connector)


def batch_spec(session: Session, batch: Batch) -> BatchSpec:
    """Describe a batch to its workforce: tasks with their slots, and nothing about gold."""
    project = session.get(Project, batch.project_id)
    assert project is not None
    items = session.execute(
        sa.select(Item.id, Item.data, sa.func.count(Assignment.id))
        .join(Assignment, Assignment.item_id == Item.id)
        .where(Assignment.batch_id == batch.id)
        .group_by(Item.id, Item.data)
        .order_by(Item.id)
    ).all()
    return BatchSpec(
        batch_id=batch.id,
        project_id=project.id,
        title=project.name,
        instructions=project.instructions,
        labels=list(project.labels),
        reward=project.reward,
        currency=project.currency,
        tasks=[TaskSpec(task_ref=str(item_id), data=data, slots=n) for item_id, data, n in items],
        due_at=batch.due_at,
    )


def mark_published(
    session: Session, batch: Batch, ref: SubmissionRef, connector: Connector
) -> None:
    """Record that the workforce has the batch, and announce it (webhook outbox)."""
    batch.external_ref = ref.external_ref
    batch.connector_state = dict(ref.state)
    batch.status = "published"
    batch.published_at = utcnow()
    # Outbox: the webhook is recorded with the publish and sent after commit.
    webhooks.announce_batch(session, batch, "batch.published", connector.config)


def get_batch(session: Session, batch_id: int, *, project_id: int | None = None) -> Batch:
    """Return a batch (of a project, when given) or raise NotFoundError."""
    batch = session.get(Batch, batch_id)
    if batch is None or (project_id is not None and batch.project_id != project_id):
        raise NotFoundError(f"batch {batch_id} not found")
    return batch


def list_batches(session: Session, project_id: int) -> list[Batch]:
    """Return a project's batches, oldest first."""
    get_project(session, project_id)
    return list(
        session.scalars(sa.select(Batch).where(Batch.project_id == project_id).order_by(Batch.id))
    )


def cancel_batch(session: Session, batch_id: int) -> Batch:
    """Cancel a batch: its open and leased slots close, and its unanswered items become pending."""
    batch = session.scalar(sa.select(Batch).where(Batch.id == batch_id).with_for_update())
    if batch is None:
        raise NotFoundError(f"batch {batch_id} not found")
    if batch.status in CLOSED_BATCH_STATUSES:
        raise ConflictError(f"batch {batch_id} is already {batch.status}")
    session.execute(
        sa.update(Assignment)
        .where(Assignment.batch_id == batch.id, Assignment.status.in_(("open", "leased")))
        .values(status="cancelled")
    )
    batch.status = "cancelled"
    batch.completed_at = utcnow()
    workforce = get_workforce(session, batch.workforce_id)
    connector_for(workforce).cancel(
        SubmissionRef(batch.id, batch.external_ref, batch.connector_state)
    )
    webhooks.announce_batch(session, batch, "batch.cancelled", workforce.config)
    return batch
