"""A process killed with SIGKILL in dispatch, aggregation or a webhook send stays consistent.

Each unit of work is one transaction, so a kill at any point inside it rolls the whole
unit back: nothing half-done stays behind, and running it again finishes the work
exactly once. The child process is killed while PostgreSQL shows its transaction open.
"""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa

from connectors.webhooks import verify_signature
from orchestrator.db import make_engine, make_sessionmaker, unit_of_work
from orchestrator.services import (
    aggregation,
    dispatch,
    items,
    outbox,
    projects,
    rate_cards,
    workforces,
)
from tests.conftest import fresh_postgres
from tests.support.live_server import ROOT

ITEMS = 20_000


@pytest.fixture
def database():
    with fresh_postgres() as url:
        engine = make_engine(url)
        try:
            yield url, engine
        finally:
            engine.dispose()


def set_up(engine) -> tuple[int, int]:
    with unit_of_work(make_sessionmaker(engine)) as session:
        project = projects.create_project(session, name="crash", labels=["a", "b"], overlap=3)
        rows = ((n + 1, {"external_id": f"i{n}", "data": {"n": n}}) for n in range(ITEMS))
        items.import_items(session, project.id, rows, chunk_size=5000)
        workforce = workforces.create_workforce(session, name="internal", kind="internal")
        return project.id, workforce.id


def kill_inside_transaction(url: str, code: str) -> None:
    """Run `code` in a child process and SIGKILL it while its transaction is open."""
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
    )
    engine = make_engine(url)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            with engine.connect() as conn:
                inside = conn.execute(
                    sa.text(
                        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                        "AND pid <> pg_backend_pid() AND xact_start IS NOT NULL "
                        "AND now() - xact_start > interval '200 milliseconds'"
                    )
                ).scalar()
            if inside:
                break
            assert child.poll() is None, "the child finished before it could be killed"
            time.sleep(0.05)
        else:
            raise AssertionError("the child never opened a transaction")
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
        assert child.returncode == -signal.SIGKILL
    finally:
        engine.dispose()


def count(engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar() or 0)


@pytest.mark.backend("postgresql")
def test_dispatch_killed_midway_leaves_nothing_and_redo_is_exact(database):
    url, engine = database
    project_id, workforce_id = set_up(engine)
    kill_inside_transaction(
        url,
        f"""
        from orchestrator.db import make_engine, make_sessionmaker, unit_of_work
        from orchestrator.services import dispatch
        import os
        with unit_of_work(make_sessionmaker(make_engine(os.environ["DATABASE_URL"]))) as s:
            dispatch.dispatch(s, {project_id}, workforce_id={workforce_id}, batch_size=100)
    """,
    )
    time.sleep(0.5)  # the server notices the dead connection and rolls back
    assert count(engine, "SELECT count(*) FROM batch") == 0
    assert count(engine, "SELECT count(*) FROM assignment") == 0
    with unit_of_work(make_sessionmaker(engine)) as session:
        batches = dispatch.dispatch(session, project_id, workforce_id=workforce_id, batch_size=1000)
    assert len(batches) == ITEMS // 1000
    assert count(engine, "SELECT count(*) FROM assignment") == ITEMS * 3
    assert (
        count(
            engine,
            "SELECT count(*) FROM (SELECT item_id FROM assignment GROUP BY item_id "
            "HAVING count(*) <> 3) t",
        )
        == 0
    )


@pytest.mark.backend("postgresql")
def test_aggregation_killed_midway_leaves_the_last_results_and_redo_is_exact(database):
    url, engine = database
    project_id, workforce_id = set_up(engine)
    with unit_of_work(make_sessionmaker(engine)) as session:
        session.execute(
            sa.text(
                "INSERT INTO worker (workforce_id, external_id, status, gold_answers, "
                "gold_correct, created_at) "
                "SELECT :wf, 'w' || g, 'active', 0, 0, now() FROM generate_series(1, 30) g"
            ),
            {"wf": workforce_id},
        )
        # Three answers per item from three of the thirty workers; most say "a".
        session.execute(
            sa.text(
                "INSERT INTO answer (item_id, project_id, workforce_id, worker_id, label, status, "
                "is_gold, created_at) "
                "SELECT i.id, i.project_id, :wf, w.id, "
                "CASE WHEN (i.id + k) % 7 = 0 THEN 'b' ELSE 'a' END, "
                "'accepted', false, now() FROM item i CROSS JOIN generate_series(0, 2) k "
                "JOIN worker w ON w.external_id = 'w' || (1 + (i.id * 3 + k) % 30)"
            ),
            {"wf": workforce_id},
        )
    kill_inside_transaction(
        url,
        f"""
        from orchestrator.db import make_engine, make_sessionmaker, unit_of_work
        from orchestrator.services import aggregation
        import os
        with unit_of_work(make_sessionmaker(make_engine(os.environ["DATABASE_URL"]))) as s:
            aggregation.aggregate_project(s, {project_id})
    """,
    )
    time.sleep(0.5)
    assert count(engine, "SELECT count(*) FROM aggregation_run") == 0
    assert count(engine, "SELECT count(*) FROM item WHERE label IS NOT NULL") == 0
    with unit_of_work(make_sessionmaker(engine)) as session:
        summary = aggregation.aggregate_project(session, project_id)
    assert summary.ran and summary.answers == ITEMS * 3
    assert count(engine, "SELECT count(*) FROM aggregation_run") == 1
    assert count(engine, "SELECT count(*) FROM item WHERE label IS NOT NULL") == ITEMS


