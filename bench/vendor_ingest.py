"""Benchmark: vendor answers accepted through the bulk endpoint vs raw executemany inserts.

A fresh PostgreSQL database and a real gunicorn server with several processes. Ops
sets up a project (10% gold), a vendor workforce with a rate card, and dispatches
the items in a few batches. Client threads then POST the answers (each task gets
`overlap` answers from distinct vendor workers; gold answered right, so nobody is
blocked) to `POST /api/v1/vendor/batches/{id}/answers` in requests of
`--rows-per-request` rows (by default the most one request may carry, as a vendor
uploading a backlog would send them), each with its own Idempotency-Key. Every row must be
accepted. The baseline inserts the same answer rows, read back from the database,
into a scratch copy of the answer table (same unique constraints) with raw psycopg
`executemany` and ON CONFLICT DO NOTHING, in the same run. One JSON object per line.

    .venv/bin/python bench/vendor_ingest.py [--quick] [--items N] [--clients 3]
        [--rows-per-request 5000] [--server-workers 3] [--server-threads 1]
"""

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from bench.assign import percentile  # noqa: E402
from orchestrator.api.vendor import MAX_ROWS  # noqa: E402
from orchestrator.db import make_engine  # noqa: E402
from tests.support.http_client import ApiClient  # noqa: E402
from tests.support.live_server import create_key, fresh_database, running_server  # noqa: E402

OVERLAP = 3
WORKERS_PER_CLIENT = 30  # each client stream answers for its own team of vendor workers
PAGE = 1000  # the task listing's largest page


