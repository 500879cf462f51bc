"""The one interface every workforce connector implements.

The orchestrator owns the database; a connector only talks to its workforce. It
receives plain data (`BatchSpec`), returns plain data (`SubmissionRef`,
`CollectedAnswer`), and never learns which items are gold: gold items are
ordinary tasks to every connector, so no workforce can tell them apart.

Two shapes of workforce fit behind it:

- pull workforces (the internal pool, vendors) receive work through Quorum's own
  routes: `publish` announces it, answers arrive through the API, `collect` returns
  nothing. A vendor may also be told of work by webhook or given it in its S3
  bucket; its answers still go through the vendor API's acceptance rules;
- push workforces (Mechanical Turk) are sent the work by `publish` and polled by
  `collect`, which is the source of truth.
"""

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar


class ConnectorError(Exception):
    """Base class of connector failures."""

    code = "connector_error"

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}


class UnknownConnectorError(ConnectorError):
    """No connector is registered under a name, or it failed to load."""

    code = "unknown_connector"


class ConnectorConfigError(ConnectorError):
    """A workforce's connector configuration is invalid."""

    code = "invalid_connector_config"


class WorkforceUnavailableError(ConnectorError):
    """The workforce's service did not answer or refused the call; retry later."""

    code = "workforce_unavailable"


@dataclass(frozen=True)
class TaskSpec:
    """One item to label, as the workforce sees it: no gold flag, no gold answer."""

    task_ref: str
    data: Mapping[str, Any]
    slots: int


@dataclass(frozen=True)
class BatchSpec:
    """A batch to publish: the project's instructions, labels and reward, and its tasks."""

    batch_id: int
    project_id: int
    title: str
    instructions: str
    labels: Sequence[str]
    reward: Decimal
    currency: str
    tasks: Sequence[TaskSpec]
    due_at: datetime | None = None


@dataclass(frozen=True)
class SubmissionRef:
    """Where a published batch lives in the workforce, and any state needed to poll it."""

    batch_id: int
    external_ref: str | None = None
    state: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CollectedAnswer:
    """One answer collected from a push workforce; `external_id` makes storing it idempotent."""

    external_id: str
    task_ref: str
    worker_ref: str
    label: str
    submitted_at: datetime
    time_spent_ms: int | None = None


@dataclass(frozen=True)
class WorkerInfo:
    """A worker as the workforce reports it."""

    worker_ref: str
    status: str = "active"
    details: Mapping[str, Any] = field(default_factory=dict)


class Connector(abc.ABC):
    """A workforce that accepts labeling batches and returns answers."""

    kind: ClassVar[str]
    #: True when answers arrive through Quorum's API rather than by polling.
    is_pull: ClassVar[bool] = False
    #: True when the orchestrator makes gold slots per worker, on demand (the internal
    #: pool's hand-out); False puts `overlap` slots per gold item in the batch up front,
    #: as ordinary tasks, so a workforce that sees a batch's tasks cannot tell gold apart.
    gold_on_demand: ClassVar[bool] = False

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(self.validate_config(config))

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> Mapping[str, Any]:
        """Check a workforce configuration; raise ConnectorConfigError naming the key."""
        return config

    @abc.abstractmethod
    def publish(self, batch: BatchSpec) -> SubmissionRef:
        """Make a batch's tasks available to the workforce.

        Must be idempotent per `batch.batch_id`: after a crash between sending and
        recording, the scheduler publishes the same batch again (MTurk: derive every
        UniqueRequestToken from the batch and task ids).
        """

    @abc.abstractmethod
    def collect(self, ref: SubmissionRef) -> list[CollectedAnswer]:
        """Return the answers submitted so far (all of them; storing is idempotent)."""

    @abc.abstractmethod
    def cancel(self, ref: SubmissionRef) -> None:
        """Withdraw a batch's remaining work."""

    @abc.abstractmethod
    def workers(self) -> list[WorkerInfo]:
        """Report the workers the workforce knows."""

    @abc.abstractmethod
    def review(self, answer_external_id: str, *, accept: bool, feedback: str = "") -> None:
        """Approve or reject one collected answer."""

    @abc.abstractmethod
    def block_worker(self, worker_ref: str, *, reason: str) -> None:
        """Stop a worker from receiving more of our work."""

    @abc.abstractmethod
    def pay_bonus(
        self,
        worker_ref: str,
        amount: Decimal,
        *,
        reason: str,
        token: str,
        answer_refs: Sequence[str] = (),
    ) -> None:
        """Pay a worker a bonus; `token` is deterministic so a retry never pays twice.

        `answer_refs` are the external ids (as `collect` returned them) of the worker's
        answers in the project, newest first. Every connector accepts the argument; a
        workforce that ties a bonus to earlier work uses it (MTurk: the assignment id),
        the others ignore it.
        """
