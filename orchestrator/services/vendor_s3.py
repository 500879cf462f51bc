"""The S3 hand-off of vendor workforces (`handoff: s3`): batches out, results in, reports back.

Two scheduler jobs do it, each calling S3 with no transaction open (read in one
transaction, call S3, record in another), so a slow or absent bucket never holds a
request or a lock, and what failed is simply tried again on the next run:

- `export_batches` writes each open batch of an S3 workforce to its bucket
  (`batches/{id}/tasks.jsonl`, then `batches/{id}/manifest.json`) and records the
  manifest. The tasks are exactly what `GET /api/v1/vendor/batches/{id}/tasks`
  lists (`orchestrator.services.vendors.list_tasks`): opaque task refs and item
  data, gold looking like any other task. The bytes depend only on the batch, so
  writing a batch again (a crash between the write and the record) is harmless.
- `ingest_results` lists `results/`, reads each object version (key and ETag) it
  has not recorded, and submits its rows through `vendors.submit_answers`, the
  bulk endpoint's own checks and intake, so gold scoring, blocking and the ledger
  work exactly as for API submissions. The object's record is claimed in the same
  transaction as its answers (unique on workforce, key and ETag), so a re-run stores
  nothing twice. A new version of a file (new ETag) is read again: answers it repeats
  come back as `duplicate_answer`. A report per object goes to `reports/`; its record
  stays `reporting` until the report is written, so the vendor always gets one.

A results file must be `results/{batch_id}/{name}.jsonl` for a batch of the same
workforce; any other object under `results/` is refused whole, with a report saying
why (a batch of another workforce or vendor is "not found", as on the API).
"""

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from connectors.base import ConnectorError, WorkforceUnavailableError
from connectors.vendor import VendorConnector
from connectors.vendor_s3 import ResultsObject, VendorBucket, encode_json
from orchestrator.db import UNSTORABLE_TEXT_MESSAGE, is_storable_text, utcnow
from orchestrator.errors import ConflictError, NotFoundError
from orchestrator.models import Batch, VendorS3Object, Workforce
from orchestrator.models.batches import CLOSED_BATCH_STATUSES, OPEN_BATCH_STATUSES
from orchestrator.services import vendor_quality, vendors
from orchestrator.services.answers import MAX_TIME_SPENT_MS
from orchestrator.services.workforces import connector_for

log = logging.getLogger("quorum.vendor_s3")

MAX_OBJECT_BYTES = 32 * 1024 * 1024
MAX_ROWS = 50_000
CHUNK_ROWS = 5_000  # rows per submit_answers call: the bulk endpoint's own limit
ROW_FIELDS = ("task_ref", "worker_id", "label", "time_spent_ms")
INVALID_ROW = "invalid_row"


@dataclass(frozen=True)
class Target:
    """An active S3 vendor workforce and its bucket."""

    workforce_id: int
    vendor_id: int
    bucket: VendorBucket


@contextmanager
def open_targets(sessions: sessionmaker[Session]) -> Iterator[list[Target]]:
    """The active S3 vendor workforces; their S3 clients are closed on leaving."""
    with sessions.begin() as session:
        targets = _list_targets(session)
    try:
        yield targets
    finally:
        for target in targets:
            target.bucket.close()


def _list_targets(session: Session) -> list[Target]:
    targets = []
    for workforce in session.scalars(
        sa.select(Workforce)
        .where(
            Workforce.kind == "vendor",
            Workforce.status == "active",
            Workforce.vendor_id.is_not(None),
            Workforce.config["handoff"].as_string() == "s3",
        )
        .order_by(Workforce.id)
    ):
        try:
            connector = connector_for(workforce)
        except ConnectorError as exc:  # a stored config that no longer validates
            log.error(
                "S3 hand-off skipped: bad workforce config",
                extra={"workforce_id": workforce.id, "error": exc.message},
            )
            continue
        bucket = connector.bucket() if isinstance(connector, VendorConnector) else None
        if bucket is not None and workforce.vendor_id is not None:
            targets.append(Target(workforce.id, workforce.vendor_id, bucket))
    return targets


