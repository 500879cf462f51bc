"""Bonuses: pay one worker, or every worker of a project above a gold accuracy, exactly once.

A request names its recipients, an amount and a reason, and carries a key (the
`Idempotency-Key` header or a client token). Paying happens in three steps, so
no transaction stays open while a connector talks to its workforce:

1. in one transaction, the request is recorded: a `bonus` row per recipient with
   a deterministic token, held against the budgets while pending (409 when the
   bonuses and their fees do not fit);
2. outside any transaction, each pending bonus goes through its workforce's
   connector (`pay_bonus(worker_ref, amount, reason=, token=, answer_refs=)`), which
   passes the token on (MTurk's UniqueRequestToken) so a repeated call never pays
   twice; `answer_refs` names the worker's newest answer in the project from our own
   records (MTurk attaches the bonus to that assignment);
3. in a second transaction, each paid bonus writes its ledger entries (keyed by
   the bonus, so a repeat writes nothing) and stops being held.

The same key again replays the stored result (`replayed`); with a different request
it is a 409. A request that finds the same key still being paid by another request
is a 409 too, and stores nothing. If a payment failed because the workforce was
unreachable, the bonus stays pending and the same key retries it.
"""

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from billing.money import format_amount, from_micros, to_micros
from connectors.base import ConnectorError, WorkforceUnavailableError
from orchestrator.db import unit_of_work, utcnow
from orchestrator.errors import ConflictError, InvalidInputError, NotFoundError
from orchestrator.models import Answer, Bonus, Worker, WorkerProject, Workforce
from orchestrator.services import audit, budgets, ledger
from orchestrator.services.keys import Principal
from orchestrator.services.projects import get_project
from orchestrator.services.rate_cards import pricing_for
from orchestrator.services.workforces import connector_for

# A pending bonus whose payment started this recently belongs to a request still running.
IN_PROGRESS = timedelta(seconds=60)


@dataclass(frozen=True)
class BonusRequest:
    """What to pay, to whom, why; exactly one of `worker_id` and `min_gold_accuracy`."""

    project_id: int
    amount: Decimal
    reason: str
    key: str
    worker_id: int | None = None
    min_gold_accuracy: float | None = None
    min_gold_answers: int | None = None

    def fingerprint(self) -> str:
        """A hash of the request's content: the same key must come with the same request."""
        body = {
            "amount": format_amount(self.amount),
            "reason": self.reason,
            "worker_id": self.worker_id,
            "min_gold_accuracy": self.min_gold_accuracy,
            "min_gold_answers": self.min_gold_answers,
        }
        return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class BonusOutcome:
    """The bonuses of one request, and whether this answer replays an earlier one."""

    project_id: int
    key: str
    amount: Decimal
    currency: str
    reason: str
    bonuses: list[dict[str, Any]]
    replayed: bool

    @property
    def total(self) -> Decimal:
        """What the request costs: bonuses plus fees, failed ones excluded."""
        return sum((b["cost"] for b in self.bonuses if b["status"] != "failed"), Decimal(0))


