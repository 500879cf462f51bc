"""A vendor campaign over real HTTP: gunicorn (2 processes) on PostgreSQL.

Ops sets up a project, a vendor workforce with a rate card, and dispatches. A
vendor client pulls the batch (paged), and submits in several bulk requests: good
answers, a repeated request (replayed, nothing stored twice), a request with bad
rows, a worker who fails gold and gets blocked mid-request, and a later request
from that blocked worker. The project must end with its overlap from distinct
workers, scored gold, correct aggregated labels, and ledger entries at the vendor
rate for exactly the answers that count.
"""

import json
import urllib.request
from decimal import Decimal

import pytest
import sqlalchemy as sa

from orchestrator.db import make_engine
from tests.conftest import fresh_postgres
from tests.support.http_client import ApiClient
from tests.support.live_server import create_key, running_server

ITEMS, GOLD, OVERLAP = 10, 4, 2
PRICE = Decimal("0.10")


@pytest.fixture(scope="module")
def live_postgres():
    with fresh_postgres() as url, running_server(url, workers=2, threads=4) as (base, _pid):
        yield url, base


def truth(data):
    """The right label of an item, from its data (gold items are all 'cat')."""
    return "cat" if data["n"] >= 1000 or data["n"] % 2 == 0 else "dog"


def wrong(data):
    return "dog" if truth(data) == "cat" else "cat"