def _record(session: Session, **values: Any) -> int | None:
    """Insert an object's record; return its id, or None when that version is recorded."""
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect](VendorS3Object)
    return session.scalar(
        insert.values(created_at=utcnow(), rows=0, accepted=0, rejected=0, **values)
        .on_conflict_do_nothing(index_elements=["workforce_id", "key", "etag"])
        .returning(VendorS3Object.id)
    )


# --- batches out ----------------------------------------------------------------


def batch_files(session: Session, target: Target, batch_id: int) -> tuple[bytes, dict[str, Any]]:
    """Return a batch's `tasks.jsonl` bytes and its manifest, as the vendor API shows it."""
    view = vendors.get_batch(session, vendor_id=target.vendor_id, batch_id=batch_id)
    _, tasks, total = vendors.list_tasks(
        session,
        vendor_id=target.vendor_id,
        batch_id=batch_id,
        limit=view.task_count,
        offset=0,
    )
    body = b"".join(
        encode_json(
            {
                "task_ref": task.task_ref,
                "data": task.data,
                "instructions": view.instructions,
                "labels": view.labels,
            }
        )
        + b"\n"
        for task in tasks
    )
    bucket = target.bucket
    manifest = {
        "batch_id": view.id,
        "title": view.title,
        "instructions": view.instructions,
        "labels": view.labels,
        "overlap": view.overlap,
        "task_count": total,
        "due_at": view.due_at.isoformat() if view.due_at else None,
        "published_at": view.published_at.isoformat() if view.published_at else None,
        "tasks": {
            "key": bucket.tasks_key(batch_id),
            "sha256": hashlib.sha256(body).hexdigest(),
            "bytes": len(body),
        },
        "results": {
            "prefix": bucket.results_prefix(batch_id),
            "format": "one JSON object a line, in files named {name}.jsonl",
            "fields": list(ROW_FIELDS),
        },
        "reports": {"prefix": bucket.reports_prefix(batch_id)},
    }
    return body, manifest


def export_batches(sessions: sessionmaker[Session], *, limit: int = 100) -> dict[str, int]:
    """Write open batches of S3 vendor workforces to their buckets, and notices when they close.

    Each batch is written once, and an exported batch that completes or is cancelled gets
    `batches/{id}/closed.json` once; what failed is retried next run.
    """
    with open_targets(sessions) as listed:
        targets = {target.workforce_id: target for target in listed}
        counts: Counter[str] = Counter()
        down: set[int] = set()  # workforces whose bucket just failed: the rest waits
        for kind, status in (
            ("manifest", OPEN_BATCH_STATUSES),
            ("closure", CLOSED_BATCH_STATUSES),
        ):
            with sessions.begin() as session:
                due = _due(session, targets, kind, status, limit)
            for batch_id, workforce_id in due:
                etag = _write(sessions, targets[workforce_id], kind, batch_id, down)
                counts["exported" if kind == "manifest" else "closed"] += etag is not None
                counts["unavailable"] += etag is None
        return {name: count for name, count in counts.items() if count}


def _due(
    session: Session, targets: dict[int, Target], kind: str, status: Sequence[str], limit: int
) -> Sequence[Any]:
    """The batches in `status` of the targets' workforces that still need a `kind` object.

    A closure notice is only for a batch whose manifest was written: a batch the vendor
    never saw needs none.
    """

    def recorded(of_kind: str) -> Any:
        return sa.exists().where(
            VendorS3Object.batch_id == Batch.id,
            VendorS3Object.workforce_id == Batch.workforce_id,
            VendorS3Object.kind == of_kind,
        )

    wanted = [Batch.workforce_id.in_(list(targets)), Batch.status.in_(status), ~recorded(kind)]
    if kind == "closure":
        wanted.append(recorded("manifest"))
    return session.execute(
        sa.select(Batch.id, Batch.workforce_id).where(*wanted).order_by(Batch.id).limit(limit)
    ).all()