def token_for(project_id: int, key: str, worker_id: int) -> str:
    """The deterministic token a connector receives for one bonus (at most 64 characters)."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"qb-{project_id}-{worker_id}-{digest}"[:64]


def grant_bonuses(
    factory: sessionmaker[Session], request: BonusRequest, *, principal: Principal | None
) -> BonusOutcome:
    """Pay a bonus to one worker or to every qualifying worker of a project, idempotently.

    Raises:
        ConflictError: The key was used with another request, or is being paid right now.
        BudgetExceededError: The bonuses and their fees do not fit the budgets.
        WorkforceUnavailableError: A workforce could not be reached; retry with the same key.
        ConnectorError: Every payment was refused by its workforce.
    """
    with unit_of_work(factory) as session:
        to_pay, replayed = _record(session, request, principal)
    failures: dict[int, tuple[str, str]] = {}
    for bonus_id, workforce, worker_ref, amount, reason, token, answer_refs in to_pay:
        try:
            connector_for(workforce).pay_bonus(
                worker_ref, amount, reason=reason, token=token, answer_refs=answer_refs
            )
        except WorkforceUnavailableError as exc:
            failures[bonus_id] = ("pending", exc.message)
        except ConnectorError as exc:
            failures[bonus_id] = ("failed", exc.message)
    with unit_of_work(factory) as session:
        _settle(session, [item[0] for item in to_pay], failures)
        outcome = _outcome(session, request, replayed=replayed)
    unavailable = [message for status, message in failures.values() if status == "pending"]
    if unavailable:
        raise WorkforceUnavailableError(
            f"{len(unavailable)} bonus payments could not reach the workforce: {unavailable[0]}; "
            "retry with the same key",
        )
    if all(bonus["status"] == "failed" for bonus in outcome.bonuses):
        first = outcome.bonuses[0]["error"] or "refused"
        raise ConnectorError(f"the workforce refused the bonus: {first}")
    return outcome


def _record(
    session: Session, request: BonusRequest, principal: Principal | None
) -> tuple[list[tuple[int, Workforce, str, Decimal, str, str, tuple[str, ...]]], bool]:
    """Store the request's bonuses (or find them); return what to pay now and if replayed."""
    project = get_project(session, request.project_id, for_update=True)
    existing = list(
        session.scalars(
            sa.select(Bonus)
            .where(Bonus.project_id == project.id, Bonus.request_key == request.key)
            .order_by(Bonus.id)
        )
    )
    now = utcnow()
    replayed = bool(existing)
    if existing:
        if existing[0].request_hash != request.fingerprint():
            raise ConflictError(
                "this Idempotency-Key was used with a different request",
                details={"idempotency_key": ["reused with a different body"]},
            )
        pending = [bonus for bonus in existing if bonus.status == "pending"]
        if any(b.attempted_at is not None and now - b.attempted_at < IN_PROGRESS for b in pending):
            raise ConflictError(
                "a request with this Idempotency-Key is still being processed; retry later",
                details={"idempotency_key": ["in progress"]},
            )
    else:
        pending = _create(session, project.id, request, principal, now)
        audit.record(
            session,
            principal,
            "bonus.grant",
            "project",
            project.id,
            idempotency_key=request.key,
            bonuses=[bonus.id for bonus in pending],
        )
    for bonus in pending:
        bonus.attempted_at = now
    session.flush()
    workforces = {
        bonus.workforce_id: session.get(Workforce, bonus.workforce_id) for bonus in pending
    }
    refs = dict(
        session.execute(
            sa.select(Worker.id, Worker.external_id).where(
                Worker.id.in_([bonus.worker_id for bonus in pending])
            )
        ).all()
    )
    answer_refs = _newest_answer_refs(
        session, request.project_id, [bonus.worker_id for bonus in pending]
    )
    to_pay = []
    for bonus in pending:
        workforce = workforces[bonus.workforce_id]
        assert workforce is not None
        to_pay.append(
            (
                bonus.id,
                workforce,
                refs[bonus.worker_id],
                from_micros(bonus.amount_micros),
                bonus.reason,
                bonus.token,
                answer_refs.get(bonus.worker_id, ()),
            )
        )
    return to_pay, replayed


def _newest_answer_refs(
    session: Session, project_id: int, worker_ids: Sequence[int]
) -> dict[int, tuple[str, ...]]:
    """Return each worker's newest answer external id in the project (MTurk: an assignment)."""
    if not worker_ids:
        return {}
    newest = (
        sa.select(sa.func.max(Answer.id))
        .where(
            Answer.project_id == project_id,
            Answer.worker_id.in_(worker_ids),
            Answer.external_id.is_not(None),
        )
        .group_by(Answer.worker_id)
    )
    return {
        worker_id: (str(external_id),)
        for worker_id, external_id in session.execute(
            sa.select(Answer.worker_id, Answer.external_id).where(Answer.id.in_(newest))
        )
    }


def _recipients(session: Session, project_id: int, request: BonusRequest) -> list[Any]:
    """Return `(worker id, workforce id)` of the request's recipients."""
    if request.worker_id is not None:
        row = session.execute(
            sa.select(Worker.id, Worker.workforce_id)
            .join(WorkerProject, WorkerProject.worker_id == Worker.id)
            .where(Worker.id == request.worker_id, WorkerProject.project_id == project_id)
        ).one_or_none()
        if row is None:
            raise NotFoundError(
                f"worker {request.worker_id} has not worked on project {project_id}",
                details={"worker_id": ["not a worker of this project"]},
            )
        return [row]
    project = get_project(session, project_id)
    minimum = request.min_gold_answers or project.gold_min_answers
    threshold = request.min_gold_accuracy or 0.0
    rows = session.execute(
        sa.select(
            Worker.id, Worker.workforce_id, WorkerProject.gold_answers, WorkerProject.gold_correct
        )
        .join(WorkerProject, WorkerProject.worker_id == Worker.id)
        .where(
            WorkerProject.project_id == project_id,
            WorkerProject.status == "active",
            WorkerProject.gold_answers >= max(minimum, 1),
        )
        .order_by(Worker.id)
    ).all()
    # Compared in exact integers: correct / answers >= threshold.
    return [row for row in rows if row.gold_correct >= threshold * row.gold_answers]


