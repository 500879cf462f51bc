"""Several API processes and two schedulers on one PostgreSQL database, driving a campaign.

Workers pull and answer over real HTTP from gunicorn (2 processes) while two
`quorum scheduler` processes run every job each second. Each job must run once per
tick, no slot may be handed out twice, no acknowledged answer may be lost, dynamic
overlap must top up the uncertain items and leave the confident ones at `overlap`, and
/metrics must reflect the work.
"""

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
import sqlalchemy as sa

from orchestrator.db import make_engine
from tests.conftest import fresh_postgres
from tests.support.http_client import ApiClient
from tests.support.live_server import ROOT, create_key, running_server

ITEMS, UNSURE = 16, 8  # items n < UNSURE get split answers; the rest are unanimous
SPLIT = ["cat", "dog", "cat", "dog", "cat"]


@pytest.fixture(scope="module")
def live():
    with fresh_postgres() as url:
        env = {
            **os.environ,
            "DATABASE_URL": url,
            "QUORUM_EXPIRE_INTERVAL": "1",
            "QUORUM_AGGREGATE_INTERVAL": "1",
            "QUORUM_CLOSE_INTERVAL": "1",
        }
        schedulers = [
            subprocess.Popen(
                [sys.executable, "-m", "orchestrator.cli", "scheduler"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        try:
            with running_server(url, workers=2, threads=4) as (base, _pid):
                yield url, base
        finally:
            for process in schedulers:
                process.terminate()
                process.wait(timeout=30)


def metric(text: str, name: str, **labels: str) -> float:
    rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    match = re.search(
        "^" + re.escape(f"{name}{{{rendered}}}" if labels else name) + r" (\S+)$", text, re.M
    )
    return float(match.group(1)) if match else 0.0


@pytest.mark.backend("postgresql")
def test_campaign_across_api_processes_and_two_schedulers(live):
    url, base = live
    ops = ApiClient(base, create_key(url, "ops"))
    project = ops.post(
        "/api/v1/projects",
        {
            "name": "multiprocess",
            "labels": ["cat", "dog"],
            "overlap": 3,
            "max_overlap": 5,
            "confidence_target": 0.9,
            "gold_rate": 0.0,
        },
    ).body
    rows = "".join(
        json.dumps({"external_id": f"i{n}", "data": {"n": n}}) + "\n" for n in range(ITEMS)
    )
    assert (
        ops.post(
            f"/api/v1/projects/{project['id']}/items",
            raw=rows.encode(),
            content_type="application/x-ndjson",
        ).status
        == 201
    )
    workforce = ops.post("/api/v1/workforces", {"name": "internal", "kind": "internal"}).body
    assert (
        ops.post(
            f"/api/v1/projects/{project['id']}/batches", {"workforce_id": workforce["id"]}
        ).status
        == 201
    )

    given: dict[int, int] = {}
    acknowledged: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def work(key: str) -> None:
        client = ApiClient(base, key)
        idle_since = None
        try:
            while time.monotonic() < deadline:
                task = client.get("/api/v1/tasks/next")
                if task.status == 204:
                    idle_since = idle_since or time.monotonic()
                    if time.monotonic() - idle_since > 5:  # several scheduler ticks, no top-up
                        return
                    time.sleep(0.3)
                    continue
                idle_since = None
                n = task.body["data"]["n"]
                with lock:
                    index = given.get(n, 0)
                    given[n] = index + 1
                label = SPLIT[index] if n < UNSURE else "dog"
                answer = client.post(
                    f"/api/v1/tasks/{task.body['lease_id']}/answer", {"label": label}
                )
                if answer.status != 201:
                    errors.append(f"{answer.status} {answer.body}")
                    return
                with lock:
                    acknowledged.append(task.body["lease_id"])
        finally:
            client.close()

    threads = [
        threading.Thread(target=work, args=(create_key(url, "worker", worker=f"w{i}"),))
        for i in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[:3]
    metrics = ops.get("/metrics")
    ops.close()

    engine = make_engine(url)
    with engine.connect() as conn:
        answers = dict(
            conn.execute(
                sa.text(
                    "SELECT i.external_id, count(*) FROM answer a JOIN item i ON i.id = a.item_id "
                    "WHERE a.status = 'accepted' GROUP BY i.external_id"
                )
            ).all()
        )
        stored = conn.execute(sa.text("SELECT count(*) FROM answer")).scalar()
        twice = conn.execute(
            sa.text(
                "SELECT count(*) FROM (SELECT item_id, worker_id FROM assignment "
                "WHERE worker_id IS NOT NULL GROUP BY item_id, worker_id HAVING count(*) > 1) t"
            )
        ).scalar()
        runs = conn.execute(sa.text("SELECT job, tick, runner FROM job_run")).all()
        aggregations = conn.execute(sa.text("SELECT count(*) FROM aggregation_run")).scalar()
        confidence = conn.execute(
            sa.text("SELECT external_id, answer_count, stopping_confidence FROM item")
        ).all()
    engine.dispose()

    assert len(acknowledged) == len(set(acknowledged)), "a lease was handed out twice"
    assert twice == 0
    assert stored == len(acknowledged), "an acknowledged answer was lost or stored twice"
    jobs = {job for job, _, _ in runs}
    assert {"expire_leases", "refresh_results", "close_batches"} <= jobs
    assert len(runs) == len({(job, tick) for job, tick, _ in runs})  # once per tick
    assert aggregations >= 1
    # Dynamic overlap decides from the aggregated posterior: every item left at `overlap`
    # answers is confident, split items were topped up, and none passed max_overlap.
    # (Not "split items got more answers than unanimous ones": the second answer of
    # every split item disagrees, so a worker who often answers second earns a poor
    # record, and a 2-1 split against them is rightly confident at 3 answers.)
    for external_id, count, stopping in confidence:
        assert count <= 5, external_id
        if count == 3:
            assert stopping >= 0.9, (external_id, stopping)
    split = [answers[f"i{n}"] for n in range(UNSURE)]
    assert any(count > 3 for count in split), split
    text = metrics.raw.decode()
    assert metrics.status == 200
    assert metric(text, "quorum_answers_total", status="accepted") == stored
    assert metric(text, "quorum_hand_outs_total") == len(acknowledged)
    assert metric(text, "quorum_aggregation_runs_total") == aggregations
    assert metric(text, "quorum_slots", status="open") == 0
