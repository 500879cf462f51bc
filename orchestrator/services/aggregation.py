"""Turning a project's answers into labels, and buying more answers where they are unsure.

`aggregate_project` runs the project's method (quality.aggregation) over its accepted
answers, with the gold labels as known truth, warm-started from the previous run,
and stores each item's label, confidence, distribution and stopping confidence,
and each worker's skill. `top_up` then gives every item whose stopping confidence
is below the project's target (and that is under max_overlap) one more open slot.
"""

from dataclasses import dataclass
from typing import Any

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.db import utcnow
from orchestrator.models import AggregationRun, Answer, Assignment, Item, Project, WorkerProject
from orchestrator.services import budgets
from orchestrator.services.projects import get_project
from orchestrator.services.rate_cards import Pricing, pricing_for
from orchestrator.services.workforces import serving_gold_on_demand
from quality.aggregation import aggregate
from quality.errors import NotEnoughAnswersError
from quality.overlap import additional_answers


@dataclass(frozen=True)
class RunSummary:
    """What one aggregation did."""

    project_id: int
    ran: bool
    answers: int
    items: int
    iterations: int | None
    converged: bool | None
    seconds: float


def latest_run(session: Session, project_id: int) -> AggregationRun | None:
    """Return the project's newest aggregation run, if any."""
    return session.scalar(
        sa.select(AggregationRun)
        .where(AggregationRun.project_id == project_id)
        .order_by(AggregationRun.id.desc())
        .limit(1)
    )


def aggregate_project(
    session: Session, project_id: int, *, force: bool = False, cold: bool = False
) -> RunSummary:
    """Aggregate a project's accepted answers (if they changed) and store the results.

    Runs warm-started from the previous run unless `cold`: a cold run gives exactly what
    an offline aggregation of the same answers gives.
    """
    project = get_project(session, project_id)
    if not force and not _has_new_answers(session, project):
        run = latest_run(session, project.id)
        assert run is not None
        return RunSummary(
            project.id, False, run.answers, run.items, run.iterations, run.converged, 0.0
        )
    rows = session.execute(
        sa.select(Answer.id, Answer.item_id, Answer.worker_id, Answer.label).where(
            Answer.project_id == project.id, Answer.status == "accepted"
        )
    ).all()
    gold = dict(
        session.execute(
            sa.select(Item.id, Item.gold_label).where(
                Item.project_id == project.id, Item.gold_label.is_not(None)
            )
        ).all()
    )
    if not rows:
        raise NotEnoughAnswersError(f"project {project.id} has no accepted answers to aggregate")
    answers = pd.DataFrame(
        {
            "task": [r.item_id for r in rows],
            "worker": [r.worker_id for r in rows],
            "label": [r.label for r in rows],
        }
    )
    previous = latest_run(session, project.id)
    same_method = previous is not None and previous.method == project.aggregation_method
    warm = previous.warm_start if previous is not None and same_method and not cold else None
    result = aggregate(
        answers,
        labels=project.labels,
        method=project.aggregation_method,
        gold=gold,
        params=project.aggregation_params or None,
        warm_start=warm,
    )
    # Worker records before items, each in id order: the order answer intake locks them in.
    _store_skills(session, project.id, result.skills_)
    _store_items(session, result)
    run = AggregationRun(
        project_id=project.id,
        method=project.aggregation_method,
        last_answer_id=max(r.id for r in rows),
        answers=len(rows),
        items=len(result.labels_),
        iterations=result.diagnostics.iterations,
        converged=result.diagnostics.converged,
        log_likelihood=result.diagnostics.log_likelihood,
        seconds=result.diagnostics.seconds,
        warm_start=result.warm_start_,
    )
    session.add(run)
    session.flush()
    return RunSummary(
        project.id, True, run.answers, run.items, run.iterations, run.converged, run.seconds
    )


def refresh(session: Session, project_id: int) -> RunSummary | None:
    """Aggregate if the project has answers that the last run did not see; else do nothing."""
    has_answers = session.scalar(
        sa.select(sa.exists().where(Answer.project_id == project_id, Answer.status == "accepted"))
    )
    return aggregate_project(session, project_id) if has_answers else None


def _has_new_answers(session: Session, project: Project) -> bool:
    run = latest_run(session, project.id)
    if run is None or run.method != project.aggregation_method:
        return True
    accepted = session.execute(
        sa.select(sa.func.count(), sa.func.max(Answer.id)).where(
            Answer.project_id == project.id, Answer.status == "accepted"
        )
    ).one()
    # New answers raise the newest id; exclusions lower the count.
    return (accepted[0], accepted[1] or 0) != (run.answers, run.last_answer_id)


