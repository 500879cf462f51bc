"""Outside labeling vendors working through Quorum's vendor API.

A vendor's workforce pulls: it lists its open batches, fetches their tasks and
submits answers in bulk (`/api/v1/vendor/...`), so answers always arrive through
the API (`is_pull`). The hand-off of *work* is chosen per workforce:

- `handoff: pull` (default): the vendor polls `GET /api/v1/vendor/batches`;
- `handoff: webhook`: Quorum also announces published and cancelled batches to
  `webhook_url`, signed with the secret in the environment variable named by
  `webhook_secret_env` (never the secret itself; the workforce config is stored);
- `handoff: s3`: Quorum also writes each published batch to the vendor's bucket
  (`s3_bucket`, under `s3_prefix`) and reads the vendor's results files back from
  it (`connectors.vendor_s3`, driven by `orchestrator.services.vendor_s3`);
  `s3_endpoint_url` and `s3_region` reach S3-compatible stores. Credentials come
  only from boto3's chain, never from the config.

Gold slots come in the batch up front (`gold_on_demand` is False), so every task a
vendor sees is an ordinary one. The connector never learns which are gold either.

Task references: a vendor sees `task_ref`, not the item's id or external id (ids
follow import order, and gold is often imported last). `publish` draws a random
salt per batch, kept in the batch's connector state; `task_ref(salt, item_id)` is a
keyed hash of the item id, stable for the batch and meaningless outside it.
"""

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from connectors.base import (
    BatchSpec,
    CollectedAnswer,
    Connector,
    ConnectorConfigError,
    SubmissionRef,
    WorkerInfo,
)
from connectors.config_checks import check_http_url, check_region, invalid, refuse_credentials

if TYPE_CHECKING:
    from connectors.vendor_s3 import VendorBucket

HANDOFFS = ("pull", "webhook", "s3")
SETTINGS = {
    "handoff",
    "webhook_url",
    "webhook_secret_env",
    "s3_bucket",
    "s3_prefix",
    "s3_endpoint_url",
    "s3_region",
}
# S3's bucket naming rules: 3-63 lowercase letters, digits, dots and hyphens.
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
TASK_REF_BYTES = 10


def task_ref(salt: str, item_id: int) -> str:
    """Return the opaque reference a vendor sees for an item of a batch."""
    digest = hmac.new(salt.encode(), str(item_id).encode(), hashlib.sha256).hexdigest()
    return "t_" + digest[: TASK_REF_BYTES * 2]


def _check_url(config: Mapping[str, Any], key: str) -> None:
    parts = check_http_url(config, key)
    if parts is None:
        return
    if len(config[key]) > 2000:
        raise invalid(key, "must be at most 2000 characters")
    if parts.username is not None or parts.password is not None:
        raise invalid(key, "must not carry credentials")


def _check_s3(config: Mapping[str, Any]) -> None:
    bucket = config.get("s3_bucket")
    if bucket is None and config.get("handoff") == "s3":
        raise invalid("s3_bucket", "is required when handoff is s3")
    if bucket is not None and not (
        isinstance(bucket, str) and BUCKET_NAME.fullmatch(bucket) and ".." not in bucket
    ):
        raise invalid("s3_bucket", "must be an S3 bucket name (3-63 of a-z 0-9 . -)")
    prefix = config.get("s3_prefix")
    if prefix is not None and not (
        isinstance(prefix, str)
        and len(prefix) <= 512
        and not prefix.startswith("/")
        and prefix.isprintable()
    ):
        raise invalid("s3_prefix", "must be a folder path of at most 512 characters, no leading /")
    _check_url(config, "s3_endpoint_url")
    check_region(config, "s3_region")


class VendorConnector(Connector):
    """A vendor that pulls batches and pushes answers through the vendor API."""

    kind = "vendor"
    is_pull = True
    gold_on_demand = False

    @classmethod
    def validate_config(cls, config: Mapping[str, Any]) -> Mapping[str, Any]:
        """Accept `handoff` (pull, webhook or s3) and the settings of each hand-off.

        `webhook` hand-off needs an http(s) `webhook_url`; `webhook_secret_env` names
        the environment variable holding the signing secret. `s3` hand-off needs
        `s3_bucket`; `s3_prefix`, `s3_endpoint_url` and `s3_region` are optional. A
        key that looks like a credential is refused: boto3's chain supplies those.
        """
        unknown = set(config) - SETTINGS
        refuse_credentials(
            sorted(unknown),
            "S3 credentials come from boto3's chain "
            "(AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, instance role) and "
            "webhook secrets from the variable named by webhook_secret_env",
        )
        if unknown:
            raise ConnectorConfigError(
                f"unknown vendor setting {sorted(unknown)[0]!r}",
                details={"config": [f"unknown key: {key}" for key in sorted(unknown)]},
            )
        handoff = config.get("handoff", "pull")
        if handoff not in HANDOFFS:
            raise invalid("handoff", f"must be one of: {', '.join(HANDOFFS)}")
        _check_url(config, "webhook_url")
        if handoff == "webhook" and config.get("webhook_url") is None:
            raise invalid("webhook_url", "is required when handoff is webhook")
        secret_env = config.get("webhook_secret_env")
        if secret_env is not None and not (
            isinstance(secret_env, str) and secret_env.isidentifier() and len(secret_env) <= 120
        ):
            raise invalid("webhook_secret_env", "must name an environment variable")
        _check_s3(config)
        return config

    @property
    def handoff(self) -> str:
        """How the vendor learns of new work: `pull`, `webhook` or `s3`."""
        return str(self.config.get("handoff", "pull"))

    def bucket(self) -> "VendorBucket | None":
        """The vendor's bucket when the hand-off is `s3`, else None."""
        if self.handoff != "s3":
            return None
        from connectors.vendor_s3 import VendorBucket  # boto3 loads only when S3 is used

        return VendorBucket(
            bucket=str(self.config["s3_bucket"]),
            prefix=str(self.config.get("s3_prefix") or ""),
            endpoint_url=self.config.get("s3_endpoint_url"),
            region=self.config.get("s3_region"),
        )

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
