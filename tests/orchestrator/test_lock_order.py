"""Answer intake and re-aggregation lock rows in one order, so they wait instead of deadlocking.

Intake locks the answering worker's record and then the item; aggregation writes worker
skills and then item labels. The test stops an answer right after it has locked its
worker's record, lets an aggregation of the same project run into that lock, then lets the
answer go on. Had aggregation locked the items first, PostgreSQL would find a deadlock
after `deadlock_timeout` (1 s) and abort one of the two.
"""

import json
import threading
import time

import pytest
import sqlalchemy as sa

from orchestrator.api.common import SESSIONMAKER, SETTINGS
from orchestrator.app import create_app
from orchestrator.services import aggregation
from orchestrator.settings import Settings
from tests.conftest import fresh_postgres
from tests.support.live_server import create_key

WAIT = 20  # seconds: generous, nothing here should take more than a second


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _campaign(client, url: str) -> int:
    """Three items, overlap 2, dispatched to an internal pool; return the project id."""
    ops = _bearer(create_key(url, "ops"))
    project = client.post(
        "/api/v1/projects",
        json={"name": "locks", "labels": ["a", "b"], "overlap": 2, "gold_rate": 0.0},
        headers=ops,
    ).get_json()
    body = "".join(json.dumps({"external_id": f"i{n}", "data": {"n": n}}) + "\n" for n in range(3))
    imported = client.post(
        f"/api/v1/projects/{project['id']}/items",
        data=body,
        headers={**ops, "Content-Type": "application/x-ndjson"},
    )
    assert imported.status_code == 201, imported.get_json()
    workforce = client.post(
        "/api/v1/workforces", json={"name": "pool", "kind": "internal"}, headers=ops
    ).get_json()
    dispatched = client.post(
        f"/api/v1/projects/{project['id']}/batches",
        json={"workforce_id": workforce["id"], "batch_size": 10},
        headers=ops,
    )
    assert dispatched.status_code == 201, dispatched.get_json()
    return int(project["id"])


def _answer(client, worker: dict[str, str], label: str = "a") -> int:
    lease = client.get("/api/v1/tasks/next", headers=worker).get_json()["lease_id"]
    response = client.post(f"/api/v1/tasks/{lease}/answer", json={"label": label}, headers=worker)
    return response.status_code


@pytest.fixture
def app():
    with fresh_postgres() as url:
        app = create_app(Settings(database_url=url, scheduler_enabled=False))
        yield app
        app.extensions["orchestrator.engine"].dispose()


@pytest.mark.backend("postgresql")
def test_an_answer_and_an_aggregation_wait_for_each_other_without_deadlock(app):
    url = app.extensions[SETTINGS].database_url
    engine, sessions = app.extensions["orchestrator.engine"], app.extensions[SESSIONMAKER]
    client = app.test_client()
    project_id = _campaign(client, url)
    w1, w2 = (_bearer(create_key(url, "worker", worker=n, workforce="pool")) for n in ("w1", "w2"))
    assert [_answer(client, w1) for _ in range(3)] == [201, 201, 201]
    assert [_answer(client, w2) for _ in range(2)] == [201, 201]
    lease = client.get("/api/v1/tasks/next", headers=w2).get_json()["lease_id"]
    holds_worker, go_on = threading.Event(), threading.Event()
    outcome: dict[str, object] = {}

    def pause_before_item_lock(conn, cursor, statement, params, context, executemany):
        # Only the answering thread, where it holds its worker record and not yet its item.
        locking_items = "FROM item" in statement and "FOR NO KEY UPDATE" in statement
        if threading.current_thread() is answerer and locking_items:
            holds_worker.set()
            assert go_on.wait(WAIT)

    def answer() -> None:
        response = client.post(f"/api/v1/tasks/{lease}/answer", json={"label": "b"}, headers=w2)
        outcome["answer"] = (response.status_code, response.get_json())

    def aggregate() -> None:
        try:
            with sessions.begin() as session:
                outcome["aggregation"] = aggregation.aggregate_project(
                    session, project_id, force=True
                )
        except Exception as exc:  # reported by the assertions below
            outcome["aggregation"] = exc

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", pause_before_item_lock)
    answerer = threading.Thread(target=answer)
    aggregator = threading.Thread(target=aggregate)
    try:
        answerer.start()
        assert holds_worker.wait(WAIT), "the answer never reached its item lock"
        aggregator.start()
        assert _someone_waits_on_a_lock(engine), "aggregation did not wait for the answer"
        go_on.set()
        answerer.join(WAIT)
        aggregator.join(WAIT)
    finally:
        go_on.set()
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", pause_before_item_lock)
    assert not answerer.is_alive() and not aggregator.is_alive()
    assert outcome["answer"][0] == 201, outcome["answer"]
    assert isinstance(outcome["aggregation"], aggregation.RunSummary), outcome["aggregation"]
    assert outcome["aggregation"].items == 3


def _someone_waits_on_a_lock(engine) -> bool:
    """Whether, within WAIT seconds, a session of this database waits for a row lock."""
    deadline = time.monotonic() + WAIT
    with engine.connect() as conn:
        while time.monotonic() < deadline:
            waiting = conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            ).scalar_one()
            conn.rollback()
            if waiting:
                return True
            time.sleep(0.05)
    return False
