"""A vendor's S3 bucket as a hand-off (`handoff: s3`): batches out, results in, reports back.

Layout under the workforce's `s3_prefix` (P, a folder; empty by default):

- `P batches/{batch_id}/tasks.jsonl`: written by Quorum, one task a line (`task_ref`,
  `data`, `instructions`, `labels`), exactly what the vendor API lists;
- `P batches/{batch_id}/manifest.json`: written by Quorum after the tasks, so its
  presence says the batch is complete: batch id, due time, task count, the tasks
  file's SHA-256, and where results go;
- `P results/{batch_id}/{name}.jsonl`: written by the vendor, one answer a line in
  the bulk endpoint's shape (`task_ref`, `worker_id`, `label`, `time_spent_ms`?);
- `P reports/{batch_id}/{name}.json`: written by Quorum for each results file it read
  (every version of it): accepted and rejected rows, with a reason for each.

This module only moves bytes; what they mean is `orchestrator.services.vendor_s3`'s.
Credentials come only from boto3's chain (environment, `~/.aws`, an instance role);
the workforce config never holds them. Every failure to reach or use the bucket is a
WorkforceUnavailableError: the scheduler tries again on its next run.
"""

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from connectors.base import WorkforceUnavailableError

RESULTS_SUFFIX = ".jsonl"


@dataclass(frozen=True)
class ResultsObject:
    """One object under `results/`, as listed or read: its key, ETag and size."""

    key: str
    etag: str
    size: int


def _etag(response: Mapping[str, Any]) -> str:
    """An S3 response's or listing's ETag, without its quotes."""
    return str(response.get("ETag", "")).strip('"')


def encode_json(document: Any) -> bytes:
    """Serialize a document the same way every time (sorted keys, compact, UTF-8)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class VendorBucket:
    """The vendor's bucket and folder, reached with boto3's S3 client."""

    def __init__(
        self,
        *,
        bucket: str,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        self.endpoint_url = endpoint_url
        self.region = region

    @cached_property
    def client(self) -> Any:
        """The boto3 S3 client: credentials from boto3's chain, a few quick retries."""
        # A few quick tries inside one call; the scheduler's next run is the real retry.
        config = Config(
            retries={"total_max_attempts": 3, "mode": "standard"},
            connect_timeout=5,
            read_timeout=30,
        )
        if self.endpoint_url:
            # S3-compatible stores often reject the CRC32 checksums boto3 adds by default.
            config = config.merge(
                Config(
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                )
            )
        return boto3.session.Session().client(
            "s3", region_name=self.region, endpoint_url=self.endpoint_url, config=config
        )

    def close(self) -> None:
        """Close the client's connections, if it was made; a later call makes a new one."""
        client = self.__dict__.pop("client", None)
        if client is not None:
            client.close()

    # --- where things go --------------------------------------------------------

    def tasks_key(self, batch_id: int) -> str:
        """The key of a batch's tasks file."""
        return f"{self.prefix}batches/{batch_id}/tasks.jsonl"

    def manifest_key(self, batch_id: int) -> str:
        """The key of a batch's manifest."""
        return f"{self.prefix}batches/{batch_id}/manifest.json"

    def closure_key(self, batch_id: int) -> str:
        """The key of the notice that a batch is closed (completed or cancelled)."""
        return f"{self.prefix}batches/{batch_id}/closed.json"

    def results_prefix(self, batch_id: int | None = None) -> str:
        """Where the vendor puts results (of one batch, when given)."""
        return f"{self.prefix}results/" + ("" if batch_id is None else f"{batch_id}/")

    def reports_prefix(self, batch_id: int) -> str:
        """Where Quorum puts the reports on a batch's results."""
        return f"{self.prefix}reports/{batch_id}/"

    def results_batch(self, key: str) -> int | None:
        """The batch a results key names (`results/{batch_id}/{name}.jsonl`), else None."""
        parts = key.removeprefix(self.results_prefix()).split("/")
        if len(parts) != 2 or not parts[1].endswith(RESULTS_SUFFIX) or parts[1] == RESULTS_SUFFIX:
            return None
        folder = parts[0]
        if not (folder.isascii() and folder.isdigit()) or folder.startswith("0"):
            return None
        return int(folder)

    def report_key(self, results_key: str) -> str:
        """The key of the report on a results object (`.jsonl` becomes `.json`)."""
        relative = results_key.removeprefix(self.results_prefix())
        return f"{self.prefix}reports/{relative.removesuffix(RESULTS_SUFFIX)}.json"

    # --- calls ------------------------------------------------------------------

    @contextmanager
    def _errors(self, operation: str, key: str) -> Iterator[None]:
        """Turn any failure of an S3 call into WorkforceUnavailableError (retry later)."""
        try:
            yield
        except ClientError as exc:
            error = exc.response.get("Error", {})
            message = f"{error.get('Code', 'error')}: {error.get('Message', '')}"
        except BotoCoreError as exc:  # unreachable, timed out, no credentials...
            message = str(exc)
        else:
            return
        raise WorkforceUnavailableError(
            f"S3 {operation} s3://{self.bucket}/{key} failed: {message}"[:500],
            details={"operation": operation, "bucket": self.bucket, "key": key},
        )

    def put(self, key: str, body: bytes, content_type: str) -> str:
        """Write an object; return its ETag (without quotes)."""
        with self._errors("put_object", key):
            response = self.client.put_object(
                Bucket=self.bucket, Key=key, Body=body, ContentType=content_type
            )
        return _etag(response)

    def put_batch(self, batch_id: int, tasks: bytes, manifest: Mapping[str, Any]) -> str:
        """Write a batch's tasks, then its manifest; return the manifest's ETag.

        Both are rewritten whole, with the same bytes for the same batch, so writing
        a batch twice (a retry after a crash) changes nothing the vendor can see.
        """
        self.put(self.tasks_key(batch_id), tasks, "application/x-ndjson")
        return self.put(self.manifest_key(batch_id), encode_json(manifest), "application/json")

    def put_closure(self, batch_id: int, notice: Mapping[str, Any]) -> str:
        """Write the notice that a batch is closed; return its ETag."""
        return self.put(self.closure_key(batch_id), encode_json(notice), "application/json")

    def list_results(self) -> list[ResultsObject]:
        """List every object under `results/` (all pages); folder markers are left out."""
        prefix = self.results_prefix()
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=prefix
        )
        with self._errors("list_objects_v2", prefix):
            return [
                ResultsObject(item["Key"], _etag(item), item["Size"])
                for page in pages
                for item in page.get("Contents", [])
                if not item["Key"].endswith("/")
            ]

    def read(self, key: str) -> tuple[bytes, ResultsObject] | None:
        """Return an object's bytes and what was read (its ETag), or None if it is gone."""
        with self._errors("get_object", key):
            try:
                response = self.client.get_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") == "NoSuchKey":
                    return None  # deleted since it was listed
                raise
            body: bytes = response["Body"].read()
        return body, ResultsObject(key, _etag(response), len(body))

    def put_report(self, results_key: str, report: Mapping[str, Any]) -> str:
        """Write the report on a results object; return its key."""
        key = self.report_key(results_key)
        self.put(key, encode_json(report), "application/json")
        return key
