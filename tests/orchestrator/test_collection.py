"""Polling push workforces: answers are stored once however often they are polled."""

from datetime import UTC, datetime
from decimal import Decimal
from importlib.metadata import EntryPoint
from typing import ClassVar

import pytest
import sqlalchemy as sa

from connectors import registry
from connectors.base import (
    BatchSpec,
    CollectedAnswer,
    Connector,
    SubmissionRef,
    WorkerInfo,
    WorkforceUnavailableError,
)
from orchestrator.models import Answer, Item
from orchestrator.services import collection
from tests.orchestrator.api.campaign import Campaign


class FakePushConnector(Connector):
    """A push workforce in memory: it keeps what was published and serves queued answers."""

    kind = "mturk"
    is_pull = False
    published: ClassVar[list[BatchSpec]] = []
    answers: ClassVar[list[CollectedAnswer]] = []
    down: ClassVar[bool] = False

    def publish(self, batch: BatchSpec) -> SubmissionRef:
        FakePushConnector.published.append(batch)
        return SubmissionRef(batch.batch_id, f"fake-{batch.batch_id}")

    def collect(self, ref: SubmissionRef) -> list[CollectedAnswer]:
        if FakePushConnector.down:
            raise WorkforceUnavailableError("service fault")
        return list(FakePushConnector.answers)

    def cancel(self, ref: SubmissionRef) -> None:
        """Nothing to withdraw."""

    def workers(self) -> list[WorkerInfo]:
        return []

    def review(self, answer_external_id: str, *, accept: bool, feedback: str = "") -> None:
        """Nothing to review."""

    def block_worker(self, worker_ref: str, *, reason: str) -> None:
        """Nothing to block."""

    def pay_bonus(
        self, worker_ref: str, amount: Decimal, *, reason: str, token: str, answer_refs=()
    ) -> None:
        """Nothing to pay."""


@pytest.fixture
def push_workforce(monkeypatch, client, ops, make_key, session, sessions):
    FakePushConnector.published, FakePushConnector.answers, FakePushConnector.down = [], [], False
    fake = EntryPoint(name="fake-push", value=f"{__name__}:FakePushConnector", group=registry.GROUP)
    real = registry.entry_points
    monkeypatch.setattr(registry, "entry_points", lambda group: [*real(group=group), fake])
    campaign = Campaign(client, ops, make_key, session, overlap=2, gold_rate=0.0)
    campaign.sessions = sessions
    response = client.post(
        "/api/v1/workforces",
        json={"name": "push", "kind": "mturk", "connector": "fake-push"},
        headers=ops,
    )
    assert response.status_code == 201, response.get_json()
    campaign.import_items(3)
    dispatched = campaign.dispatch(response.get_json()["id"])
    assert dispatched.get_json()["data"][0]["status"] == "created"  # not sent inside dispatch
    assert FakePushConnector.published == []
    assert collection.publish_pending(campaign.sessions)["published"] == 1
    return campaign


def answer(n: int, task_ref: str, worker: str, label: str) -> CollectedAnswer:
    return CollectedAnswer(f"asg-{n}", task_ref, worker, label, datetime.now(UTC), 1200)


def test_polled_answers_are_stored_once(push_workforce, sessions, session):
    (spec,) = FakePushConnector.published
    assert [task.slots for task in spec.tasks] == [2, 2, 2]
    FakePushConnector.answers = [
        answer(n, task.task_ref, f"W{k}", "dog")
        for n, (task, k) in enumerate((t, k) for t in spec.tasks for k in range(2))
    ]
    first = collection.poll_connectors(sessions)
    assert (first["batches"], first["stored"]) == (1, 6)
    again = collection.poll_connectors(sessions)
    assert (again["already_stored"], again.get("stored", 0)) == (6, 0)
    assert session.scalar(sa.select(sa.func.count()).select_from(Answer)) == 6
    assert set(session.scalars(sa.select(Item.answer_count))) == {2}


def test_bad_rows_and_outages_lose_nothing(push_workforce, sessions, session):
    (spec,) = FakePushConnector.published
    task = spec.tasks[0].task_ref
    FakePushConnector.answers = [
        answer(1, task, "W1", "dog"),
        answer(2, task, "W1", "cat"),  # the same worker again on the same item
        answer(3, task, "W2", "horse"),  # not a project label
        answer(4, task, "W3", "dog"),
        answer(5, task, "W4", "dog"),  # the item already has its two answers
    ]
    FakePushConnector.down = True
    assert collection.poll_connectors(sessions)["unavailable"] == 1
    FakePushConnector.down = False
    outcome = collection.poll_connectors(sessions)
    assert (outcome["stored"], outcome["no_open_slot"], outcome["invalid_label"]) == (2, 2, 1)
    stored = session.scalars(sa.select(Answer.external_id).order_by(Answer.id)).all()
    assert stored == ["asg-1", "asg-4"]


def test_publishing_is_retried_until_recorded_and_never_repeated(push_workforce, sessions):
    assert collection.publish_pending(sessions) == {}  # published already: nothing to send
    campaign = push_workforce
    campaign.import_items(5)  # two new items
    workforce_id = campaign.session.scalar(sa.text("SELECT id FROM workforce WHERE name = 'push'"))
    assert campaign.dispatch(workforce_id).status_code == 201
    original = FakePushConnector.publish

    def unreachable(self, batch):
        raise WorkforceUnavailableError("timeout")

    FakePushConnector.publish = unreachable
    try:
        assert collection.publish_pending(sessions) == {"unavailable": 1}  # stays `created`
    finally:
        FakePushConnector.publish = original
    assert collection.publish_pending(sessions) == {"published": 1}
    assert collection.publish_pending(sessions) == {}
    assert [len(spec.tasks) for spec in FakePushConnector.published] == [3, 2]