def _write(
    sessions: sessionmaker[Session], target: Target, kind: str, batch_id: int, down: set[int]
) -> str | None:
    """Write a batch's manifest (with its tasks) or closure notice and record it.

    Returns the object's ETag, or None when the bucket failed (or failed earlier in
    this run): it is tried again next run.
    """
    if target.workforce_id in down:
        return None
    bucket = target.bucket
    with sessions.begin() as session:
        if kind == "manifest":
            tasks, manifest = batch_files(session, target, batch_id)
            write, key = partial(bucket.put_batch, batch_id, tasks, manifest), bucket.manifest_key
        else:
            notice = closure_notice(session, batch_id)
            write, key = partial(bucket.put_closure, batch_id, notice), bucket.closure_key
    try:
        etag = write()
    except WorkforceUnavailableError as exc:
        log.warning(
            "S3 batch export failed; retried next run",
            extra={
                "workforce_id": target.workforce_id,
                "batch_id": batch_id,
                "object": kind,
                "error": exc.message,
            },
        )
        down.add(target.workforce_id)
        return None
    with sessions.begin() as session:
        _record(
            session,
            workforce_id=target.workforce_id,
            batch_id=batch_id,
            kind=kind,
            key=key(batch_id),
            etag=etag,
            status="written",
        )
    return etag


def closure_notice(session: Session, batch_id: int) -> dict[str, Any]:
    """What `batches/{id}/closed.json` says: the batch's final status and when it closed."""
    status, closed_at = session.execute(
        sa.select(Batch.status, Batch.completed_at).where(Batch.id == batch_id)
    ).one()
    return {
        "batch_id": batch_id,
        "status": status,
        "closed_at": closed_at.isoformat() if closed_at else None,
    }


# --- results in -----------------------------------------------------------------


def parse_row(line: str) -> vendors.AnswerRow | str:
    """Read one results line into an answer row, or return why it is invalid."""
    try:
        row = json.loads(line)
    except ValueError as exc:
        return f"not JSON: {exc}"
    if not isinstance(row, dict):
        return "not a JSON object"
    unknown = sorted(set(row) - set(ROW_FIELDS))
    if unknown:
        return f"unknown field {unknown[0]!r}; fields are: {', '.join(ROW_FIELDS)}"
    for name, longest in vendors.ROW_TEXT_LIMITS.items():
        value = row.get(name)
        if not isinstance(value, str) or not 1 <= len(value) <= longest:
            return f"{name} must be a string of 1 to {longest} characters"
        if not is_storable_text(value):
            return f"{name} {UNSTORABLE_TEXT_MESSAGE}"
    spent = row.get("time_spent_ms")
    if spent is not None and (
        isinstance(spent, bool) or not isinstance(spent, int) or not 0 <= spent <= MAX_TIME_SPENT_MS
    ):
        return f"time_spent_ms must be a whole number from 0 to {MAX_TIME_SPENT_MS}"
    return vendors.AnswerRow(row["task_ref"], row["worker_id"], row["label"], spent)


def _text_field(line: str, name: str) -> str | None:
    """A refused row's text field, to echo in the report; None if it cannot be stored."""
    try:
        row = json.loads(line)
    except ValueError:
        return None
    value = row.get(name) if isinstance(row, dict) else None
    return value if isinstance(value, str) and is_storable_text(value) else None


def _report(obj: ResultsObject, batch_id: int | None) -> dict[str, Any]:
    return {
        "object": obj.key,
        "etag": obj.etag,
        "batch_id": batch_id,
        "processed_at": utcnow().isoformat(),
        "status": "refused",
        "reason": None,
        "rows": 0,
        "accepted_count": 0,
        "rejected_count": 0,
        "accepted": [],
        "rejected": [],
    }