SECRET_ENV = "QUORUM_TEST_CRASH_WEBHOOK_SECRET"
SECRET = "whsec_c2VjcmV0LWtleS1mb3ItY3Jhc2gtdGVzdHM="


class SlowFirstReceiver(ThreadingHTTPServer):
    """Records every webhook; holds the first one open so its sender can be killed mid-send."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _ReceiverHandler)
        self.received: list[dict[str, str]] = []
        self.first_arrived = threading.Event()
        self.release = threading.Event()


class _ReceiverHandler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        server = self.server
        assert isinstance(server, SlowFirstReceiver)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        server.received.append(
            {**{k.lower(): v for k, v in self.headers.items()}, "body": body.decode()}
        )
        if len(server.received) == 1:
            server.first_arrived.set()
            server.release.wait(timeout=30)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        """Keep test output quiet."""


@pytest.mark.backend("postgresql")
def test_webhook_sender_killed_mid_send_resends_once_with_the_same_id(database):
    url, engine = database
    receiver = SlowFirstReceiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            project = projects.create_project(session, name="hooks", labels=["a", "b"], overlap=1)
            rows = ((n + 1, {"external_id": f"i{n}", "data": {"n": n}}) for n in range(3))
            items.import_items(session, project.id, rows)
            workforce = workforces.create_workforce(
                session,
                name="acme-wf",
                kind="vendor",
                vendor="acme",
                config={
                    "handoff": "webhook",
                    "webhook_secret_env": SECRET_ENV,
                    "webhook_url": f"http://127.0.0.1:{receiver.server_port}/hooks",
                },
            )
            rate_cards.create_rate_card(
                session, workforce_id=workforce.id, price_per_answer=Decimal("0.10")
            )
            dispatch.dispatch(session, project.id, workforce_id=workforce.id)
        child = subprocess.Popen(
            [
                sys.executable,
                "-c",
                textwrap.dedent("""
                import os
                from orchestrator.db import make_engine, make_sessionmaker
                from orchestrator.services import outbox
                sessions = make_sessionmaker(make_engine(os.environ["DATABASE_URL"]))
                outbox.deliver_due(sessions, policy=outbox.RetryPolicy(claim_seconds=2))
            """),
            ],
            cwd=ROOT,
            env={**os.environ, "DATABASE_URL": url, SECRET_ENV: SECRET},
        )
        assert receiver.first_arrived.wait(timeout=60), "the webhook was never sent"
        os.kill(child.pid, signal.SIGKILL)  # the sender waits for the receiver's answer
        child.wait(timeout=30)
        receiver.release.set()
        assert count(engine, "SELECT count(*) FROM outbox_message WHERE status = 'sending'") == 1
        time.sleep(2.5)  # the dead sender's claim expires
        sessions = make_sessionmaker(engine)
        policy = outbox.RetryPolicy(claim_seconds=2)
        sent = outbox.deliver_due(sessions, policy=policy, environ={SECRET_ENV: SECRET})
        assert sent["delivered"] == 1
        assert outbox.deliver_due(sessions, policy=policy, environ={SECRET_ENV: SECRET}) == {
            **sent,
            **{key: 0 for key in sent},
        }  # nothing left to send
    finally:
        receiver.release.set()
        receiver.shutdown()
        receiver.server_close()
    assert len(receiver.received) == 2
    first, second = receiver.received
    assert first["webhook-id"] == second["webhook-id"] and first["body"] == second["body"]
    for request in receiver.received:
        verify_signature(SECRET, request, request["body"].encode(), tolerance=300)
    assert count(engine, "SELECT count(*) FROM outbox_message WHERE status = 'delivered'") == 1
    with engine.connect() as conn:
        outcomes = sorted(conn.scalars(sa.text("SELECT outcome FROM delivery_attempt")))
    assert outcomes == ["abandoned", "delivered"]
