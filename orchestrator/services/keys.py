"""API keys: create, authenticate, rotate, revoke. Only a SHA-256 hash of a key is stored.

Rotation replaces a key without downtime: a new key with the same role, scope and
name is made, and the old one keeps working for an overlap window (24 hours by
default), so the holder can switch over before it expires. A rotation is never
replayed (the new secret is shown once and not stored); a retried rotation makes
one more key, and the old key's expiry only ever moves closer.
"""

import hashlib
import secrets
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.db import utcnow
from orchestrator.errors import (
    ConflictError,
    ForbiddenError,
    InvalidInputError,
    NotFoundError,
    UnauthenticatedError,
)
from orchestrator.models import ApiKey, Vendor, Worker, Workforce
from orchestrator.models.keys import ROLES

KEY_PREFIX = "qk_"
DEFAULT_INTERNAL_WORKFORCE = "internal"
DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=30)


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, its role and its vendor or worker scope."""

    key_id: int
    role: str
    vendor_id: int | None = None
    worker_id: int | None = None
    # When the key stops working (None: never), so a cached principal can expire too.
    expires_at: datetime | None = None


def hash_key(key: str) -> str:
    """Return the stored form of a key (keys are random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_secret() -> str:
    """Return a fresh random key secret."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(
    session: Session,
    *,
    role: str,
    name: str = "",
    vendor: str | None = None,
    worker: str | None = None,
    workforce: str = DEFAULT_INTERNAL_WORKFORCE,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Create a key and return it with its secret, which is never stored or shown again."""
    if role not in ROLES:
        raise InvalidInputError(
            f"unknown role {role!r}", details={"role": [f"must be one of {', '.join(ROLES)}"]}
        )
    if role == "vendor" and not vendor:
        raise InvalidInputError("a vendor key needs a vendor", details={"vendor": ["required"]})
    if role == "worker" and not worker:
        raise InvalidInputError("a worker key needs a worker", details={"worker": ["required"]})
    if role != "vendor" and vendor:
        raise InvalidInputError(
            "only vendor keys take a vendor", details={"vendor": ["only for --role vendor"]}
        )
    if role != "worker" and worker:
        raise InvalidInputError(
            "only worker keys take a worker", details={"worker": ["only for --role worker"]}
        )
    secret = new_secret()
    key = ApiKey(
        prefix=secret[:10],
        key_hash=hash_key(secret),
        role=role,
        name=name,
        vendor_id=ensure_vendor(session, vendor).id if vendor else None,
        worker_id=ensure_internal_worker(session, worker, workforce).id if worker else None,
        expires_at=expires_at,
    )
    session.add(key)
    session.flush()
    return key, secret


def ensure_vendor(session: Session, name: str) -> Vendor:
    """Return the vendor with this name, creating its record when it is new."""
    vendor = session.scalar(sa.select(Vendor).where(Vendor.name == name))
    if vendor is None:
        vendor = Vendor(name=name)
        session.add(vendor)
        session.flush()
    return vendor


def ensure_internal_worker(session: Session, external_id: str, workforce_name: str) -> Worker:
    """Return the internal-pool worker with this id, creating the pool and worker if needed."""
    workforce = session.scalar(sa.select(Workforce).where(Workforce.name == workforce_name))
    if workforce is None:
        workforce = Workforce(name=workforce_name, kind="internal", connector="internal")
        session.add(workforce)
        session.flush()
    elif workforce.kind != "internal":
        raise InvalidInputError(
            f"workforce {workforce_name!r} is a {workforce.kind} workforce, not internal",
            details={"workforce": ["worker keys belong to an internal workforce"]},
        )
    worker = session.scalar(
        sa.select(Worker).where(
            Worker.workforce_id == workforce.id, Worker.external_id == external_id
        )
    )
    if worker is None:
        worker = Worker(workforce_id=workforce.id, external_id=external_id)
        session.add(worker)
        session.flush()
    return worker


def authenticate(session: Session, secret: str) -> Principal:
    """Resolve a bearer secret to its principal; unknown, revoked or expired keys fail."""
    key = session.scalar(sa.select(ApiKey).where(ApiKey.key_hash == hash_key(secret)))
    now = utcnow()
    if key is None or key.revoked_at is not None:
        raise UnauthenticatedError("invalid API key")
    if key.expires_at is not None and key.expires_at <= now:
        raise UnauthenticatedError("API key expired")
    return Principal(key.id, key.role, key.vendor_id, key.worker_id, key.expires_at)


def key_status(key: ApiKey, now: datetime | None = None) -> str:
    """Return `active`, `expiring` (works until `expires_at`), `expired` or `revoked`."""
    now = now or utcnow()
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is None:
        return "active"
    return "expired" if key.expires_at <= now else "expiring"


def list_keys(
    session: Session, *, vendor_id: int | None = None, limit: int | None = None, offset: int = 0
) -> tuple[list[ApiKey], int]:
    """Return a page of keys (of one vendor, when given), newest first, and the total."""
    where = [] if vendor_id is None else [ApiKey.vendor_id == vendor_id]
    total = session.scalar(sa.select(sa.func.count(ApiKey.id)).where(*where))
    query = sa.select(ApiKey).where(*where).order_by(ApiKey.id.desc()).offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query)), int(total or 0)