def process_results(
    session: Session, target: Target, obj: ResultsObject, body: bytes | None
) -> dict[str, Any]:
    """Submit a results file's rows through the bulk checks; return the vendor's report.

    `body` is None when the object is too big to read. Valid rows are stored even
    when others are rejected, as on the bulk endpoint; a file refused whole stores
    nothing.
    """
    batch_id = target.bucket.results_batch(obj.key)
    report = _report(obj, batch_id)

    def refuse(reason: str) -> dict[str, Any]:
        report["reason"] = reason
        return report

    if batch_id is None:
        return refuse(f"results go in {target.bucket.results_prefix()}{{batch_id}}/{{name}}.jsonl")
    is_ours = session.scalar(
        sa.select(Batch.id).where(Batch.id == batch_id, Batch.workforce_id == target.workforce_id)
    )
    if is_ours is None:
        report["batch_id"] = None  # say nothing of a batch that is not this workforce's
        return refuse(f"batch {batch_id} not found")
    if body is None:
        return refuse(f"larger than {MAX_OBJECT_BYTES} bytes: split it into several files")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return refuse("not UTF-8 text")
    # JSON Lines: records end at "\n" only (JSON strings may hold other line breaks).
    lines = [(number, line) for number, line in enumerate(text.split("\n"), 1) if line.strip()]
    if len(lines) > MAX_ROWS:
        return refuse(f"{len(lines)} rows; at most {MAX_ROWS} rows a file: split it")
    report["rows"] = len(lines)
    valid: list[tuple[int, vendors.AnswerRow]] = []
    for number, line in lines:
        parsed = parse_row(line)
        if isinstance(parsed, str):
            report["rejected"].append(
                {
                    "line": number,
                    "task_ref": _text_field(line, "task_ref"),
                    "worker_id": _text_field(line, "worker_id"),
                    "code": INVALID_ROW,
                    "reason": parsed,
                }
            )
        else:
            valid.append((number, parsed))
    try:
        with session.begin_nested():
            for start in range(0, len(valid), CHUNK_ROWS):
                _submit(session, target, batch_id, valid[start : start + CHUNK_ROWS], report)
    except (ConflictError, NotFoundError) as exc:  # the batch takes no answers: store none
        report.update(accepted=[], rejected=[])
        return refuse(exc.message)
    report["rejected"].sort(key=lambda row: row["line"])
    vendor_quality.record_submission(
        session,
        None,
        vendor_id=target.vendor_id,
        batch_id=batch_id,
        rows=len(lines),
        accepted=len(report["accepted"]),
        rejected_codes=[row["code"] for row in report["rejected"]],
    )
    report["status"] = "processed"
    report["accepted_count"] = len(report["accepted"])
    report["rejected_count"] = len(report["rejected"])
    return report


def _submit(
    session: Session,
    target: Target,
    batch_id: int,
    chunk: Sequence[tuple[int, vendors.AnswerRow]],
    report: dict[str, Any],
) -> None:
    submission = vendors.submit_answers(
        session,
        vendor_id=target.vendor_id,
        batch_id=batch_id,
        rows=[row for _, row in chunk],
    )
    for accepted in submission.accepted:
        report["accepted"].append(
            {
                "line": chunk[accepted["row"]][0],
                "task_ref": accepted["task_ref"],
                "worker_id": accepted["worker_id"],
                "answer_id": accepted["answer_id"],
            }
        )
    for rejected in submission.rejected:
        report["rejected"].append(
            {"line": chunk[rejected["row"]][0]} | {k: v for k, v in rejected.items() if k != "row"}
        )


