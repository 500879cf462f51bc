"""Background jobs that keep Quorum working on its own (`quorum scheduler`).

Each job run is one unit of work. On PostgreSQL a job first takes a transaction-level
advisory lock named after it, so with several scheduler processes each run happens in
exactly one of them; the lock goes with the transaction, so a process that dies
mid-job leaves nothing held and the next run finishes the work. SQLite allows one
scheduler process: a second one is refused with a clear message.
"""

import fcntl
import logging
import os
import socket
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import IO, Any

import sqlalchemy as sa
from apscheduler.schedulers.blocking import BlockingScheduler
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from orchestrator.db import make_engine, make_sessionmaker, utcnow
from orchestrator.models import Answer, Assignment, Batch, Item, JobRun, Project
from orchestrator.services import (
    aggregation,
    collection,
    deadlines,
    idempotency,
    mturk_review,
    outbox,
    pool,
    vendor_s3,
)
from orchestrator.settings import Settings

log = logging.getLogger("quorum.scheduler")
RUNNER = f"{socket.gethostname()}:{os.getpid()}"


class SchedulerAlreadyRunningError(RuntimeError):
    """Another scheduler process holds the SQLite scheduler lock."""


def expire_leases(session: Session) -> dict[str, int]:
    """End leases past their expiry and reopen their slots."""
    return {"expired": pool.expire_leases(session)}


def refresh_results(sessions: sessionmaker[Session]) -> dict[str, int]:
    """Re-aggregate active projects with new answers and top up their unsure items.

    Each project's aggregation and its top-up are transactions of their own. One
    transaction would hold the items' row locks (taken by aggregation) while waiting for
    the project's (taken by a budget check), the reverse of answer intake's order.
    """
    runs = topped_up = 0
    with sessions.begin() as session:
        project_ids = session.scalars(
            sa.select(Project.id).where(
                Project.status == "active",
                sa.exists().where(Answer.project_id == Project.id, Answer.status == "accepted"),
            )
        ).all()
    for project_id in project_ids:
        with sessions.begin() as session:
            summary = aggregation.refresh(session, project_id)
            runs += int(bool(summary and summary.ran))
        with sessions.begin() as session:
            topped_up += aggregation.top_up(session, project_id)
    return {"aggregated": runs, "topped_up": topped_up}