def _create(
    session: Session,
    project_id: int,
    request: BonusRequest,
    principal: Principal | None,
    now: Any,
) -> list[Bonus]:
    recipients = _recipients(session, project_id, request)
    if not recipients:
        raise InvalidInputError(
            "no worker of the project qualifies for the bonus",
            details={"min_gold_accuracy": ["no active worker reaches it"]},
        )
    bonuses, spend = [], []
    for worker_id, workforce_id, *_ in recipients:
        price = pricing_for(session, project_id=project_id, workforce_id=workforce_id, at=now)
        entries = ledger.bonus_entries(
            amount=request.amount,
            price=price,
            project_id=project_id,
            workforce_id=workforce_id,
            worker_id=worker_id,
            occurred_at=now,
            memo=request.reason,
        )
        cost = sum((entry.amount for entry in entries), Decimal(0))
        spend.append((workforce_id, price.card.currency, cost))
        bonuses.append(
            Bonus(
                project_id=project_id,
                workforce_id=workforce_id,
                worker_id=worker_id,
                request_key=request.key,
                request_hash=request.fingerprint(),
                amount_micros=to_micros(request.amount),
                cost_micros=to_micros(cost),
                currency=price.card.currency,
                reason=request.reason,
                token=token_for(project_id, request.key, worker_id),
                status="pending",
                api_key_id=principal.key_id if principal else None,
                created_at=now,
            )
        )
    budgets.check_spend(session, project_id=project_id, spend=spend)
    session.add_all(bonuses)
    session.flush()
    return bonuses


def _settle(
    session: Session, bonus_ids: Sequence[int], failures: dict[int, tuple[str, str]]
) -> None:
    """Write the ledger entries of paid bonuses and record failures."""
    now = utcnow()
    for bonus in session.scalars(sa.select(Bonus).where(Bonus.id.in_(bonus_ids)).with_for_update()):
        if bonus.status != "pending":
            continue  # settled by a racing request already
        if bonus.id in failures:
            status, message = failures[bonus.id]
            bonus.status = status
            bonus.error = message[:500]
            bonus.attempted_at = None  # a retry with the same key may try again at once
            continue
        price = pricing_for(
            session,
            project_id=bonus.project_id,
            workforce_id=bonus.workforce_id,
            at=bonus.created_at,
        )
        ledger.record_bonus(
            session,
            bonus_id=bonus.id,
            amount=from_micros(bonus.amount_micros),
            price=price,
            project_id=bonus.project_id,
            workforce_id=bonus.workforce_id,
            worker_id=bonus.worker_id,
            occurred_at=now,
            memo=bonus.reason,
        )
        bonus.status = "paid"
        bonus.paid_at = now
        bonus.error = None
    session.flush()


def _outcome(session: Session, request: BonusRequest, *, replayed: bool) -> BonusOutcome:
    rows = session.execute(
        sa.select(Bonus, Worker.external_id)
        .join(Worker, Worker.id == Bonus.worker_id)
        .where(Bonus.project_id == request.project_id, Bonus.request_key == request.key)
        .order_by(Bonus.id)
    ).all()
    bonuses = [
        {
            "id": bonus.id,
            "worker_id": bonus.worker_id,
            "worker_ref": external_id,
            "workforce_id": bonus.workforce_id,
            "amount": from_micros(bonus.amount_micros),
            "fee": from_micros(bonus.cost_micros - bonus.amount_micros),
            "cost": from_micros(bonus.cost_micros),
            "status": bonus.status,
            "error": bonus.error,
            "paid_at": bonus.paid_at,
        }
        for bonus, external_id in rows
    ]
    first = rows[0][0]
    return BonusOutcome(
        project_id=request.project_id,
        key=request.key,
        amount=from_micros(first.amount_micros),
        currency=first.currency,
        reason=first.reason,
        bonuses=bonuses,
        replayed=replayed,
    )


def list_bonuses(session: Session, project_id: int) -> list[dict[str, Any]]:
    """Return every bonus of a project, oldest first."""
    get_project(session, project_id)
    rows = session.execute(
        sa.select(Bonus, Worker.external_id)
        .join(Worker, Worker.id == Bonus.worker_id)
        .where(Bonus.project_id == project_id)
        .order_by(Bonus.id)
    ).all()
    return [
        {
            "id": bonus.id,
            "idempotency_key": bonus.request_key,
            "worker_id": bonus.worker_id,
            "worker_ref": external_id,
            "workforce_id": bonus.workforce_id,
            "amount": from_micros(bonus.amount_micros),
            "fee": from_micros(bonus.cost_micros - bonus.amount_micros),
            "cost": from_micros(bonus.cost_micros),
            "currency": bonus.currency,
            "reason": bonus.reason,
            "status": bonus.status,
            "error": bonus.error,
            "created_at": bonus.created_at,
            "paid_at": bonus.paid_at,
        }
        for bonus, external_id in rows
    ]
