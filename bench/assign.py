"""Benchmark: task hand-outs from the internal pool under concurrent workers, over real HTTP.

A fresh PostgreSQL database, a real gunicorn server with several processes, and N
worker clients (threads in several client processes) that each loop: lease work,
answer it. With `--suite 1` a client takes one task at a time (`GET /tasks/next`,
`POST /tasks/{lease}/answer`); with `--suite N` it leases a suite of N tasks
(`GET /tasks/suite?size=N`) and answers them in one request (`POST /tasks/answers`),
as labeling UIs that show several items per page do. One line per suite size: clients
work flat out (a closed loop, so latency grows with queueing: 32 clients at R cycles per
second wait about 32/R seconds per cycle); `--rate R` adds a line per suite size at an
offered load of R hand-outs per second (default 500), each client starting a cycle on a
fixed schedule. The server runs 3 gunicorn processes of 2 threads: on 2 cores, fewer
threads per process means less waiting on each process's interpreter lock.
Reports hand-outs (tasks leased) per second, hand-out request latency percentiles,
and duplicates (slots handed out twice plus items answered twice by one worker),
with the database's own executemany insert rate for the same number of rows as
the baseline. One JSON object per line.

    .venv/bin/python bench/assign.py [--quick] [--clients 32] [--suite 1 --suite 10]
"""

import argparse
import json
import multiprocessing
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from orchestrator.db import make_engine  # noqa: E402
from tests.support.http_client import ApiClient  # noqa: E402
from tests.support.live_server import create_key, fresh_database, running_server  # noqa: E402


def setup_campaign(url: str, base: str, items: int, overlap: int) -> None:
    ops = ApiClient(base, create_key(url, "ops"))
    project = ops.post(
        "/api/v1/projects",
        {
            "name": "bench",
            "labels": ["a", "b", "c"],
            "overlap": overlap,
            "gold_rate": 0.1,
            "gold_min_answers": 10_000,
        },
    ).body
    rows = [
        {"external_id": f"i{n}", "data": {"n": n, "url": f"https://x/{n}.jpg"}}
        for n in range(items)
    ]
    rows += [
        {"external_id": f"g{n}", "data": {"n": -n, "url": f"https://x/g{n}.jpg"}, "gold_label": "a"}
        for n in range(max(1, items // 10))
    ]
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    assert (
        ops.post(
            f"/api/v1/projects/{project['id']}/items", raw=body, content_type="application/x-ndjson"
        ).status
        == 201
    )
    workforce = ops.post("/api/v1/workforces", {"name": "internal", "kind": "internal"}).body
    assert (
        ops.post(
            f"/api/v1/projects/{project['id']}/batches",
            {"workforce_id": workforce["id"], "batch_size": 1000},
        ).status
        == 201
    )
    ops.close()


def client_process(
    base: str,
    keys: list[str],
    seconds: float,
    suite: int,
    cycle_seconds: float | None,
    queue: "multiprocessing.Queue",
) -> None:
    """Run one thread per key; put (hand-out latencies, lease ids, errors) on the queue.

    Without `cycle_seconds` each client works flat out (closed loop); with it, each
    client starts a lease-and-answer cycle every `cycle_seconds` (an offered load).
    """
    latencies: list[float] = []
    leases: list[str] = []
    errors: list[str] = []
    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def work(key: str) -> None:
        client = ApiClient(base, key)
        next_cycle = time.monotonic() + random.uniform(0, cycle_seconds or 0)
        try:
            while time.monotonic() < deadline:
                if cycle_seconds is not None:
                    time.sleep(max(0.0, next_cycle - time.monotonic()))
                    next_cycle += cycle_seconds
                if suite == 1:
                    task = client.get("/api/v1/tasks/next")
                else:
                    task = client.get(f"/api/v1/tasks/suite?size={suite}")
                if task.status == 204:
                    return
                if task.status != 200:
                    errors.append(f"lease {task.status}")
                    return
                tasks = [task.body] if suite == 1 else task.body["tasks"]
                lease_ids = [t["lease_id"] for t in tasks]
                if suite == 1:
                    answer = client.post(f"/api/v1/tasks/{lease_ids[0]}/answer", {"label": "b"})
                    ok = answer.status == 201
                else:
                    rows = [{"lease_id": lease, "label": "b"} for lease in lease_ids]
                    answer = client.post("/api/v1/tasks/answers", {"answers": rows})
                    ok = answer.status == 200 and answer.body["accepted_count"] == len(rows)
                if not ok:
                    errors.append(f"answer {answer.status} {answer.body}")
                    return
                with lock:
                    latencies.append(task.seconds)
                    leases.extend(lease_ids)
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(key,)) for key in keys]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    queue.put((latencies, leases, errors))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def baseline_insert_rate(url: str, rows: int) -> float:
    """Raw psycopg executemany of `rows` assignment-like rows into a scratch table; rows/s."""
    engine = make_engine(url)
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        cursor.execute("CREATE TEMP TABLE scratch (LIKE assignment INCLUDING DEFAULTS)")
        params = [(n, 1, n, 1, 1, False, "leased", 1, f"token-{n}", 0) for n in range(rows)]
        start = time.perf_counter()
        cursor.executemany(
            "INSERT INTO scratch (id, batch_id, item_id, project_id, workforce_id, is_gold, "
            "status, worker_id, lease_token, reserved_micros, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, now())",
            params,
        )
        raw.commit()
        return rows / (time.perf_counter() - start)
    finally:
        raw.close()
        engine.dispose()