def close_batches(session: Session) -> dict[str, int]:
    """Complete batches with no open or leased slot left; close the open slots of overdue ones.

    A batch past its `due_at` takes no new hand-outs: its open slots are cancelled, so
    their items become pending again and can be dispatched elsewhere. Leased slots may
    still be answered; the batch completes when the last one ends.
    """
    now = utcnow()
    overdue = sa.select(Batch.id).where(
        Batch.status.in_(("published", "in_progress")),
        Batch.due_at.is_not(None),
        Batch.due_at <= now,
    )
    withdrawn = session.execute(
        sa.update(Assignment)
        .where(Assignment.batch_id.in_(overdue), Assignment.status == "open")
        .values(status="cancelled")
        .execution_options(synchronize_session=False)
    ).rowcount
    live = sa.exists().where(
        Assignment.batch_id == Batch.id, Assignment.status.in_(("open", "leased"))
    )
    closed = session.execute(
        sa.update(Batch)
        .where(Batch.status.in_(("published", "in_progress")), ~live)
        .values(status="completed", completed_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount
    return {"completed": closed, "overdue_slots_withdrawn": withdrawn}


def complete_projects(session: Session) -> dict[str, int]:
    """Mark active projects complete when every item has its answers and no work is live.

    A project is complete when it has items, none is short of `overlap` accepted
    answers, no slot is open or leased, and the last aggregation saw every answer.
    Importing new items makes it active again.
    """
    short = sa.exists().where(
        Item.project_id == Project.id,
        Item.gold_label.is_(None),
        Item.answer_count < Project.overlap,
    )
    live = sa.exists().where(
        Assignment.project_id == Project.id, Assignment.status.in_(("open", "leased"))
    )
    has_items = sa.exists().where(Item.project_id == Project.id, Item.gold_label.is_(None))
    candidates = session.scalars(
        sa.select(Project.id).where(Project.status == "active", has_items, ~short, ~live)
    ).all()
    completed = 0
    for project_id in candidates:
        summary = aggregation.refresh(session, project_id)
        if aggregation.top_up(session, project_id):
            continue  # an unsure item just got one more slot
        session.execute(
            sa.update(Project)
            .where(Project.id == project_id)
            .values(status="completed", updated_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        completed += 1
        log.info("project completed", extra={"project_id": project_id, "ran": bool(summary)})
    return {"completed": completed}


def purge_idempotency_keys(session: Session) -> dict[str, int]:
    """Delete stored idempotent responses past their retention."""
    return {"purged": idempotency.purge_expired(session)}


@dataclass(frozen=True)
class Job:
    """A scheduled job: its function and how often it runs."""

    name: str
    run: Callable[[Any], dict[str, int]]
    seconds: int
    # False: `run(session)` inside the job's one transaction. True: `run(sessions)` opens
    # its own short transactions, for jobs that call outside (webhooks) and must hold no
    # transaction open meanwhile; their claims keep two processes off the same work.
    own_transactions: bool = False


def default_jobs(settings: Settings) -> list[Job]:
    """The jobs and their intervals (seconds, from settings)."""
    return [
        Job("expire_leases", expire_leases, settings.expire_interval),
        Job("refresh_results", refresh_results, settings.aggregate_interval, own_transactions=True),
        Job("close_batches", close_batches, settings.close_interval),
        Job("complete_projects", complete_projects, settings.close_interval),
        Job("purge_idempotency_keys", purge_idempotency_keys, 3600),
        Job(
            "announce_due_soon",
            partial(deadlines.announce_due_soon, lead=timedelta(seconds=settings.due_soon_lead)),
            settings.close_interval,
        ),
        Job(
            "poll_connectors",
            collection.poll_connectors,
            settings.poll_interval,
            own_transactions=True,
        ),
        Job(
            "review_mturk",
            mturk_review.review_mturk,
            settings.poll_interval,
            own_transactions=True,
        ),
        Job(
            "publish_batches",
            collection.publish_pending,
            settings.outbox_interval,
            own_transactions=True,
        ),
        Job(
            "export_s3_batches",
            vendor_s3.export_batches,
            settings.outbox_interval,
            own_transactions=True,
        ),
        Job(
            "ingest_s3_results",
            vendor_s3.ingest_results,
            settings.poll_interval,
            own_transactions=True,
        ),
        Job(
            "deliver_outbox",
            partial(
                outbox.deliver_due,
                policy=outbox.RetryPolicy(max_attempts=settings.webhook_max_attempts),
            ),
            settings.outbox_interval,
            own_transactions=True,
        ),
    ]


def run_job(
    sessions: sessionmaker[Session], job: Job, *, now: float | None = None
) -> dict[str, Any] | None:
    """Run one job for the current tick, in one transaction, in exactly one process.

    The tick is the number of the job's interval (`now // seconds`). A `job_run` row per
    job and tick makes a run happen once per tick however many schedulers there are,
    and a PostgreSQL advisory lock keeps two runs of a job from overlapping. Both go
    with the transaction: a process killed mid-job leaves no row and no lock, so the
    next tick redoes the work. Returns what the job changed, or None when skipped.
    """
    tick = int((time.time() if now is None else now) // job.seconds)
    if job.own_transactions:
        return _run_in_own_transactions(sessions, job, tick)
    started = time.perf_counter()
    try:
        with sessions.begin() as session:
            if not _take_job_lock(session, job.name) or not _claim_tick(session, job.name, tick):
                log.info("job skipped: run elsewhere", extra={"job": job.name, "tick": tick})
                return None
            changed = job.run(session)
            seconds = _record_run(session, job.name, tick, started, changed)
    except Exception as exc:
        _record_failure(sessions, job.name, tick, exc)
        raise
    return _ran(job.name, tick, seconds, changed)


def _run_in_own_transactions(
    sessions: sessionmaker[Session], job: Job, tick: int
) -> dict[str, Any] | None:
    # The tick is claimed and committed first, the job runs its own transactions, and
    # the run's figures are written last; a process killed mid-run leaves the row
    # without figures, and the job's own claims let the next tick finish the work.
    started = time.perf_counter()
    try:
        with sessions.begin() as session:
            if not _claim_tick(session, job.name, tick):
                log.info("job skipped: run elsewhere", extra={"job": job.name, "tick": tick})
                return None
        changed = job.run(sessions)
        with sessions.begin() as session:
            seconds = _record_run(session, job.name, tick, started, changed)
    except Exception as exc:
        _record_failure(sessions, job.name, tick, exc)
        raise
    return _ran(job.name, tick, seconds, changed)


def _record_run(
    session: Session, name: str, tick: int, started: float, changed: dict[str, Any]
) -> float:
    """Write a finished run's duration and changes on its `job_run` row; return the seconds."""
    seconds = round(time.perf_counter() - started, 3)
    session.execute(
        sa.update(JobRun)
        .where(JobRun.job == name, JobRun.tick == tick)
        .values(seconds=seconds, changed=changed)
    )
    return seconds


def _ran(name: str, tick: int, seconds: float, changed: dict[str, Any]) -> dict[str, Any]:
    log.info("job ran", extra={"job": name, "tick": tick, "seconds": seconds, "changed": changed})
    return {"job": name, "tick": tick, "seconds": seconds, **changed}


def _record_failure(sessions: sessionmaker[Session], name: str, tick: int, exc: Exception) -> None:
    """Log a failed run and keep it in `job_run` (status failed) for operators and /metrics."""
    log.error("job failed", exc_info=exc, extra={"job": name, "tick": tick})
    error = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    try:
        with sessions.begin() as session:
            dialect = session.get_bind().dialect.name
            insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect](JobRun)
            session.execute(
                insert.values(
                    job=name,
                    tick=tick,
                    runner=RUNNER,
                    status="failed",
                    changed=error,
                    started_at=utcnow(),
                ).on_conflict_do_update(
                    index_elements=["job", "tick"], set_={"status": "failed", "changed": error}
                )
            )
    except Exception:  # the database may be what failed; the log line above stands
        log.exception("could not record the failed job run", extra={"job": name})


def _claim_tick(session: Session, name: str, tick: int) -> bool:
    dialect = session.get_bind().dialect.name
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect](JobRun)
    claimed = session.execute(
        insert.values(job=name, tick=tick, runner=RUNNER, changed={}, started_at=utcnow())
        .on_conflict_do_nothing(index_elements=["job", "tick"])
        .returning(JobRun.id)
    ).first()
    return claimed is not None


def job_lock_key(name: str) -> int:
    """The PostgreSQL advisory lock key of a job."""
    return zlib.crc32(f"quorum.job.{name}".encode())


def _take_job_lock(session: Session, name: str) -> bool:
    if session.get_bind().dialect.name != "postgresql":
        return True  # SQLite: one scheduler process, guarded by the file lock
    return bool(session.scalar(sa.select(sa.func.pg_try_advisory_xact_lock(job_lock_key(name)))))


def sqlite_lock(database_url: str) -> IO[str] | None:
    """Hold the SQLite scheduler lock for this process; refuse if another process has it."""
    url = sa.engine.make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database).with_suffix(".scheduler.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "w")  # noqa: SIM115 (held for the life of the process)
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SchedulerAlreadyRunningError(
            f"another scheduler is running on {url.database}: SQLite supports one scheduler "
            "process; use PostgreSQL (DATABASE_URL) to run several"
        ) from None
    return handle


def run_forever(settings: Settings) -> None:
    """Run the jobs on their intervals until interrupted."""
    lock = sqlite_lock(settings.database_url)
    engine = make_engine(settings.database_url, pool_pre_ping=True)
    sessions = make_sessionmaker(engine)
    scheduler = BlockingScheduler(timezone="UTC")
    for job in default_jobs(settings):
        scheduler.add_job(
            run_job,
            "interval",
            args=(sessions, job),
            seconds=job.seconds,
            id=job.name,
            max_instances=1,
            coalesce=True,
        )
    log.info("scheduler started", extra={"jobs": [j.name for j in default_jobs(settings)]})
    try:
        scheduler.start()
    finally:
        engine.dispose()
        if lock is not None:
            lock.close()