def _managed_key(
    session: Session, key_id: int, *, vendor_id: int | None, roles: Collection[str] | None
) -> ApiKey:
    """Return a key for a change, locked; outside `vendor_id`'s keys it is not found."""
    key = session.scalar(sa.select(ApiKey).where(ApiKey.id == key_id).with_for_update())
    if key is None or (vendor_id is not None and key.vendor_id != vendor_id):
        raise NotFoundError(f"API key {key_id} not found")
    if roles is not None and key.role not in roles:
        raise ForbiddenError(
            f"key {key_id} is a {key.role} key; you may manage only {', '.join(roles)} keys"
        )
    return key


@dataclass(frozen=True)
class Rotation:
    """A rotated key: the new key and its secret (shown once), and the old key."""

    key: ApiKey
    secret: str
    previous: ApiKey
    # When the old key stops working.
    previous_expires_at: datetime


def rotate_key(
    session: Session,
    *,
    key_id: int,
    overlap: timedelta = DEFAULT_OVERLAP,
    vendor_id: int | None = None,
    roles: Collection[str] | None = None,
    now: datetime | None = None,
) -> Rotation:
    """Replace a key with a new one of the same role, scope and name; the old one expires.

    The old key keeps working for `overlap` from now, or less if it was due to expire
    sooner. `vendor_id` limits the change to that vendor's keys (any other is not
    found); `roles` to keys of those roles.

    Raises:
        NotFoundError: No such key (within `vendor_id`'s keys).
        ForbiddenError: The key's role is not in `roles`.
        ConflictError: The key is revoked or expired.
        InvalidInputError: `overlap` is negative or longer than 30 days.
    """
    if not timedelta(0) <= overlap <= MAX_OVERLAP:
        raise InvalidInputError(
            "overlap must be between 0 and 30 days",
            details={"overlap": [f"{overlap.total_seconds():.0f} s is out of range"]},
        )
    old = _managed_key(session, key_id, vendor_id=vendor_id, roles=roles)
    now = now or utcnow()
    status = key_status(old, now)
    if status in ("revoked", "expired"):
        raise ConflictError(
            f"API key {key_id} is {status}; only a working key can be rotated",
            details={"key": [status]},
        )
    secret = new_secret()
    new = ApiKey(
        prefix=secret[:10],
        key_hash=hash_key(secret),
        role=old.role,
        name=old.name,
        vendor_id=old.vendor_id,
        worker_id=old.worker_id,
    )
    session.add(new)
    ends = now + overlap
    if old.expires_at is not None and old.expires_at < ends:
        ends = old.expires_at  # never extended
    old.expires_at = ends
    session.flush()
    return Rotation(key=new, secret=secret, previous=old, previous_expires_at=ends)


def revoke_key(
    session: Session,
    *,
    key_id: int,
    vendor_id: int | None = None,
    roles: Collection[str] | None = None,
) -> ApiKey:
    """Revoke a key from now on (a revoked key stays revoked); scoped like `rotate_key`."""
    key = _managed_key(session, key_id, vendor_id=vendor_id, roles=roles)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        session.flush()
    return key
