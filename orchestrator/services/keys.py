"""API keys: create, authenticate, revoke. Only a SHA-256 hash of a key is stored."""

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.db import utcnow
from orchestrator.errors import InvalidInputError, NotFoundError, UnauthenticatedError
from orchestrator.models import ApiKey, Vendor, Worker, Workforce
from orchestrator.models.keys import ROLES

KEY_PREFIX = "qk_"
DEFAULT_INTERNAL_WORKFORCE = "internal"


@dataclass(frozen=True)
class Principal:
    """Who is calling: the key's id, its role and its vendor or worker scope."""

    key_id: int
    role: str
    vendor_id: int | None = None
    worker_id: int | None = None


def hash_key(key: str) -> str:
    """Return the stored form of a key (keys are random, so a plain SHA-256 suffices)."""
    return hashlib.sha256(key.encode()).hexdigest()


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
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
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
    return Principal(key.id, key.role, key.vendor_id, key.worker_id)


def list_keys(session: Session) -> list[ApiKey]:
    """Return every key, newest first (hashes only, never secrets)."""
    return list(session.scalars(sa.select(ApiKey).order_by(ApiKey.id.desc())))


def revoke_key(session: Session, *, key_id: int) -> ApiKey:
    """Revoke a key from now on."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise NotFoundError(f"API key {key_id} not found")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
    return key
