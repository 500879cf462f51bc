"""The MTurk connector against a local MTurk-protocol server, through boto3's real client."""

from decimal import Decimal

import botocore.endpoint
import pytest
from defusedxml import ElementTree

from connectors import mturk
from connectors.base import BatchSpec, ConnectorConfigError, TaskSpec, WorkforceUnavailableError
from connectors.mturk import (
    InsufficientBalanceError,
    MTurkConnector,
    MTurkRequestError,
    hit_token,
)
from connectors.mturk_forms import answer_field, parse_answers
from tests.support.mturk_server import MTurkTestServer, WorkerRefused

LABELS = ["cat", "dog"]


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test-secret")
    monkeypatch.setattr(mturk, "BACKOFF_BASE_S", 0.01)
    # Each test's server is new; a port reused by the OS must not find an old cached id.
    monkeypatch.setattr(mturk, "_QUALIFICATIONS", {})


@pytest.fixture
def server():
    with MTurkTestServer() as running:
        yield running


def connector(server, **config):
    return MTurkConnector({"endpoint_url": server.endpoint_url, "max_attempts": 3, **config})


def batch(slots=(3, 3), *, batch_id=7, reward="0.50", data=None):
    return BatchSpec(
        batch_id=batch_id,
        project_id=1,
        title="Pets",
        instructions="Is it a cat or a dog?",
        labels=LABELS,
        reward=Decimal(reward),
        currency="USD",
        tasks=[
            TaskSpec(task_ref=str(100 + n), data=(data or {"n": n}), slots=count)
            for n, count in enumerate(slots)
        ],
    )


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"aws_secret_access_key": "x"}, "config.aws_secret_access_key"),
        ({"session_token": "x"}, "config.session_token"),
        ({"sandbox": "yes"}, "config.sandbox"),
        ({"items_per_hit": 0}, "config.items_per_hit"),
        ({"retry_mode": "eager"}, "config.retry_mode"),
        ({"endpoint_url": "ftp://x"}, "config.endpoint_url"),
        ({"read_timeout": -1}, "config.read_timeout"),
        ({"auto_approval_delay_s": 2_592_001}, "config.auto_approval_delay_s"),
        ({"colour": "blue"}, "config"),
    ],
)
def test_config_errors_name_the_key(config, key):
    with pytest.raises(ConnectorConfigError) as caught:
        MTurkConnector(config)
    assert key in caught.value.details


def test_defaults_point_at_the_sandbox():
    connector = MTurkConnector({})
    assert connector.sandbox is True
    assert connector.setting("region") == "us-east-1"
    assert "sandbox" in connector.client.meta.endpoint_url


def test_tokens_are_deterministic_and_short():
    first = hit_token(12345678901, ["1", "2", "3"], 4)
    assert first == hit_token(12345678901, ["1", "2", "3"], 4)
    assert len(first) <= 64
    assert first != hit_token(12345678901, ["1", "2", "3"], 5)
    assert first != hit_token(12345678901, ["1", "2", "4"], 4)


def test_items_are_escaped_in_the_question(server):
    hostile = {"text": '<script>alert("x")</script> ]]> & "quotes"'}
    ref = connector(server).publish(batch(slots=(1,), data=hostile))
    (hit,) = server.hits()
    assert hit["HITId"] == ref.state["hits"][0]["hit_id"]
    root = ElementTree.fromstring(hit["Question"])
    page = "".join(root.itertext())
    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; ]]&gt; &amp;" in page
    assert f'name="{answer_field("100")}" value="cat"' in page


def test_publish_makes_one_hit_type_and_hits_with_the_slots(server):
    ref = connector(server, items_per_hit=2).publish(batch(slots=(3, 3, 3, 2)))
    hits = server.hits()
    shapes = sorted((len(h["tasks"]), h["max_assignments"]) for h in ref.state["hits"])
    assert shapes == [(1, 2), (1, 3), (2, 3)]
    assert len(hits) == 3
    # Two items per HIT pay twice the reward: one HIT type per reward.
    assert {h["Reward"] for h in hits} == {"0.50", "1.00"}
    assert len({h["HITTypeId"] for h in hits}) == 2
    requirement = hits[0]["QualificationRequirements"][0]
    assert requirement["Comparator"] == "DoesNotExist"