def _store_items(session: Session, result: Any) -> None:
    now = utcnow()
    table = Item.__table__
    session.execute(
        sa.update(table)
        .where(table.c.id == sa.bindparam("item_id"))
        .values(
            label=sa.bindparam("label"),
            confidence=sa.bindparam("confidence"),
            label_distribution=sa.bindparam("distribution", type_=table.c.label_distribution.type),
            stopping_confidence=sa.bindparam("stopping"),
            aggregated_at=now,
        ),
        [
            {
                "item_id": item_id,
                "label": label,
                "confidence": result.confidence_[item_id],
                "distribution": result.probas_[item_id],
                "stopping": result.stopping_confidence_[item_id],
            }
            for item_id, label in sorted(result.labels_.items())
        ],
    )


def _store_skills(session: Session, project_id: int, skills: dict[Any, float]) -> None:
    if not skills:
        return
    table = WorkerProject.__table__
    session.execute(
        sa.update(table)
        .where(table.c.project_id == project_id, table.c.worker_id == sa.bindparam("worker"))
        .values(skill=sa.bindparam("skill")),
        [{"worker": worker_id, "skill": skill} for worker_id, skill in sorted(skills.items())],
    )


def top_up(session: Session, project_id: int) -> int:
    """Open one more slot for each unsure item under max_overlap; return how many opened.

    Decided from the stored stopping confidence of the last aggregation, never from
    raw agreement. Items with an open or leased slot already wait for that answer.
    Gold items that a workforce received as ordinary tasks (every workforce but the
    internal pool, which serves gold on demand) are topped up by the same rule, from what
    their answers alone say: a workforce must not tell gold by which tasks get more answers.
    """
    project = get_project(session, project_id)
    if project.status != "active":
        return 0
    # One top-up of a project at a time (the scheduler's and ops' may overlap), so an item
    # never gets two. FOR NO KEY UPDATE: answers' key checks on the project row go on.
    session.execute(
        sa.select(Project.id).where(Project.id == project.id).with_for_update(key_share=True)
    )
    live = (
        sa.select(Assignment.item_id)
        .where(Assignment.project_id == project.id, Assignment.status.in_(("open", "leased")))
        .scalar_subquery()
    )
    candidates = session.execute(
        sa.select(
            Item.id, Item.answer_count, Item.stopping_confidence, Item.gold_label.is_not(None)
        ).where(
            Item.project_id == project.id,
            Item.answer_count >= project.overlap,
            Item.stopping_confidence < project.confidence_target,
            Item.id.not_in(live),
        )
    ).all()
    gold = {item_id for item_id, _, _, is_gold in candidates if is_gold}
    wanted = [
        item_id
        for item_id, answers, stopping, _ in candidates
        if additional_answers(
            answers=answers,
            stopping_confidence=stopping,
            overlap=project.overlap,
            max_overlap=project.max_overlap,
            confidence_target=project.confidence_target,
        )
    ]
    if not wanted:
        return 0
    # The new slot goes to the batch (and workforce) that served the item last.
    last_slots = session.execute(
        sa.select(Assignment.item_id, Assignment.batch_id, Assignment.workforce_id)
        .where(Assignment.item_id.in_(wanted), Assignment.status == "answered")
        .order_by(Assignment.item_id, Assignment.id.desc())
    ).all()
    home: dict[int, tuple[int, int]] = {}
    for item_id, batch_id, workforce_id in last_slots:
        home.setdefault(item_id, (batch_id, workforce_id))
    on_demand = serving_gold_on_demand(session, {home[i][1] for i in gold if i in home})
    opened = 0
    prices: dict[int, Pricing] = {}
    for item_id in wanted:
        if item_id not in home:
            continue
        batch_id, workforce_id = home[item_id]
        is_gold = item_id in gold
        if is_gold and workforce_id in on_demand:
            continue  # the internal pool serves gold on demand, never as slots
        if workforce_id not in prices:
            prices[workforce_id] = pricing_for(
                session, project_id=project.id, workforce_id=workforce_id
            )
        # Within budget: each slot is stored before the next is reserved, so the budget
        # sees it; the first slot that does not fit stops the top-up.
        reserved = budgets.reserve_slot(
            session, project.id, workforce_id, gold=is_gold, pricing=prices[workforce_id]
        )
        if reserved is None:
            break
        session.execute(
            sa.insert(Assignment).values(
                batch_id=batch_id,
                item_id=item_id,
                project_id=project.id,
                workforce_id=workforce_id,
                is_gold=is_gold,
                status="open",
                reserved_micros=reserved,
                created_at=utcnow(),
            )
        )
        opened += 1
    return opened
