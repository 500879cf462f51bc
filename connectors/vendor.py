"""Outside labeling vendors working through Quorum's vendor API.

A vendor's workforce pulls: it lists its open batches, fetches their tasks and
submits answers in bulk (`/api/v1/vendor/...`), so answers always arrive through
the API (`is_pull`). The hand-off of *work* is chosen per workforce:

- `handoff: pull` (default): the vendor polls `GET /api/v1/vendor/batches`;
- `handoff: webhook`: Quorum also announces published and cancelled batches to
  `webhook_url`, signed with the secret in the environment variable named by
  `webhook_secret_env` (never the secret itself; the workforce config is stored).

Gold slots come in the batch up front (`gold_on_demand` is False), so every task a
vendor sees is an ordinary one. The connector never learns which are gold either.

Task references: a vendor sees `task_ref`, not the item's id or external id (ids
follow import order, and gold is often imported last). `publish` draws a random
salt per batch, kept in the batch's connector state; `task_ref(salt, item_id)` is a
keyed hash of the item id, stable for the batch and meaningless outside it.
"""

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from connectors.base import (
    BatchSpec,
    CollectedAnswer,
    Connector,
    ConnectorConfigError,
    SubmissionRef,
    WorkerInfo,
)

HANDOFFS = ("pull", "webhook")
SETTINGS = {"handoff", "webhook_url", "webhook_secret_env"}
TASK_REF_BYTES = 10


def task_ref(salt: str, item_id: int) -> str:
    """Return the opaque reference a vendor sees for an item of a batch."""
    digest = hmac.new(salt.encode(), str(item_id).encode(), hashlib.sha256).hexdigest()
    return "t_" + digest[: TASK_REF_BYTES * 2]


def _invalid(key: str, problem: str) -> ConnectorConfigError:
    return ConnectorConfigError(f"{key} {problem}", details={f"config.{key}": [problem]})


class VendorConnector(Connector):
    """A vendor that pulls batches and pushes answers through the vendor API."""

    kind = "vendor"
    is_pull = True
    gold_on_demand = False

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> Mapping[str, Any]:
        """Accept `handoff` (pull or webhook), `webhook_url` and `webhook_secret_env`.

        `webhook` hand-off needs an http(s) `webhook_url`; `webhook_secret_env` names
        the environment variable holding the signing secret.
        """
        unknown = set(config) - SETTINGS
        if unknown:
            raise ConnectorConfigError(
                f"unknown vendor setting {sorted(unknown)[0]!r}",
                details={"config": [f"unknown key: {key}" for key in sorted(unknown)]},
            )
        handoff = config.get("handoff", "pull")
        if handoff not in HANDOFFS:
            raise _invalid("handoff", f"must be one of: {', '.join(HANDOFFS)}")
        url = config.get("webhook_url")
        if url is not None:
            parts = urlsplit(url) if isinstance(url, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
                raise _invalid("webhook_url", "must be an http or https URL")
            if len(url) > 2000:
                raise _invalid("webhook_url", "must be at most 2000 characters")
        if handoff == "webhook" and url is None:
            raise _invalid("webhook_url", "is required when handoff is webhook")
        secret_env = config.get("webhook_secret_env")
        if secret_env is not None and not (
            isinstance(secret_env, str) and secret_env.isidentifier() and len(secret_env) <= 120
        ):
            raise _invalid("webhook_secret_env", "must name an environment variable")
        return config

    @property
    def handoff(self) -> str:
        """How the vendor learns of new work: `pull` or `webhook`."""
        return str(self.config.get("handoff", "pull"))

    def publish(self, batch: BatchSpec) -> SubmissionRef:
        """Open the batch to the vendor: draw the salt of its task references."""
        return SubmissionRef(
            batch_id=batch.batch_id,
            external_ref=f"vendor-{batch.batch_id}",
            state={"task_salt": secrets.token_hex(16), "handoff": self.handoff},
        )

    def collect(self, ref: SubmissionRef) -> list[CollectedAnswer]:
        """Nothing to poll: vendors submit answers through the API."""
        return []

    def cancel(self, ref: SubmissionRef) -> None:
        """Nothing to withdraw outside Quorum: the closed slots refuse further answers."""

    def workers(self) -> list[WorkerInfo]:
        """Vendor workers become known as they submit; Quorum's records are the source."""
        return []

    def review(self, answer_external_id: str, *, accept: bool, feedback: str = "") -> None:
        """Vendor answers are accepted on submission; quality is scored on gold."""

    def block_worker(self, worker_ref: str, *, reason: str) -> None:
        """Blocking is Quorum's record; the submission route refuses the worker's rows."""

    def pay_bonus(
        self,
        worker_ref: str,
        amount: Decimal,
        *,
        reason: str,
        token: str,
        answer_refs: Sequence[str] = (),
    ) -> None:
        """Vendor bonuses are settled on the vendor's invoice; the ledger records them."""