def test_publishing_twice_makes_no_second_hit(server):
    first = connector(server).publish(batch())
    again = connector(server).publish(batch())
    assert [h["hit_id"] for h in again.state["hits"]] == [h["hit_id"] for h in first.state["hits"]]
    assert len(server.hits()) == 2


def test_ten_slots_are_split_to_avoid_the_surcharge(server):
    ref = connector(server).publish(batch(slots=(12,)))
    assert sorted(h["MaxAssignments"] for h in server.hits()) == [6, 6]
    # One HIT of 12: 12 x (0.50 + 40%) = 8.40; two of 6: 12 x (0.50 + 20%) = 7.20.
    assert ref.state["packaging"] == {
        "hits": 2,
        "cost": "7.20",
        "cost_without_split": "8.40",
        "saving": "1.20",
    }


def test_publish_refuses_what_the_balance_cannot_pay():
    with MTurkTestServer(balance=Decimal("3.00")) as server:
        with pytest.raises(InsufficientBalanceError) as caught:
            connector(server).publish(batch(slots=(3, 3)))  # 6 x 0.60 = 3.60
        assert caught.value.details == {"balance": "3.00", "needed": "3.60"}
        assert server.hits() == []


def test_throttling_is_retried_with_backoff(server, monkeypatch):
    sleeps = []
    # botocore sleeps between retries with time.sleep; record the waits, skip the wait.
    monkeypatch.setattr(botocore.endpoint.time, "sleep", sleeps.append)
    server.inject("CreateHITType", "throttle", times=2)
    connector(server).publish(batch())
    assert [op for op, _ in server.calls].count("CreateHITType") == 3
    # Two waits, with exponential jitter bounds (at most 1 s, then 2 s).
    assert len(sleeps) == 2 and sleeps[0] <= 1 and sleeps[1] <= 2
    assert all(wait > 0 for wait in sleeps)
    assert len(server.hits()) == 2


def test_throttling_past_the_retries_is_unavailable(server):
    server.inject("GetAccountBalance", "throttle", times=3)
    with pytest.raises(WorkforceUnavailableError):
        connector(server).publish(batch())
    assert server.hits() == []


def test_a_lost_response_after_create_hit_leaves_exactly_one_hit(server):
    server.inject("CreateHITWithHITType", "lost_response")
    ref = connector(server).publish(batch(slots=(2,)))
    (hit,) = server.hits()
    assert ref.state["hits"][0]["hit_id"] == hit["HITId"]
    assert [op for op, _ in server.calls].count("CreateHITWithHITType") == 2


def submit(server, ref, task_index, workers, label="cat"):
    hit = ref.state["hits"][task_index]
    return [
        server.submit_assignment(
            hit["hit_id"], worker, {answer_field(t): label for t in hit["tasks"]}
        )
        for worker in workers
    ]


def test_collect_reads_every_page(server, monkeypatch):
    monkeypatch.setattr(mturk, "PAGE", 2)
    ref = connector(server).publish(batch(slots=(5,)))
    ids = submit(server, ref, 0, ["W1", "W2", "W3", "W4", "W5"])
    answers = connector(server).collect(ref)
    assert sorted(a.external_id for a in answers) == sorted(ids)
    assert {(a.task_ref, a.label) for a in answers} == {("100", "cat")}
    assert all(a.time_spent_ms == 30_000 for a in answers)
    listings = [p for op, p in server.calls if op == "ListAssignmentsForHIT"]
    assert len(listings) == 3 and all(p["MaxResults"] == 2 for p in listings)


def test_several_items_per_hit_give_one_answer_each(server):
    ref = connector(server, items_per_hit=2).publish(batch(slots=(2, 2)))
    (assignment_id,) = submit(server, ref, 0, ["W1"], label="dog")
    answers = connector(server).collect(ref)
    assert sorted(a.external_id for a in answers) == [
        f"{assignment_id}:100",
        f"{assignment_id}:101",
    ]


