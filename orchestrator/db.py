"""Database plumbing: declarative base, engines with the SQLite fixes, sessions."""

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# JSON documents: JSONB on PostgreSQL (indexable, compact), JSON text elsewhere.
JSONDocument = sa.JSON().with_variant(JSONB(), "postgresql")


class Base(DeclarativeBase):
    """Declarative base for every Quorum table."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    """Return the current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; on SQLite enable foreign keys and real transactions (SAVEPOINTs)."""
    if url.startswith("sqlite"):
        _ensure_sqlite_directory(url)
        kwargs.setdefault("connect_args", {"timeout": 30})
    engine = sa.create_engine(url, **kwargs)
    if engine.dialect.name == "sqlite":
        _install_sqlite_hooks(engine)
    return engine


def _ensure_sqlite_directory(url: str) -> None:
    path = sa.engine.make_url(url).database
    if path and path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _install_sqlite_hooks(engine: Engine) -> None:
    # sqlite3's legacy transaction mode keeps SAVEPOINTs out of the enclosing
    # transaction; take control of BEGIN ourselves (see SQLAlchemy's SQLite docs).
    # BEGIN IMMEDIATE takes the write lock up front: two threads that read and then
    # write (a task hand-out) queue on busy_timeout instead of one failing with
    # "database is locked" when it tries to upgrade a stale read snapshot.
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    """Return the session factory used by requests, jobs and the CLI."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """Open one transaction: commit on success, roll back on any exception."""
    with factory.begin() as session:
        yield session


BULK_WRITE_ROWS = 1000
"""Rows a bulk write must add before it refreshes the tables' planner statistics."""


def refresh_statistics(session: Session, rows_written: int, *tables: type[Base]) -> None:
    """After a bulk write on PostgreSQL, re-read the planner statistics of `tables`.

    PostgreSQL plans from sampled statistics that autovacuum refreshes only about a
    minute after a change. Until then a freshly dispatched or imported table looks
    empty to the planner, and the hand-out's queries pick plans that scan every slot.
    ANALYZE samples a bounded number of rows, sees this transaction's own rows, and
    blocks neither reads nor writes. Nothing happens below `BULK_WRITE_ROWS` rows.
    """
    if rows_written < BULK_WRITE_ROWS or session.get_bind().dialect.name != "postgresql":
        return
    names = ", ".join(table.__table__.name for table in tables)  # type: ignore[attr-defined]
    session.execute(sa.text(f"ANALYZE {names}"))


# Text no backend can store: NUL (PostgreSQL refuses it) and unpaired UTF-16 surrogates,
# which a JSON "\\ud800" escape decodes to and which cannot be encoded as UTF-8.
_UNSTORABLE_CHARACTER = re.compile("[\x00\ud800-\udfff]")
UNSTORABLE_TEXT_MESSAGE = (
    "must not contain NUL (\\u0000) characters or unpaired surrogates (\\ud800-\\udfff)"
)


def is_storable_text(text: str) -> bool:
    """Whether a string can be stored on every backend (no NUL, no unpaired surrogate)."""
    return _UNSTORABLE_CHARACTER.search(text) is None


def has_unstorable_text(value: Any) -> bool:
    """Whether a JSON-like value holds a string (key or value) that no backend can store."""
    if isinstance(value, str):
        return not is_storable_text(value)
    if isinstance(value, dict):
        return any(has_unstorable_text(k) or has_unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_unstorable_text(v) for v in value)
    return False