@pytest.mark.backend("postgresql")
def test_vendor_campaign_end_to_end(live_postgres):
    url, base = live_postgres
    ops = ApiClient(base, create_key(url, "ops"))
    project = ops.post(
        "/api/v1/projects",
        {
            "name": "vendor e2e",
            "labels": ["cat", "dog"],
            "overlap": OVERLAP,
            "gold_rate": 0.3,
            "gold_min_answers": 3,
            "gold_accuracy_threshold": 0.7,
            "aggregation_method": "majority_vote",
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
    workforce = ops.post(
        "/api/v1/workforces", {"name": "acme", "kind": "vendor", "vendor": "acme"}
    ).body
    card = ops.post(
        f"/api/v1/workforces/{workforce['id']}/rate-cards", {"price_per_answer": str(PRICE)}
    )
    assert card.status == 201, card.body
    dispatched = ops.post(
        f"/api/v1/projects/{project['id']}/batches", {"workforce_id": workforce["id"]}
    )
    assert dispatched.status == 201, dispatched.body

    vendor = ApiClient(base, create_key(url, "vendor", vendor="acme"))
    listed = vendor.get("/api/v1/vendor/batches")
    assert listed.status == 200 and listed.body["total"] == 1
    batch = listed.body["data"][0]
    tasks, offset = [], 0
    while True:
        page = vendor.get(f"/api/v1/vendor/batches/{batch['id']}/tasks?limit=4&offset={offset}")
        assert page.status == 200, page.body
        tasks += page.body["data"]
        offset += 4
        if offset >= page.body["total"]:
            break
    assert batch["task_count"] == len(tasks) == ITEMS + GOLD  # every gold item is a task
    assert "gold" not in json.dumps([listed.body, tasks])
    path = f"/api/v1/vendor/batches/{batch['id']}/answers"

    def submit(key, answers, **query):
        suffix = "?atomic=true" if query.get("atomic") else ""
        return vendor.post(path + suffix, {"answers": answers}, headers={"Idempotency-Key": key})

    def rows_for(worker, chosen, label=truth):
        return [
            {"task_ref": t["task_ref"], "worker_id": worker, "label": label(t["data"])}
            for t in chosen
        ]

    # 1. A good worker answers every task; the same request again is replayed.
    first = submit("r1", rows_for("good-1", tasks))
    assert first.status == 200 and first.body["accepted_count"] == len(tasks)
    again = submit("r1", rows_for("good-1", tasks))
    assert again.status == 200 and again.body == first.body
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert submit("r1", rows_for("good-1", tasks[:3])).status == 409  # changed body

    # 2. A careless worker: wrong on everything, blocked once gold says so (mid-request).
    second = submit("r2", rows_for("careless", tasks, label=wrong))
    assert second.status == 200
    assert {r["code"] for r in second.body["rejected"]} == {"worker_blocked"}, second.body

    # 3. Bad rows beside good ones: the good ones are stored, each bad one has a reason.
    # (Gold tasks the careless worker answered are full: gold answers are not reopened.)
    half = len(tasks) // 2
    mixed = rows_for("good-2", tasks[:half]) + [
        {"task_ref": "t_missing", "worker_id": "good-2", "label": "cat"},
        {"task_ref": tasks[half]["task_ref"], "worker_id": "good-2", "label": "ferret"},
        {"task_ref": tasks[0]["task_ref"], "worker_id": "good-1", "label": "cat"},
    ]
    third = submit("r3", mixed)
    assert third.status == 200
    reasons = {r["row"]: r["code"] for r in third.body["rejected"]}
    assert [reasons.pop(n) for n in (half, half + 1, half + 2)] == [
        "unknown_task",
        "invalid_label",
        "duplicate_answer",
    ]
    assert set(reasons.values()) <= {"no_open_slot"}
    assert third.body["accepted_count"] == half - len(reasons)

    # 4. The rest of the work, then the blocked worker tries again.
    fourth = submit("r4", rows_for("good-2", tasks[half:]))
    assert fourth.status == 200
    assert {r["code"] for r in fourth.body["rejected"]} <= {"no_open_slot"}
    fifth = submit("r5", rows_for("careless", tasks[:2]))
    assert fifth.status == 200 and fifth.body["accepted_count"] == 0
    assert {r["code"] for r in fifth.body["rejected"]} == {"worker_blocked"}
    assert "send this work to another worker" in fifth.body["rejected"][0]["reason"]

    # Quality: the careless worker is blocked, the good ones are not.
    workers = ops.get(f"/api/v1/projects/{project['id']}/workers").body["data"]
    status = {w["external_id"]: w for w in workers}
    assert status["careless"]["status"] == "blocked"
    assert status["careless"]["gold_accuracy"] == 0.0
    assert status["good-1"]["status"] == status["good-2"]["status"] == "active"
    assert status["good-1"]["gold_accuracy"] == 1.0

    # Aggregation: every item labelled right.
    assert ops.post(f"/api/v1/projects/{project['id']}/aggregate").status == 200
    request = urllib.request.Request(
        f"{base}/api/v1/projects/{project['id']}/results",
        headers={"Authorization": ops._headers["Authorization"]},
    )
    with urllib.request.urlopen(request) as response:
        results = [json.loads(line) for line in response.read().decode().splitlines() if line]
    assert len(results) == ITEMS
    assert {r["external_id"]: r["label"] for r in results} == {
        f"i{n}": "cat" if n % 2 == 0 else "dog" for n in range(ITEMS)
    }
    ops.close()
    vendor.close()

    engine = make_engine(url)
    with engine.connect() as conn:
        per_item = conn.execute(
            sa.text(
                "SELECT i.external_id, count(a.id), count(DISTINCT a.worker_id) FROM item i "
                "JOIN answer a ON a.item_id = i.id AND a.status = 'accepted' "
                "WHERE i.gold_label IS NULL GROUP BY i.external_id"
            )
        ).all()
        gold = conn.execute(
            sa.text(
                "SELECT w.external_id, count(*), count(a.is_correct), "
                "sum(CASE WHEN a.is_correct THEN 1 ELSE 0 END) "
                "FROM answer a JOIN worker w ON w.id = a.worker_id WHERE a.is_gold "
                "GROUP BY w.external_id"
            )
        ).all()
        counted = conn.execute(
            sa.text("SELECT count(*) FROM answer WHERE status = 'accepted'")
        ).scalar()
        excluded = conn.execute(
            sa.text("SELECT count(*) FROM answer WHERE status = 'excluded'")
        ).scalar()
        ledger = conn.execute(
            sa.text(
                "SELECT kind, count(*), sum(amount_micros) FROM ledger_entry "
                "WHERE project_id = :p GROUP BY kind"
            ),
            {"p": project["id"]},
        ).all()
        stored_keys = conn.execute(sa.text("SELECT count(*) FROM idempotency_key")).scalar()
    engine.dispose()

    # Overlap: every item ends with exactly OVERLAP counted answers, from distinct workers.
    assert len(per_item) == ITEMS
    assert all(n == OVERLAP and distinct == OVERLAP for _, n, distinct in per_item), per_item
    # Gold: every gold answer scored; the good workers' right, the careless one's wrong.
    scored = {worker: (n, scored, right) for worker, n, scored, right in gold}
    assert scored["good-1"] == (GOLD, GOLD, GOLD)
    careless_gold = scored["careless"][0]
    assert careless_gold >= 3 and scored["careless"] == (careless_gold, careless_gold, 0)
    # Gold slots are `overlap` per gold task; good-2 got the ones careless left, and those
    # reopened when careless's answers, gold included, were excluded.
    assert scored.get("good-2", (0, 0, 0)) == (GOLD,) * 3
    # Ledger: one charge per answer ever accepted at the vendor's price; the careless
    # worker's excluded answers are reversed, so the net is the price of what counts.
    by_kind = {kind: (n, int(total)) for kind, n, total in ledger}
    micros = int(PRICE * 1_000_000)
    charges, charged = by_kind["vendor_charge"]
    assert charges == counted + excluded and charged == charges * micros
    reversed_n, reversed_total = by_kind.get("reversal", (0, 0))
    assert reversed_n == excluded and reversed_total == -excluded * micros
    assert sum(total for _, total in by_kind.values()) == counted * micros
    assert stored_keys == 5  # r1..r5; the 409 stored nothing
