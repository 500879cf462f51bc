"""Benchmark: importing items through the real HTTP API vs raw SQL executemany.

For each backend (SQLite, PostgreSQL) a fresh database and a real gunicorn server;
a JSON Lines file of N items is POSTed once (all new) and again (all unchanged).
The baseline inserts the same rows into the same table with the driver's
executemany in the same run. Prints one JSON object per line.

    .venv/bin/python bench/import_items.py [--quick] [--items N] [--backends sqlite,postgresql]
"""

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import sqlalchemy as sa  # noqa: E402

from orchestrator.db import make_engine, utcnow  # noqa: E402
from tests.support.live_server import create_key, fresh_database, peak_rss_mb, running_server  # noqa: E402


def make_rows(count: int) -> list[dict]:
    """Items like a real image-labeling upload: an id, a URL and some metadata; 10% gold."""
    return [
        {
            "external_id": f"img-{i:07d}",
            "data": {"url": f"https://example.org/images/{i:07d}.jpg", "source": "cam-3", "w": 640},
            **({"gold_label": "cat"} if i % 10 == 0 else {}),
        }
        for i in range(count)
    ]


def call(base: str, path: str, key: str, body: bytes, content_type: str) -> dict:
    request = urllib.request.Request(
        base + path,
        data=body,
        method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def raw_baseline(database_url: str, project_id: int, rows: list[dict]) -> float:
    """Insert the rows with plain executemany on the driver; return seconds."""
    engine = make_engine(database_url)
    now = utcnow()
    params = [
        (
            project_id,
            "raw-" + row["external_id"],
            json.dumps(row["data"]),
            row.get("gold_label"),
            0,
            now,
        )
        for row in rows
    ]
    placeholder = "?" if engine.dialect.name == "sqlite" else "%s"
    sql = (
        "INSERT INTO item (project_id, external_id, data, gold_label, answer_count, created_at) "
        f"VALUES ({', '.join([placeholder] * 6)})"
    )
    if engine.dialect.name == "sqlite":
        params = [(*p[:5], now.isoformat(sep=" ")) for p in params]
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        start = time.perf_counter()
        if engine.dialect.name == "sqlite":
            cursor.execute("BEGIN")  # the engine's connections run sqlite3 in autocommit mode
        cursor.executemany(sql, params)
        raw.commit()
        seconds = time.perf_counter() - start
    finally:
        raw.close()
        engine.dispose()
    return seconds


def run(backend: str, rows: list[dict]) -> list[dict]:
    body = "".join(json.dumps(row) + "\n" for row in rows).encode()
    results = []
    with fresh_database(backend) as url:
        key = create_key(url, "ops")
        with running_server(url) as (base, pid):
            project = call(
                base,
                "/api/v1/projects",
                key,
                json.dumps({"name": "bench", "labels": ["cat", "dog"]}).encode(),
                "application/json",
            )
            path = f"/api/v1/projects/{project['id']}/items"
            for case in ("new", "reimport"):
                start = time.perf_counter()
                report = call(base, path, key, body, "application/x-ndjson")
                seconds = time.perf_counter() - start
                expected = len(rows) if case == "new" else 0
                if report["created"] != expected:
                    raise SystemExit(
                        f"{backend} {case}: created {report['created']}, expected {expected}"
                    )
                results.append({"case": case, "seconds": seconds, "peak_mb": peak_rss_mb(pid)})
        baseline = raw_baseline(url, project["id"], rows)
        with make_engine(url).connect() as conn:
            stored = conn.execute(sa.text("SELECT count(*) FROM item")).scalar()
        if stored != 2 * len(rows):
            raise SystemExit(f"{backend}: {stored} rows stored, expected {2 * len(rows)}")
    return [
        {
            "bench": "import_items",
            "case": f"{backend}_{r['case']}_{len(rows)}",
            "items": len(rows),
            "items_per_s": round(len(rows) / r["seconds"]),
            "seconds": round(r["seconds"], 3),
            "server_peak_mb": round(r["peak_mb"], 1),
            "baseline_items_per_s": round(len(rows) / baseline),
            "baseline_seconds": round(baseline, 3),
            "ratio": round(baseline / r["seconds"], 3),
        }
        for r in results
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10,000 items instead of 100,000")
    parser.add_argument("--items", type=int)
    parser.add_argument("--backends", default="sqlite,postgresql")
    args = parser.parse_args()
    rows = make_rows(args.items or (10_000 if args.quick else 100_000))
    for backend in args.backends.split(","):
        for line in run(backend, rows):
            print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
