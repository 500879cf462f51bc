"""Many workers at once against a real multi-process server on PostgreSQL.

16 worker threads pull and answer over real HTTP from gunicorn (2 processes x
8 threads); the hand-out uses FOR UPDATE SKIP LOCKED. Every slot must be handed
out once, no worker may answer an item twice, every item must end with exactly
`overlap` answers, and no worker-facing response may reveal gold.
"""

import json
import threading

import pytest
import sqlalchemy as sa

from orchestrator.db import make_engine
from tests.conftest import fresh_postgres
from tests.support.http_client import ApiClient
from tests.support.live_server import create_key, running_server

WORKERS = 16
ITEMS, GOLD, OVERLAP = 60, 15, 3


@pytest.fixture(scope="module")
def live_postgres():
    with fresh_postgres() as url, running_server(url, workers=2, threads=4) as (base, _pid):
        yield url, base


@pytest.mark.backend("postgresql")
def test_sixteen_workers_at_once(live_postgres):
    url, base = live_postgres
    ops = ApiClient(base, create_key(url, "ops"))
    project = ops.post(
        "/api/v1/projects",
        {
            "name": "concurrency",
            "labels": ["cat", "dog"],
            "overlap": OVERLAP,
            "gold_rate": 0.2,
            "gold_min_answers": 1000,
        },
    ).body
    rows = [{"external_id": f"i{n}", "data": {"n": n}} for n in range(ITEMS)]
    rows += [
        {"external_id": f"g{n}", "data": {"n": 1000 + n}, "gold_label": "cat"} for n in range(GOLD)
    ]
    imported = ops.post(
        f"/api/v1/projects/{project['id']}/items",
        raw="".join(json.dumps(r) + "\n" for r in rows).encode(),
        content_type="application/x-ndjson",
    )
    assert imported.status == 201, imported.body
    workforce = ops.post("/api/v1/workforces", {"name": "internal", "kind": "internal"}).body
    dispatched = ops.post(
        f"/api/v1/projects/{project['id']}/batches",
        {"workforce_id": workforce["id"], "batch_size": 20},
    )
    assert dispatched.status == 201
    ops.close()

    keys = [create_key(url, "worker", worker=f"w{n}") for n in range(WORKERS)]
    received: list[dict] = []
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(WORKERS)

    def work(key: str) -> None:
        client = ApiClient(base, key)
        start.wait()
        try:
            serve(client)
        finally:
            client.close()

    def serve(client: ApiClient) -> None:
        while True:
            task = client.get("/api/v1/tasks/next")
            if task.status == 204:
                return
            if task.status != 200:
                errors.append(f"next: {task.status} {task.body}")
                return
            label = "cat" if task.body["data"]["n"] >= 1000 else "dog"
            answer = client.post(f"/api/v1/tasks/{task.body['lease_id']}/answer", {"label": label})
            if answer.status != 201:
                errors.append(f"answer: {answer.status} {answer.body}")
                return
            with lock:
                received.append({"task": task.body, "answer": answer.body})

    threads = [threading.Thread(target=work, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors, errors[:5]

    leases = [r["task"]["lease_id"] for r in received]
    assert len(leases) == len(set(leases)), "a lease was handed out twice"
    for r in received:
        assert "gold" not in json.dumps(r), r

    engine = make_engine(url)
    with engine.connect() as conn:
        per_item = conn.execute(
            sa.text(
                "SELECT a.item_id, count(*), count(DISTINCT a.worker_id) FROM answer a "
                "WHERE NOT a.is_gold GROUP BY a.item_id"
            )
        ).all()
        handed_twice = conn.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT item_id, worker_id FROM assignment "
                "WHERE worker_id IS NOT NULL GROUP BY item_id, worker_id HAVING count(*) > 1) t"
            )
        ).scalar()
        answers = conn.execute(sa.text("SELECT count(*) FROM answer")).scalar()
        gold_answers = conn.execute(sa.text("SELECT count(*) FROM answer WHERE is_gold")).scalar()
    engine.dispose()
    assert len(per_item) == ITEMS
    assert all(count == OVERLAP and distinct == OVERLAP for _, count, distinct in per_item)
    assert handed_twice == 0
    assert answers == len(received), "an answer was lost or stored twice"
    assert gold_answers > 0
    workers_used = {r["answer"]["answer_id"] for r in received}
    assert len(workers_used) == len(received)
