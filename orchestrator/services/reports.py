"""Read-only reports for ops: workers of a project, and a project's progress."""

import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.models import Answer, Assignment, Batch, Item, Worker, WorkerProject, Workforce
from orchestrator.services.projects import get_project
from quality.gold import GoldStats


@dataclass(frozen=True)
class WorkerReport:
    """One worker's record in a project."""

    worker_id: int
    external_id: str
    workforce: str
    status: str
    block_reason: str | None
    answers: int
    gold: GoldStats
    gold_total: GoldStats
    median_seconds: float | None
    skill: float | None


def project_workers(session: Session, project_id: int) -> list[WorkerReport]:
    """Report every worker who worked on a project: answers, gold accuracy, time, status."""
    get_project(session, project_id)
    times: dict[int, list[int]] = defaultdict(list)
    for worker_id, ms in session.execute(
        sa.select(Answer.worker_id, Answer.time_spent_ms).where(
            Answer.project_id == project_id, Answer.time_spent_ms.is_not(None)
        )
    ):
        times[worker_id].append(ms)
    rows = session.execute(
        sa.select(WorkerProject, Worker, Workforce.name)
        .join(Worker, Worker.id == WorkerProject.worker_id)
        .join(Workforce, Workforce.id == Worker.workforce_id)
        .where(WorkerProject.project_id == project_id)
        .order_by(Worker.id)
    ).all()
    return [
        WorkerReport(
            worker_id=worker.id,
            external_id=worker.external_id,
            workforce=workforce_name,
            status=record.status,
            block_reason=record.block_reason,
            answers=record.answers,
            gold=GoldStats.from_counts(record.gold_answers, record.gold_correct),
            gold_total=GoldStats.from_counts(worker.gold_answers, worker.gold_correct),
            median_seconds=statistics.median(times[worker.id]) / 1000 if times[worker.id] else None,
            skill=record.skill,
        )
        for record, worker, workforce_name in rows
    ]


def project_progress(session: Session, project_id: int) -> dict[str, Any]:
    """Count items pending, in progress and answered to overlap, in total and per batch."""
    project = get_project(session, project_id)
    live = (
        sa.select(Assignment.item_id, sa.func.count().label("live"))
        .where(Assignment.project_id == project_id, Assignment.status.in_(("open", "leased")))
        .group_by(Assignment.item_id)
        .subquery()
    )
    done = Item.answer_count >= project.overlap
    working = sa.and_(~done, sa.or_(live.c.live > 0, Item.answer_count > 0))
    totals = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((done, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((working, 1), else_=0)), 0),
        )
        .select_from(Item)
        .outerjoin(live, live.c.item_id == Item.id)
        .where(Item.project_id == project_id, Item.gold_label.is_(None))
    ).one()
    items, answered, in_progress = (int(v) for v in totals)
    gold_items = session.scalar(
        sa.select(sa.func.count()).where(
            Item.project_id == project_id, Item.gold_label.is_not(None)
        )
    )
    return {
        "project_id": project_id,
        "items": items,
        "gold_items": gold_items or 0,
        "pending": items - answered - in_progress,
        "in_progress": in_progress,
        "answered_to_overlap": answered,
        "batches": batch_progress(session, project_id),
    }


def batch_progress(session: Session, project_id: int) -> list[dict[str, Any]]:
    """Slot counts by status for each batch of a project."""
    counts: dict[int, dict[str, int]] = defaultdict(dict)
    for batch_id, status, count in session.execute(
        sa.select(Assignment.batch_id, Assignment.status, sa.func.count())
        .where(Assignment.project_id == project_id)
        .group_by(Assignment.batch_id, Assignment.status)
    ):
        counts[batch_id][status] = count
    batches = session.scalars(
        sa.select(Batch).where(Batch.project_id == project_id).order_by(Batch.id)
    )
    return [
        {
            "batch_id": batch.id,
            "status": batch.status,
            "items": batch.item_count,
            "gold_items": batch.gold_count,
            "open": counts[batch.id].get("open", 0),
            "leased": counts[batch.id].get("leased", 0),
            "answered": counts[batch.id].get("answered", 0),
        }
        for batch in batches
    ]