def test_a_service_fault_during_collection_loses_nothing(server):
    ref = connector(server).publish(batch(slots=(3,)))
    ids = submit(server, ref, 0, ["W1", "W2", "W3"])
    server.inject("ListAssignmentsForHIT", "service_fault", times=3)
    with pytest.raises(WorkforceUnavailableError):
        connector(server).collect(ref)
    assert sorted(a.external_id for a in connector(server).collect(ref)) == sorted(ids)


def test_answers_are_parsed_without_entities():
    evil = (
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e "boom">]>'
        "<QuestionFormAnswers><Answer><QuestionIdentifier>label_1</QuestionIdentifier>"
        "<FreeText>&e;</FreeText></Answer></QuestionFormAnswers>"
    )
    with pytest.raises(ValueError):
        parse_answers(evil)


def test_review_block_bonus_and_close(server):
    worker = connector(server)
    ref = worker.publish(batch(slots=(2,)))
    good, bad = submit(server, ref, 0, ["GOOD", "BAD"])
    worker.review(good, accept=True)
    worker.review(bad, accept=False, feedback="failed the known-answer checks")
    worker.block_worker("BAD", reason="gold accuracy 20%")
    assert server.blocked_workers() == {"BAD"}
    with pytest.raises(MTurkRequestError) as caught:
        worker.pay_bonus("GOOD", Decimal("0.25"), reason="thanks", token="qb-1-1-abc")
    assert "worker_ref" in caught.value.details
    for _ in range(2):  # the same token twice pays once
        worker.pay_bonus(
            "GOOD", Decimal("0.25"), reason="thanks", token="qb-1-1-abc", answer_refs=[good]
        )
    # The bonus went on the assignment named, found without listing any HIT.
    bonus_calls = [p for op, p in server.calls if op == "SendBonus"]
    assert {p["AssignmentId"] for p in bonus_calls} == {good}
    assert not {"ListHITs", "ListAssignmentsForHIT"} & {op for op, _ in server.calls}
    kinds = [(d["kind"], d["amount"]) for d in server.debits()]
    assert kinds == [
        ("reward", Decimal("0.50")),
        ("fee", Decimal("0.10")),
        ("bonus", Decimal("0.25")),
        ("bonus_fee", Decimal("0.05")),
    ]
    assert worker.close_hits(ref) is True
    assert server.hits()[0]["HITStatus"] == "Disposed"
    with pytest.raises(WorkerRefused):
        server.submit_assignment(ref.state["hits"][0]["hit_id"], "OTHER", {})


def test_blocked_workers_cannot_take_new_hits(server):
    worker = connector(server)
    worker.block_worker("BAD", reason="quality")
    ref = worker.publish(batch(slots=(2,), batch_id=8))
    with pytest.raises(WorkerRefused):
        submit(server, ref, 0, ["BAD"])
    assert [w.worker_ref for w in worker.workers()] == ["BAD"]


def test_a_new_process_finds_the_block_qualification_another_one_made(server, monkeypatch):
    first = connector(server).block_qualification()
    # A new process: nothing cached, and CreateQualificationType says the name is taken.
    monkeypatch.setattr(mturk, "_QUALIFICATIONS", {})
    again = connector(server)
    assert again.block_qualification() == first
    operations = [op for op, _ in server.calls]
    assert operations == [
        "CreateQualificationType",
        "CreateQualificationType",
        "ListQualificationTypes",
    ]
    listing = server.calls[-1][1]
    assert listing["Query"] == "Quorum blocked workers" and listing["MustBeOwnedByCaller"]
    ref = again.publish(batch(slots=(1,), batch_id=9))
    (hit,) = server.hits()
    assert hit["QualificationRequirements"][0]["QualificationTypeId"] == first
    assert ref.state["hits"][0]["hit_id"] == hit["HITId"]