def ingest_object(sessions: sessionmaker[Session], target: Target, listed: ResultsObject) -> str:
    """Read one results object version and store its answers once; return the outcome.

    Outcomes: `processed` or `refused` (recorded, report to write), `seen` (that
    version is recorded already), `gone` (deleted since it was listed).
    """
    body: bytes | None = None
    obj = listed
    if listed.size <= MAX_OBJECT_BYTES:
        read = target.bucket.read(listed.key)
        if read is None:
            return "gone"
        body, obj = read  # the ETag of the bytes read, which may be newer than the listing's
        if obj.size > MAX_OBJECT_BYTES:
            body = None
    with sessions.begin() as session:
        record_id = _record(
            session,
            workforce_id=target.workforce_id,
            kind="results",
            key=obj.key,
            etag=obj.etag,
            status="reporting",
        )
        if record_id is None:
            return "seen"
        report = process_results(session, target, obj, body)
        session.execute(
            sa.update(VendorS3Object)
            .where(VendorS3Object.id == record_id)
            .values(
                batch_id=report["batch_id"],
                outcome=report["status"],
                rows=report["rows"],
                accepted=report["accepted_count"],
                rejected=report["rejected_count"],
                report=report,
            )
        )
    log.info(
        "S3 results read",
        extra={
            "workforce_id": target.workforce_id,
            "key": obj.key,
            "outcome": report["status"],
            "accepted": report["accepted_count"],
            "rejected": report["rejected_count"],
        },
    )
    return str(report["status"])


def write_reports(sessions: sessionmaker[Session], target: Target, *, limit: int = 100) -> int:
    """Write the reports still owed to a workforce's bucket; return how many were written."""
    with sessions.begin() as session:
        owed = session.execute(
            sa.select(VendorS3Object.id, VendorS3Object.key, VendorS3Object.report)
            .where(
                VendorS3Object.workforce_id == target.workforce_id,
                VendorS3Object.kind == "results",
                VendorS3Object.status == "reporting",
            )
            .order_by(VendorS3Object.id)
            .limit(limit)
        ).all()
    for record_id, key, report in owed:
        target.bucket.put_report(key, report or {})
        with sessions.begin() as session:
            session.execute(
                sa.update(VendorS3Object)
                .where(VendorS3Object.id == record_id)
                .values(status="reported", reported_at=utcnow())
            )
    return len(owed)


def _recorded(session: Session, workforce_id: int, keys: Iterable[str]) -> set[tuple[str, str]]:
    """Return the (key, ETag) pairs among `keys` that a workforce has recorded."""
    keys = sorted(set(keys))
    found: set[tuple[str, str]] = set()
    for start in range(0, len(keys), 500):
        found.update(
            (key, etag)
            for key, etag in session.execute(
                sa.select(VendorS3Object.key, VendorS3Object.etag).where(
                    VendorS3Object.workforce_id == workforce_id,
                    VendorS3Object.key.in_(keys[start : start + 500]),
                )
            )
        )
    return found


def ingest_results(sessions: sessionmaker[Session], *, limit: int = 100) -> dict[str, int]:
    """Read new results files from every S3 vendor's bucket, store their answers, report back."""
    with open_targets(sessions) as targets:
        return _ingest_results(sessions, targets, limit)


def _ingest_results(
    sessions: sessionmaker[Session], targets: list[Target], limit: int
) -> dict[str, int]:
    counts: Counter[str] = Counter()
    for target in targets:
        try:
            listed = target.bucket.list_results()
            with sessions.begin() as session:
                recorded = _recorded(session, target.workforce_id, (o.key for o in listed))
            fresh = [o for o in listed if (o.key, o.etag) not in recorded][:limit]
            for obj in fresh:
                try:
                    counts[ingest_object(sessions, target, obj)] += 1
                except WorkforceUnavailableError:
                    raise
                except Exception:  # one file's fault must not hold back the others
                    log.exception(
                        "S3 results file failed; retried next run",
                        extra={"workforce_id": target.workforce_id, "key": obj.key},
                    )
                    counts["failed"] += 1
            counts["reported"] += write_reports(sessions, target)
        except WorkforceUnavailableError as exc:  # nothing half-done: the next run goes on
            log.warning(
                "S3 results ingest failed; retried next run",
                extra={"workforce_id": target.workforce_id, "error": exc.message},
            )
            counts["unavailable"] += 1
    return dict(counts)
