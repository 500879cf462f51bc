"""Idempotent requests, as Stripe does them: the first response is stored and replayed.

A request carrying an `Idempotency-Key` goes through three steps, each its own
transaction, so a racing duplicate never waits on (or joins) the first one's work:

1. `claim`: insert `(scope, key)` as `processing` with the request's fingerprint
   and commit. If the key is stored already, the answer comes from it: a different
   fingerprint is a 409, a `processing` row is a 409 (a request with this key is
   running), a `completed` row is replayed;
2. the request's own work, in the request's transaction, ending with `complete`,
   which stores the response in that same transaction: the answers and the stored
   response commit together, or neither does;
3. on any error, `release` deletes the claim, so a corrected retry with the same
   key runs afresh (errors are not stored: nothing happened).

A claim left `processing` by a process that died is taken over after
`STALE_CLAIM`. Keys expire after `retention` (7 days for anything that moves
money); `purge_expired` deletes them, and an expired key is free for reuse.
"""

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from orchestrator.db import utcnow
from orchestrator.errors import ConflictError
from orchestrator.models import IdempotencyKey

MONEY_RETENTION = timedelta(days=7)
DEFAULT_RETENTION = timedelta(hours=24)
STALE_CLAIM = timedelta(minutes=2)
T = IdempotencyKey.__table__


class IdempotencyConflictError(ConflictError):
    """The key was used with another request, or a request with it is still running."""

    code = "idempotency_conflict"


@dataclass(frozen=True)
class Claim:
    """This request owns the key: do the work, then `complete` or `release`."""

    id: int


@dataclass(frozen=True)
class Replay:
    """The key's stored response, to send again unchanged."""

    status: int
    body: dict[str, Any]


def fingerprint(method: str, path: str, query: dict[str, Any], body: Any) -> str:
    """Return the SHA-256 of a request's method, path, query and canonical JSON body."""
    canonical = json.dumps(
        [method.upper(), path, query, body], sort_keys=True, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim(
    session: Session,
    *,
    scope: str,
    key: str,
    request_hash: str,
    retention: timedelta = DEFAULT_RETENTION,
) -> Claim | Replay:
    """Claim a key for this request, or return the stored response to replay.

    Raises:
        IdempotencyConflictError: The key was used with a different request, or a
            request with it is still being processed.
    """
    now = utcnow()
    session.execute(sa.delete(T).where(T.c.scope == scope, T.c.key == key, T.c.expires_at <= now))
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[
        session.get_bind().dialect.name
    ](T)
    claimed = session.execute(
        insert.values(
            scope=scope,
            key=key,
            request_hash=request_hash,
            status="processing",
            created_at=now,
            locked_at=now,
            expires_at=now + retention,
        )
        .on_conflict_do_nothing(index_elements=["scope", "key"])
        .returning(T.c.id)
    ).scalar_one_or_none()
    if claimed is not None:
        return Claim(claimed)
    row = session.execute(sa.select(T).where(T.c.scope == scope, T.c.key == key)).one()
    if row.request_hash != request_hash:
        raise IdempotencyConflictError(
            "this Idempotency-Key was already used with a different request; "
            "use a new key for a new request",
            details={"Idempotency-Key": ["reused with a different request"]},
        )
    if row.status == "completed":
        return Replay(int(row.response_status), dict(row.response_body or {}))
    taken_over = session.execute(
        sa.update(T)
        .where(T.c.id == row.id, T.c.status == "processing", T.c.locked_at <= now - STALE_CLAIM)
        .values(locked_at=now)
    )
    if taken_over.rowcount == 1:
        return Claim(row.id)
    raise IdempotencyConflictError(
        "a request with this Idempotency-Key is still being processed; retry later",
        details={"Idempotency-Key": ["in progress"]},
    )


def complete(session: Session, owned: Claim, *, status: int, body: dict[str, Any]) -> None:
    """Store the response of a claimed request, in the request's own transaction."""
    session.execute(
        sa.update(T)
        .where(T.c.id == owned.id)
        .values(status="completed", response_status=status, response_body=body)
    )


def release(session: Session, owned: Claim) -> None:
    """Give up a claim after an error: nothing was stored, so the key is free again."""
    session.execute(sa.delete(T).where(T.c.id == owned.id, T.c.status == "processing"))


def purge_expired(session: Session) -> int:
    """Delete every expired key; return how many."""
    return int(session.execute(sa.delete(T).where(T.c.expires_at <= utcnow())).rowcount or 0)
