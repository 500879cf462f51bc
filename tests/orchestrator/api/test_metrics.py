"""Prometheus metrics reflect the work done."""

import re

from tests.orchestrator.api.campaign import Campaign


def sample(text, name, **labels):
    rendered = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    pattern = re.escape(f"{name}{{{rendered}}}" if labels else name) + r" ([0-9.e+-]+)$"
    match = re.search(pattern, text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def test_metrics_count_hand_outs_answers_and_queue(client, ops, make_key, session):
    before = client.get("/metrics", headers=ops)
    assert before.status_code == 200 and before.mimetype == "text/plain"
    assert "# TYPE quorum_hand_outs_total counter" in before.text
    campaign = Campaign(client, ops, make_key, session, overlap=2, gold_rate=0.0, reward="0.05")
    campaign.import_items(3)
    campaign.dispatch()
    after_dispatch = client.get("/metrics", headers=ops).text
    assert (
        sample(after_dispatch, "quorum_slots", status="open")
        - sample(before.text, "quorum_slots", status="open")
        == 6
    )
    campaign.work_until_done([campaign.worker("a"), campaign.worker("b")])
    done = client.get("/metrics", headers=ops).text
    assert (
        sample(done, "quorum_hand_outs_total") - sample(before.text, "quorum_hand_outs_total") == 6
    )
    assert (
        sample(done, "quorum_answers_total", status="accepted")
        - sample(before.text, "quorum_answers_total", status="accepted")
        == 6
    )
    assert sample(done, "quorum_slots", status="open") == sample(
        before.text, "quorum_slots", status="open"
    )
    assert (
        sample(done, "quorum_spend_total", currency="USD")
        - sample(before.text, "quorum_spend_total", currency="USD")
        == 0.3
    )


def test_metrics_need_an_ops_key(client, make_key):
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=make_key("finance")).status_code == 403
