"""The transactional outbox: record messages with the change that causes them, send them later.

`enqueue` only adds a row to the caller's transaction, so a message exists exactly
when its cause (a batch published, a batch cancelled) was committed. `deliver_due`,
run by the scheduler, sends due messages outside any open transaction:

1. claim (transaction 1): due rows become `sending` until `now + claim_seconds`, their
   `attempts` go up by one and a `delivery_attempt` row is written; commit;
2. send: sign and POST, with no transaction open;
3. record (transaction 2): the attempt's status code or error and duration, and the
   message's new state (delivered, retry at a backoff time, failed or disabled).

A sender killed between 2 and 3 leaves the message `sending`; once its claim expires
the next run sends it again with the same `webhook-id` (receivers deduplicate on it)
and marks the unrecorded try `abandoned`. So a message is never lost, and in a normal
run it is sent once. On PostgreSQL claims use `FOR UPDATE SKIP LOCKED`, so several
scheduler processes never claim the same message.
"""

import http.client
import os
import random
import secrets
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from connectors import webhooks
from orchestrator.db import utcnow
from orchestrator.errors import ConflictError, NotFoundError
from orchestrator.models import DeliveryAttempt, OutboxMessage, Workforce
from orchestrator.models.outbox import DUE_STATUSES

GONE_REASON = "the endpoint answered 410 Gone, so it is disabled; replay a delivery to retry it"
ABANDONED_REASON = "no result recorded (sender stopped); sent again with the same webhook-id"


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long a message is retried."""

    max_attempts: int = 10
    base_seconds: float = 30.0  # the first retry comes 15-30 s after the first failure
    max_seconds: float = 6 * 3600.0
    # A claim older than this is presumed dead and the message is sent again; it must
    # outlast the request timeout, or a slow endpoint would get the message twice.
    claim_seconds: int = 120
    timeout_seconds: float = 10.0

    def delay(self, attempts: int, rng: random.Random | Any = random) -> timedelta:
        """Return the wait before the next try after `attempts` failed ones.

        Exponential backoff with "equal jitter": half of base * 2**(attempts-1) is fixed
        and half random, so delays still grow with every failure while senders that
        failed together spread out.
        """
        full = min(self.max_seconds, self.base_seconds * 2 ** max(0, attempts - 1))
        return timedelta(seconds=full / 2 + rng.uniform(0, full / 2))


@dataclass(frozen=True)
class Claim:
    """A message claimed for one try: what to send, where, and how to sign it."""

    id: int
    message_id: str
    target: str
    payload: dict[str, Any]
    attempt: int
    secret_env: str | None


@dataclass(frozen=True)
class Result:
    """What one try got back: a status code, or an error when no response came."""

    status_code: int | None
    error: str | None
    duration_ms: int


def new_message_id() -> str:
    """Return a fresh message id (the `webhook-id`)."""
    return "msg_" + secrets.token_hex(12)


def enqueue(
    session: Session,
    *,
    event: str,
    target: str,
    payload: dict[str, Any],
    workforce_id: int | None = None,
    batch_id: int | None = None,
    now: datetime | None = None,
) -> OutboxMessage:
    """Add a message to the outbox in the caller's transaction (flush, never commit)."""
    now = now or utcnow()
    message = OutboxMessage(
        message_id=new_message_id(),
        kind="webhook",
        event=event,
        target=target,
        workforce_id=workforce_id,
        batch_id=batch_id,
        payload=payload,
        status="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    if workforce_id is not None and is_target_disabled(session, workforce_id, target):
        message.status = "disabled"
        message.last_error = GONE_REASON
    session.add(message)
    session.flush()
    return message


def is_target_disabled(session: Session, workforce_id: int, target: str) -> bool:
    """Whether an endpoint is disabled: its latest answered try was a 410 Gone."""
    latest = session.scalar(
        sa.select(DeliveryAttempt.outcome)
        .join(OutboxMessage, OutboxMessage.id == DeliveryAttempt.outbox_message_id)
        .where(
            OutboxMessage.workforce_id == workforce_id,
            OutboxMessage.target == target,
            DeliveryAttempt.status_code.is_not(None),
        )
        .order_by(DeliveryAttempt.id.desc())
        .limit(1)
    )
    return latest == "disabled"


def claim_due(
    session: Session, *, now: datetime, policy: RetryPolicy, limit: int = 100
) -> list[Claim]:
    """Claim due messages for one try each; the caller commits before sending."""
    due = (
        sa.select(OutboxMessage.id)
        .where(OutboxMessage.status.in_(DUE_STATUSES), OutboxMessage.next_attempt_at <= now)
        .order_by(OutboxMessage.next_attempt_at, OutboxMessage.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = session.execute(due.add_columns(OutboxMessage.status, OutboxMessage.attempts)).all()
    if not rows:
        return []
    # A claim that expired without a result: its sender stopped after (or before) sending.
    session.execute(
        sa.update(DeliveryAttempt)
        .where(
            DeliveryAttempt.outbox_message_id.in_([row.id for row in rows]),
            DeliveryAttempt.outcome == "sending",
        )
        .values(outcome="abandoned", error=ABANDONED_REASON)
    )
    # Such a message with its attempts used up fails, so a sender that keeps dying on
    # it (say, on a poison message) cannot retry it forever.
    exhausted = {
        row.id for row in rows if row.status == "sending" and row.attempts >= policy.max_attempts
    }
    if exhausted:
        session.execute(
            sa.update(OutboxMessage)
            .where(OutboxMessage.id.in_(exhausted))
            .values(
                status="failed",
                last_error=f"gave up after {policy.max_attempts} attempts; last: "
                + ABANDONED_REASON,
            )
            .execution_options(synchronize_session=False)
        )
    ids = [row.id for row in rows if row.id not in exhausted]
    if not ids:
        return []
    session.execute(
        sa.update(OutboxMessage)
        .where(OutboxMessage.id.in_(ids))
        .values(
            status="sending",
            attempts=OutboxMessage.attempts + 1,
            next_attempt_at=now + timedelta(seconds=policy.claim_seconds),
        )
        .execution_options(synchronize_session=False)
    )
    rows = session.execute(
        sa.select(
            OutboxMessage.id,
            OutboxMessage.message_id,
            OutboxMessage.target,
            OutboxMessage.payload,
            OutboxMessage.attempts,
            Workforce.config,
        )
        .outerjoin(Workforce, Workforce.id == OutboxMessage.workforce_id)
        .where(OutboxMessage.id.in_(ids))
        .order_by(OutboxMessage.id)
    ).all()
    session.execute(
        sa.insert(DeliveryAttempt),
        [{"outbox_message_id": row.id, "attempt": row.attempts, "started_at": now} for row in rows],
    )
    return [
        Claim(
            id=row.id,
            message_id=row.message_id,
            target=row.target,
            payload=row.payload,
            attempt=row.attempts,
            secret_env=(row.config or {}).get("webhook_secret_env"),
        )
        for row in rows
    ]


Sender = Callable[[str, Mapping[str, str], bytes], webhooks.Response]


def send(
    claim: Claim,
    *,
    environ: Mapping[str, str],
    post: Sender,
    clock: Callable[[], datetime] = utcnow,
) -> Result:
    """Sign and POST one claimed message (no transaction open); never raises for the endpoint."""
    started = time.perf_counter()

    def took() -> int:
        return round((time.perf_counter() - started) * 1000)

    value = environ.get(claim.secret_env, "") if claim.secret_env else ""
    keys = webhooks.split_secrets(value)
    if not keys:
        where = claim.secret_env or "webhook_secret_env (not configured on the workforce)"
        return Result(None, f"no signing secret: environment variable {where} is not set", 0)
    body = webhooks.encode_body(claim.payload)
    try:
        headers = webhooks.signed_headers(
            keys, claim.message_id, body, timestamp=int(clock().timestamp())
        )
    except ValueError as exc:
        return Result(None, f"bad signing secret in {claim.secret_env}: {exc}", 0)
    try:
        response = post(claim.target, headers, body)
    except (OSError, ValueError, http.client.HTTPException) as exc:
        return Result(None, f"{type(exc).__name__}: {exc}"[:500], took())
    return Result(response.status_code, None, took())


def record_result(
    session: Session,
    claim: Claim,
    result: Result,
    *,
    now: datetime,
    policy: RetryPolicy,
    rng: random.Random | Any = random,
) -> str:
    """Record one try and the message's next state; return the outcome."""
    code = result.status_code
    if code is not None and 200 <= code < 300:
        outcome, values = "delivered", {"status": "delivered", "delivered_at": now}
    elif code == 410:
        outcome, values = "disabled", {"status": "disabled", "last_error": GONE_REASON}
    else:
        error = result.error or f"endpoint answered HTTP {code}"
        if claim.attempt >= policy.max_attempts:
            reason = f"gave up after {claim.attempt} attempts; last: {error}"[:500]
            outcome, values = "failed", {"status": "failed", "last_error": reason}
        else:
            retry_at = now + policy.delay(claim.attempt, rng)
            outcome = "retry"
            values = {"status": "pending", "next_attempt_at": retry_at, "last_error": error}
    session.execute(
        sa.update(DeliveryAttempt)
        .where(
            DeliveryAttempt.outbox_message_id == claim.id,
            DeliveryAttempt.attempt == claim.attempt,
        )
        .values(
            outcome=outcome,
            status_code=code,
            error=result.error,
            duration_ms=result.duration_ms,
        )
    )
    # Only while our claim stands: if it expired and another sender took the message,
    # that sender records the message's state.
    owned = session.execute(
        sa.update(OutboxMessage)
        .where(
            OutboxMessage.id == claim.id,
            OutboxMessage.status == "sending",
            OutboxMessage.attempts == claim.attempt,
        )
        .values(**values)
        .execution_options(synchronize_session=False)
    ).rowcount
    if owned and outcome == "disabled":
        target = session.execute(
            sa.select(OutboxMessage.workforce_id, OutboxMessage.target).where(
                OutboxMessage.id == claim.id
            )
        ).one()
        session.execute(
            sa.update(OutboxMessage)
            .where(
                OutboxMessage.workforce_id == target.workforce_id,
                OutboxMessage.target == target.target,
                OutboxMessage.status == "pending",
            )
            .values(status="disabled", last_error=GONE_REASON)
            .execution_options(synchronize_session=False)
        )
    return outcome


def deliver_due(
    sessions: sessionmaker[Session],
    *,
    policy: RetryPolicy | None = None,
    clock: Callable[[], datetime] = utcnow,
    environ: Mapping[str, str] = os.environ,
    post: Sender | None = None,
    rng: random.Random | Any = random,
    limit: int = 100,
) -> dict[str, int]:
    """Send due messages: claim and commit, send outside any transaction, record each result."""
    policy = policy or RetryPolicy()
    if post is None:

        def post(url: str, headers: Mapping[str, str], body: bytes) -> webhooks.Response:
            return webhooks.post(url, headers, body, timeout=policy.timeout_seconds)

    with sessions.begin() as session:
        claims = claim_due(session, now=clock(), policy=policy, limit=limit)
    counts: Counter[str] = Counter()
    for claim in claims:
        result = send(claim, environ=environ, post=post, clock=clock)
        with sessions.begin() as session:
            counts[record_result(session, claim, result, now=clock(), policy=policy, rng=rng)] += 1
    return {
        "claimed": len(claims),
        "delivered": counts["delivered"],
        "retried": counts["retry"],
        "failed": counts["failed"],
        "disabled": counts["disabled"],
    }


def list_deliveries(
    session: Session, workforce_id: int, *, status: str | None, limit: int, offset: int
) -> tuple[list[OutboxMessage], dict[int, list[DeliveryAttempt]], int]:
    """Return a page of a workforce's messages (newest first), their tries, and the total."""
    if session.get(Workforce, workforce_id) is None:
        raise NotFoundError(f"workforce {workforce_id} not found")
    where = [OutboxMessage.workforce_id == workforce_id]
    if status is not None:
        where.append(OutboxMessage.status == status)
    total = session.scalar(sa.select(sa.func.count()).select_from(OutboxMessage).where(*where))
    messages = list(
        session.scalars(
            sa.select(OutboxMessage)
            .where(*where)
            .order_by(OutboxMessage.id.desc())
            .limit(limit)
            .offset(offset)
        )
    )
    tries: dict[int, list[DeliveryAttempt]] = {m.id: [] for m in messages}
    if tries:
        for attempt in session.scalars(
            sa.select(DeliveryAttempt)
            .where(DeliveryAttempt.outbox_message_id.in_(list(tries)))
            .order_by(DeliveryAttempt.attempt)
        ):
            tries[attempt.outbox_message_id].append(attempt)
    return messages, tries, int(total or 0)


def list_attempts(session: Session, message_pk: int) -> list[DeliveryAttempt]:
    """Return every try of one message, first first."""
    return list(
        session.scalars(
            sa.select(DeliveryAttempt)
            .where(DeliveryAttempt.outbox_message_id == message_pk)
            .order_by(DeliveryAttempt.attempt)
        )
    )


def get_delivery(session: Session, workforce_id: int, delivery_id: int) -> OutboxMessage:
    """Return a workforce's message or raise NotFoundError."""
    message = session.get(OutboxMessage, delivery_id)
    if message is None or message.workforce_id != workforce_id:
        raise NotFoundError(f"delivery {delivery_id} not found")
    return message


def replay(
    session: Session, workforce_id: int, delivery_id: int, *, now: datetime | None = None
) -> OutboxMessage:
    """Schedule one more try of a message now, with the same webhook-id (flush, never commit).

    Any message can be replayed (delivered, failed, disabled or waiting); one being sent
    right now is a conflict. A replayed message that fails again with its attempts used
    up is marked failed after that one try.
    """
    message = session.scalar(
        sa.select(OutboxMessage)
        .where(OutboxMessage.id == delivery_id, OutboxMessage.workforce_id == workforce_id)
        .with_for_update()
    )
    if message is None:
        raise NotFoundError(f"delivery {delivery_id} not found")
    now = now or utcnow()
    if message.status == "sending" and message.next_attempt_at > now:
        raise ConflictError(f"delivery {delivery_id} is being sent right now; try again soon")
    message.status = "pending"
    message.next_attempt_at = now
    session.flush()
    return message
