"""The internal annotator pool: workers with worker keys pull tasks from Quorum's API.

The pool's queue and leases live in Quorum's database, which the orchestrator
owns (orchestrator/services/pool.py), so this connector has nothing to send or
poll: publishing makes the batch's slots available to the pool's hand-out route.
"""

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from connectors.base import (
    BatchSpec,
    CollectedAnswer,
    Connector,
    ConnectorConfigError,
    SubmissionRef,
    WorkerInfo,
)


class InternalPoolConnector(Connector):
    """Annotators employed by the requester, served by `GET /api/v1/tasks/next`."""

    kind = "internal"
    is_pull = True
    gold_on_demand = True

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> Mapping[str, Any]:
        """Accept an optional `lease_seconds` override (10 to 86,400)."""
        unknown = set(config) - {"lease_seconds"}
        if unknown:
            raise ConnectorConfigError(
                f"unknown internal pool setting {sorted(unknown)[0]!r}",
                details={"config": [f"unknown key: {key}" for key in sorted(unknown)]},
            )
        lease = config.get("lease_seconds")
        if lease is not None and not (isinstance(lease, int) and 10 <= lease <= 86_400):
            raise ConnectorConfigError(
                "lease_seconds must be an integer from 10 to 86400",
                details={"config.lease_seconds": ["must be an integer from 10 to 86400"]},
            )
        return config

    def publish(self, batch: BatchSpec) -> SubmissionRef:
        """Nothing to send: the slots are already in the pool's queue."""
        return SubmissionRef(batch_id=batch.batch_id, external_ref=f"internal-{batch.batch_id}")

    def collect(self, ref: SubmissionRef) -> list[CollectedAnswer]:
        """Nothing to poll: answers arrive through the API."""
        return []

    def cancel(self, ref: SubmissionRef) -> None:
        """Nothing to withdraw outside Quorum: the orchestrator closes the slots."""

    def workers(self) -> list[WorkerInfo]:
        """The pool's workers are Quorum's own records; nothing external to report."""
        return []

    def review(self, answer_external_id: str, *, accept: bool, feedback: str = "") -> None:
        """Internal answers need no external approval."""

    def block_worker(self, worker_ref: str, *, reason: str) -> None:
        """Blocking is the orchestrator's record; the hand-out route enforces it."""

    def pay_bonus(
        self,
        worker_ref: str,
        amount: Decimal,
        *,
        reason: str,
        token: str,
        answer_refs: Sequence[str] = (),
    ) -> None:
        """Internal bonuses are paid through payroll; the ledger records them."""