def duplicates_in_database(url: str) -> int:
    engine = make_engine(url)
    with engine.connect() as conn:
        twice = (
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM (SELECT item_id, worker_id FROM assignment "
                    "WHERE worker_id IS NOT NULL GROUP BY item_id, worker_id HAVING count(*) > 1) t"
                )
            ).scalar()
            or 0
        )
        answered_twice = (
            conn.execute(
                sa.text(
                    "SELECT count(*) FROM (SELECT assignment_id FROM answer GROUP BY assignment_id "
                    "HAVING count(*) > 1) t"
                )
            ).scalar()
            or 0
        )
    engine.dispose()
    return int(twice) + int(answered_twice)


def run(
    clients: int,
    server_workers: int,
    server_threads: int,
    items: int,
    seconds: float,
    client_processes: int,
    suite: int,
    offered_rate: float | None,
) -> dict:
    with fresh_database("postgresql") as url:
        with running_server(url, workers=server_workers, threads=server_threads) as (base, _):
            setup_campaign(url, base, items, overlap=3)
            keys = [create_key(url, "worker", worker=f"w{n}") for n in range(clients)]
            queue: multiprocessing.Queue = multiprocessing.Queue()
            groups = [keys[i::client_processes] for i in range(client_processes)]
            cycle_seconds = None if offered_rate is None else suite * clients / offered_rate
            processes = [
                multiprocessing.Process(
                    target=client_process, args=(base, g, seconds, suite, cycle_seconds, queue)
                )
                for g in groups
            ]
            start = time.perf_counter()
            for process in processes:
                process.start()
            results = [queue.get() for _ in processes]
            elapsed = time.perf_counter() - start
            for process in processes:
                process.join()
        latencies = [x for r in results for x in r[0]]
        leases = [x for r in results for x in r[1]]
        errors = [x for r in results for x in r[2]]
        duplicates = (len(leases) - len(set(leases))) + duplicates_in_database(url)
        baseline = baseline_insert_rate(url, len(leases) or 1)
    rate = len(leases) / elapsed
    return {
        "bench": "assign",
        "case": f"postgresql_{clients}_clients_suite_{suite}_"
        + ("flat_out" if offered_rate is None else f"offered_{offered_rate:g}_per_s"),
        "suite_size": suite,
        "offered_hand_outs_per_s": offered_rate,
        "server": f"{server_workers}x{server_threads}",
        "hand_outs": len(leases),
        "requests_per_s": round(2 * len(latencies) / elapsed, 1),
        "hand_outs_per_s": round(rate, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2) if latencies else None,
        "duplicates": duplicates,
        "errors": len(errors),
        "seconds": round(elapsed, 2),
        "baseline_rows_per_s": round(baseline, 1),
        "ratio": round(rate / baseline, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--server-workers", type=int, default=3)
    parser.add_argument("--server-threads", type=int, default=2)
    parser.add_argument("--client-processes", type=int, default=2)
    parser.add_argument("--seconds", type=float)
    parser.add_argument(
        "--suite", type=int, action="append", help="tasks per hand-out (repeatable; default 1, 10)"
    )
    parser.add_argument(
        "--rate",
        type=float,
        action="append",
        help="also run at this offered load, hand-outs per second in all (repeatable; default 500)",
    )
    args = parser.parse_args()
    items = 3_000 if args.quick else 20_000
    seconds = args.seconds or (5 if args.quick else 20)
    for suite in args.suite or [1, 10]:
        for offered_rate in [None, *(args.rate or [500.0])]:
            result = run(
                args.clients,
                args.server_workers,
                args.server_threads,
                items,
                seconds,
                args.client_processes,
                suite,
                offered_rate,
            )
            print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
