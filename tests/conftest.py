"""Shared fixtures: every database test runs on SQLite and on PostgreSQL.

PostgreSQL: `QUORUM_TEST_POSTGRES_URL` names a fresh database to use (`.ci/run` creates
one per run). Without it, the tests create a throwaway database on the local server
(`QUORUM_TEST_POSTGRES_SERVER`, default postgres@127.0.0.1:5432) and drop it at the end.
Tests against a live server (gunicorn, several processes) get databases of their own.
When `CI=true`, an unreachable PostgreSQL fails the run instead of skipping it.
"""

import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import migrate
from orchestrator.api.common import SESSIONMAKER
from orchestrator.app import create_app
from orchestrator.db import make_engine
from orchestrator.services import keys
from orchestrator.settings import Settings
from tests.support.live_server import create_pg_database

IS_CI = os.environ.get("CI", "").lower() == "true"
_backend_outcomes: Counter[tuple[str, str]] = Counter()


def _create_pg_database() -> tuple[str, Callable[[], None]]:
    """Return the URL of a fresh PostgreSQL database and a function that drops it."""
    given = os.environ.get("QUORUM_TEST_POSTGRES_URL")
    if given:
        return given, lambda: None
    return create_pg_database()


def _reachable(
    create: Callable[[], tuple[str, Callable[[], None]]], skipped: str
) -> tuple[str, Callable[[], None]]:
    """Create a PostgreSQL database with `create`.

    Unreachable PostgreSQL fails when `CI=true` (CI must run the PostgreSQL tests) and
    skips otherwise, so a developer without a local PostgreSQL still runs the rest.
    """
    try:
        return create()
    except sa.exc.OperationalError as exc:
        if IS_CI:
            pytest.fail(f"CI=true but PostgreSQL is unreachable: {exc}", pytrace=False)
        pytest.skip(f"{skipped}: {exc}")


@contextmanager
def fresh_postgres() -> Iterator[str]:
    """A new, migrated PostgreSQL database of its own, for a live-server test."""
    url, drop = _reachable(create_pg_database, "PostgreSQL unreachable")
    try:
        migrate.upgrade(url)
        yield url
    finally:
        drop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test run."""
    url, drop = _reachable(_create_pg_database, "PostgreSQL unreachable, PostgreSQL tests not run")
    yield url
    drop()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The URL of a migrated test database, once per backend."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'quorum.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[Engine]:
    """An engine on the migrated test database."""
    engine = make_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def connection(engine: Engine) -> Iterator[Connection]:
    """A connection whose outer transaction is rolled back after the test."""
    with engine.connect() as conn:
        outer = conn.begin()
        yield conn
        outer.rollback()


@pytest.fixture
def sessions(connection: Connection) -> sessionmaker[Session]:
    """Sessions that work in savepoints inside the test's transaction."""
    return sessionmaker(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    )


@pytest.fixture
def session(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """One session for arranging and inspecting test data."""
    with sessions() as session:
        yield session


@pytest.fixture
def app(database_url: str, sessions: sessionmaker[Session]) -> Flask:
    """The app, with its sessions bound to the test's transaction."""
    app = create_app(Settings(database_url=database_url, scheduler_enabled=False))
    app.extensions[SESSIONMAKER] = sessions
    return app


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client for the app."""
    return app.test_client()


@pytest.fixture
def make_key(sessions: sessionmaker[Session]) -> Callable[..., dict[str, str]]:
    """Create an API key and return the Authorization header that carries it."""

    def make(role: str = "ops", **scope: Any) -> dict[str, str]:
        with sessions.begin() as session:
            _, secret = keys.create_key(session, role=role, **scope)
        return {"Authorization": f"Bearer {secret}"}

    return make


@pytest.fixture
def ops(make_key: Callable[..., dict[str, str]]) -> dict[str, str]:
    """Headers of an ops key."""
    return make_key("ops")


def backend_of(item: pytest.Item) -> str | None:
    """Return the database backend a test ran on, if any."""
    marker = item.get_closest_marker("backend")
    if marker is not None:
        return str(marker.args[0])
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("database_url") if callspec else None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        backend = report.user_properties and dict(report.user_properties).get("backend")
        _backend_outcomes[(str(backend or "none"), report.outcome)] += 1


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> None:
    backend = backend_of(item)
    if backend and ("backend", backend) not in item.user_properties:
        item.user_properties.append(("backend", backend))


def pytest_terminal_summary(terminalreporter: Any) -> None:
    lines = []
    for backend in ("sqlite", "postgresql", "none"):
        counts = {o: n for (b, o), n in _backend_outcomes.items() if b == backend}
        if counts:
            label = backend if backend != "none" else "no database"
            lines.append(f"{label}: " + ", ".join(f"{n} {o}" for o, n in sorted(counts.items())))
    terminalreporter.write_sep("=", "tests per database backend")
    for line in lines:
        terminalreporter.write_line(line)