def setup_campaign(url: str, base: str, items: int, batches: int) -> list[int]:
    """Create the project, items, vendor workforce and rate card; dispatch; return batch ids."""
    ops = ApiClient(base, create_key(url, "ops"))
    project = ops.post(
        "/api/v1/projects",
        {"name": "bench", "labels": ["a", "b", "c"], "overlap": OVERLAP, "gold_rate": 0.1},
    ).body
    rows = [{"external_id": f"i{n}", "data": {"n": n}} for n in range(items)]
    rows += [
        {"external_id": f"g{n}", "data": {"n": -n}, "gold_label": "a"}
        for n in range(max(1, items // 10))
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    imported = ops.post(
        f"/api/v1/projects/{project['id']}/items", raw=body, content_type="application/x-ndjson"
    )
    assert imported.status == 201, imported.body
    workforce = ops.post(
        "/api/v1/workforces", {"name": "acme", "kind": "vendor", "vendor": "acme"}
    ).body
    card = ops.post(
        f"/api/v1/workforces/{workforce['id']}/rate-cards",
        {"price_per_answer": "0.05", "fees": {"fee_rate": "0.1"}},
    )
    assert card.status == 201, card.body
    dispatched = ops.post(
        f"/api/v1/projects/{project['id']}/batches",
        {"workforce_id": workforce["id"], "batch_size": -(-items // batches)},
    )
    assert dispatched.status == 201, dispatched.body
    ops.close()
    return [batch["id"] for batch in dispatched.body["data"]]


def vendor_requests(vendor: ApiClient, batch_ids: list[int], per_request: int) -> list[list]:
    """Pull every batch's tasks and cut each batch's answers into `(batch id, tasks)` requests.

    Gold items recur across batches, so each batch is answered by one client's team
    (a worker never answers the same item twice).
    """
    requests = []
    tasks_per_request = max(1, per_request // OVERLAP)
    for batch_id in batch_ids:
        requests.append([])
        tasks, offset = [], 0
        while True:
            page = vendor.get(
                f"/api/v1/vendor/batches/{batch_id}/tasks?limit={PAGE}&offset={offset}"
            )
            assert page.status == 200, page.body
            tasks += page.body["data"]
            offset += PAGE
            if offset >= page.body["total"]:
                break
        for start in range(0, len(tasks), tasks_per_request):
            requests[-1].append((batch_id, tasks[start : start + tasks_per_request]))
    return requests


def answer_rows(chosen: list[dict], team: str, number: int) -> list[dict]:
    """`OVERLAP` answers per task from distinct workers of the team ('a': right on gold)."""
    rows = []
    for position, task in enumerate(chosen):
        for k in range(OVERLAP):
            worker = (number * 7 + position + k * 11) % WORKERS_PER_CLIENT
            label = "a" if task["data"]["n"] <= 0 or position % 3 else "b"
            rows.append(
                {
                    "task_ref": task["task_ref"],
                    "worker_id": f"{team}-w{worker}",
                    "label": label,
                    "time_spent_ms": 4000 + position,
                }
            )
    return rows


def submit_all(base: str, key: str, requests: list[list], clients: int) -> dict:
    """POST each batch's requests from one of `clients` threads; return counts, latencies."""
    latencies: list[float] = []
    accepted: list[int] = []
    errors: list[str] = []
    lock = threading.Lock()

    def stream(number: int) -> None:
        client = ApiClient(base, key, timeout=600)
        try:
            mine = [one for batch in requests[number::clients] for one in batch]
            for index, (batch_id, chosen) in enumerate(mine):
                rows = answer_rows(chosen, f"c{number}", index)
                reply = client.post(
                    f"/api/v1/vendor/batches/{batch_id}/answers",
                    {"answers": rows},
                    headers={"Idempotency-Key": f"bench-{number}-{index}"},
                )
                with lock:
                    if reply.status != 200 or reply.body["rejected_count"]:
                        errors.append(f"{reply.status} {json.dumps(reply.body)[:300]}")
                        continue
                    latencies.append(reply.seconds)
                    accepted.append(reply.body["accepted_count"])
        finally:
            client.close()

    threads = [threading.Thread(target=stream, args=(n,)) for n in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - start
    return {"accepted": sum(accepted), "latencies": latencies, "errors": errors, "seconds": seconds}


def baseline_insert_rate(url: str) -> tuple[int, float]:
    """Insert the stored answers again into a scratch copy of `answer`; return rows, rows/s."""
    engine = make_engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        columns = (
            "assignment_id, item_id, project_id, batch_id, workforce_id, worker_id, label, "
            "status, is_gold, is_correct, time_spent_ms, external_id, created_at"
        )
        cursor.execute(f"SELECT {columns} FROM answer ORDER BY id")
        params = cursor.fetchall()
        cursor.execute("CREATE TEMP TABLE scratch (LIKE answer INCLUDING ALL)")
        raw.commit()
        start = time.perf_counter()
        cursor.executemany(
            f"INSERT INTO scratch ({columns}) VALUES ({', '.join(['%s'] * 13)}) "
            "ON CONFLICT DO NOTHING",
            params,
        )
        raw.commit()
        seconds = time.perf_counter() - start
        cursor.execute("SELECT count(*) FROM scratch")
        assert cursor.fetchone()[0] == len(params)
        return len(params), len(params) / seconds
    finally:
        raw.close()
        engine.dispose()


def stored_counts(url: str) -> tuple[int, int]:
    """Return the accepted answers and the ledger entries in the database."""
    engine = make_engine(url)
    with engine.connect() as conn:
        answers = conn.execute(sa.text("SELECT count(*) FROM answer WHERE status = 'accepted'"))
        entries = conn.execute(sa.text("SELECT count(DISTINCT answer_id) FROM ledger_entry"))
        counts = (int(answers.scalar() or 0), int(entries.scalar() or 0))
    engine.dispose()
    return counts


def run(
    items: int, clients: int, per_request: int, server_workers: int, server_threads: int
) -> dict:
    with fresh_database("postgresql") as url:
        with running_server(url, workers=server_workers, threads=server_threads) as (base, _):
            batch_ids = setup_campaign(url, base, items, batches=max(1, clients))
            key = create_key(url, "vendor", vendor="acme")
            vendor = ApiClient(base, key, timeout=600)
            requests = vendor_requests(vendor, batch_ids, per_request)
            vendor.close()
            outcome = submit_all(base, key, requests, clients)
        answers, billed = stored_counts(url)
        if outcome["errors"] or answers != outcome["accepted"] or billed != answers:
            raise SystemExit(
                f"accepted {outcome['accepted']}, stored {answers}, billed {billed}, "
                f"errors {outcome['errors'][:3]}"
            )
        baseline_rows, baseline = baseline_insert_rate(url)
    rate = outcome["accepted"] / outcome["seconds"]
    latencies = outcome["latencies"]
    return {
        "bench": "vendor_ingest",
        "case": f"postgresql_{clients}_clients_{per_request}_rows_"
        f"{server_workers}x{server_threads}_server",
        "answers": outcome["accepted"],
        "requests": len(latencies),
        "answers_per_s": round(rate, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 1),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
        "seconds": round(outcome["seconds"], 2),
        "baseline_rows": baseline_rows,
        "baseline_answers_per_s": round(baseline, 1),
        "ratio": round(rate / baseline, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="6,000 items instead of 30,000")
    parser.add_argument("--items", type=int)
    parser.add_argument("--clients", type=int, default=3)
    parser.add_argument("--rows-per-request", type=int, default=MAX_ROWS)
    parser.add_argument("--server-workers", type=int, default=3)
    parser.add_argument("--server-threads", type=int, default=1)
    args = parser.parse_args()
    items = args.items or (6_000 if args.quick else 30_000)
    result = run(
        items, args.clients, args.rows_per_request, args.server_workers, args.server_threads
    )
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
