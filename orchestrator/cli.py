"""The `quorum` command line: database, keys, serving."""

import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from billing.money import MoneyError, parse_amount
from orchestrator import migrate
from orchestrator.db import make_engine, make_sessionmaker, unit_of_work
from orchestrator.errors import ServiceError
from orchestrator.logs import configure_logging
from orchestrator.models.keys import ROLES
from orchestrator.scheduler import SchedulerAlreadyRunningError, run_forever
from orchestrator.services import aggregation, audit, keys, results
from orchestrator.services.projects import get_project
from orchestrator.settings import Settings, parse_duration
from orchestrator.simulation import SimulationOptions, run_simulation
from quality.methods import METHODS


@contextmanager
def _transaction() -> Iterator[Session]:
    """One unit of work on the configured database; the engine is closed afterwards."""
    engine = make_engine(Settings.from_env().database_url)
    try:
        with unit_of_work(make_sessionmaker(engine)) as session:
            yield session
    finally:
        engine.dispose()


@click.group()
def main() -> None:
    """Quorum: crowdsourcing and vendor orchestration for data labeling."""


@main.group()
def db() -> None:
    """Create or change the database schema (DATABASE_URL, default SQLite var/quorum.db)."""


@db.command("upgrade")
@click.argument("revision", default="head")
def db_upgrade(revision: str) -> None:
    """Upgrade the schema to REVISION (default: the newest)."""
    migrate.upgrade(Settings.from_env().database_url, revision)
    click.echo(f"database upgraded to {revision}", err=True)


@db.command("downgrade")
@click.argument("revision", default="-1")
def db_downgrade(revision: str) -> None:
    """Downgrade the schema to REVISION (default: one step back; 'base' drops everything)."""
    migrate.downgrade(Settings.from_env().database_url, revision)
    click.echo(f"database downgraded to {revision}", err=True)


@db.command("revision")
@click.option("--message", "-m", required=True, help="What the schema change does.")
def db_revision(message: str) -> None:
    """Write a migration for model changes (compares the models with an upgraded database)."""
    migrate.revision(Settings.from_env().database_url, message)


@main.group("keys")
def keys_group() -> None:
    """Manage API keys (only hashes are stored; a key is shown once, when created)."""


@keys_group.command("create")
@click.option("--role", required=True, type=click.Choice(ROLES), help="What the key may do.")
@click.option("--vendor", help="Vendor name (vendor keys); the vendor is created if new.")
@click.option("--worker", help="Worker id in the internal pool (worker keys).")
@click.option(
    "--workforce",
    default=keys.DEFAULT_INTERNAL_WORKFORCE,
    show_default=True,
    help="Internal workforce of a worker key; created if new.",
)
@click.option("--name", default="", help="A note to tell keys apart.")
def keys_create(
    role: str, vendor: str | None, worker: str | None, workforce: str, name: str
) -> None:
    """Create a key and print it (stdout: the key alone)."""
    try:
        with _transaction() as session:
            key, secret = keys.create_key(
                session, role=role, vendor=vendor, worker=worker, workforce=workforce, name=name
            )
            audit.record(session, None, "key.create", "api_key", key.id, role=role)
    except ServiceError as exc:
        raise click.UsageError(f"{exc.message} {exc.details or ''}".strip()) from exc
    click.echo(
        f"created {role} key {key.id} ({key.prefix}...); store it now, it is not shown again",
        err=True,
    )
    click.echo(secret)


@keys_group.command("rotate")
@click.argument("key_id", type=int)
@click.option(
    "--overlap",
    default="24h",
    show_default=True,
    help="How long the old key keeps working: 90s, 30m, 24h, 7d (at most 30 days).",
)
def keys_rotate(key_id: int, overlap: str) -> None:
    """Replace a key with a new one of the same role and scope (stdout: the new key alone)."""
    try:
        window = parse_duration(overlap)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--overlap") from exc
    try:
        with _transaction() as session:
            rotation = keys.rotate_key(session, key_id=key_id, overlap=window)
            audit.record(
                session,
                None,
                "key.rotate",
                "api_key",
                key_id,
                new_key_id=rotation.key.id,
                expires_at=rotation.previous_expires_at.isoformat(),
            )
    except ServiceError as exc:
        raise click.UsageError(f"{exc.message} {exc.details or ''}".strip()) from exc
    click.echo(
        f"rotated key {key_id}: new {rotation.key.role} key {rotation.key.id} "
        f"({rotation.key.prefix}...); store it now, it is not shown again; "
        f"key {key_id} stops working at {rotation.previous_expires_at.isoformat()}",
        err=True,
    )
    click.echo(rotation.secret)


@keys_group.command("list")
def keys_list() -> None:
    """List keys (id, prefix, role, scope, status, expiry, name)."""
    with _transaction() as session:
        for key in keys.list_keys(session)[0]:
            status = keys.key_status(key)
            expires = key.expires_at.isoformat() if key.expires_at else "-"
            scope = (
                f"vendor={key.vendor_id}"
                if key.vendor_id
                else (f"worker={key.worker_id}" if key.worker_id else "-")
            )
            click.echo(
                f"{key.id}\t{key.prefix}...\t{key.role}\t{scope}\t{status}\t{expires}\t{key.name}"
            )


@keys_group.command("revoke")
@click.argument("key_id", type=int)
def keys_revoke(key_id: int) -> None:
    """Revoke a key by its id."""
    try:
        with _transaction() as session:
            keys.revoke_key(session, key_id=key_id)
            audit.record(session, None, "key.revoke", "api_key", key_id)
    except ServiceError as exc:
        raise click.UsageError(exc.message) from exc
    click.echo(f"revoked key {key_id}", err=True)


@main.command()
@click.option(
    "--answers",
    "answers_csv",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Recorded answers: CSV with task,worker,label.",
)
@click.option(
    "--gold",
    "gold_csv",
    required=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Gold labels: CSV with task,label.",
)
@click.option("--overlap", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option(
    "--max-overlap", type=click.IntRange(1, 1000), help="Cap on answers per item (default: none)."
)
@click.option(
    "--confidence-target",
    type=click.FloatRange(0, 1, min_open=True),
    help="Dynamic overlap target (default: the project default).",
)
@click.option(
    "--gold-rate",
    type=click.FloatRange(0, 1, max_open=True),
    help="Share of each worker's tasks that are honeypots (default: the project default).",
)
@click.option(
    "--honeypots",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Share of the gold items used as honeypots; the rest only score the result.",
)
@click.option("--method", type=click.Choice(METHODS), help="Aggregation method.")
@click.option("--reward", default="0.01", show_default=True, help="Reward per answer.")
@click.option(
    "--seed",
    default=0,
    show_default=True,
    type=int,
    help="Shuffles each item's recorded answers and picks the honeypots.",
)
@click.option("--database", help="Run in this database (default: a throwaway SQLite file).")
def simulate(
    answers_csv: str,
    gold_csv: str,
    overlap: int,
    max_overlap: int | None,
    confidence_target: float | None,
    gold_rate: float | None,
    honeypots: float,
    method: str | None,
    reward: str,
    seed: int,
    database: str | None,
) -> None:
    """Replay a real crowdsourcing data set through the whole service; print a JSON summary."""
    try:
        amount = parse_amount(reward)
    except MoneyError as exc:
        raise click.BadParameter(str(exc), param_hint="--reward") from exc
    options = SimulationOptions(
        overlap=overlap,
        max_overlap=max_overlap,
        confidence_target=confidence_target,
        gold_rate=gold_rate,
        honeypots=honeypots,
        method=method,
        reward=amount,
        seed=seed,
        database_url=database,
    )
    summary = run_simulation(Path(answers_csv), Path(gold_csv), options, _progress_printer())
    click.echo(json.dumps(summary))


def _progress_printer() -> Any:
    """Report progress on stderr: a bar on a terminal, a line every 10% otherwise."""
    last: dict[str, int] = {}
    tty = sys.stderr.isatty()

    def report(stage: str, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if tty:
            bar = "#" * (percent // 4)
            click.echo(f"\r{stage}: [{bar:<25}] {done}/{total}", err=True, nl=done >= total)
        elif percent // 10 != last.get(stage, -1):
            last[stage] = percent // 10
            click.echo(f"{stage}: {done}/{total} slots", err=True)

    return report


@main.command("export")
@click.argument("project_id", type=int)
@click.option(
    "--format", "fmt", type=click.Choice(results.FORMATS), default="jsonl", show_default=True
)
@click.option("--distribution", is_flag=True, help="Add each item's per-label distribution.")
@click.option("--include-gold", is_flag=True, help="Add the gold items.")
@click.option("--output", "-o", type=click.File("w"), default="-", help="File (default: stdout).")
def export(project_id: int, fmt: str, distribution: bool, include_gold: bool, output: Any) -> None:
    """Write a project's aggregated results (re-aggregating first if answers changed)."""
    try:
        with _transaction() as session:
            project = get_project(session, project_id)
            aggregation.refresh(session, project_id)
            rows = results.result_rows(
                session, project_id, include_gold=include_gold, distribution=distribution
            )
            for chunk in results.render(rows, fmt, list(project.labels), distribution=distribution):
                output.write(chunk)
    except ServiceError as exc:
        raise click.UsageError(exc.message) from exc


@main.command()
def scheduler() -> None:
    """Run the background jobs (lease expiry, re-aggregation and top-ups, batch closing)."""
    configure_logging()
    logging.getLogger("apscheduler").setLevel(logging.WARNING)
    try:
        run_forever(Settings.from_env())
    except SchedulerAlreadyRunningError as exc:
        raise click.ClickException(str(exc)) from exc
    except KeyboardInterrupt:
        click.echo("scheduler stopped", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=lambda: int(os.environ.get("QUORUM_WEB_WORKERS", "1")),
    type=int,
    help="gunicorn processes (PostgreSQL for more than one).",
)
@click.option("--threads", default=8, show_default=True, type=int)
@click.option(
    "--with-scheduler/--no-scheduler",
    default=True,
    show_default=True,
    help="Also run `quorum scheduler` (unless QUORUM_SCHEDULER=false).",
)
def serve(host: str, port: int, workers: int, threads: int, with_scheduler: bool) -> None:
    """Serve the API with gunicorn, and the scheduler beside it (one machine's default)."""
    settings = Settings.from_env()
    if workers > 1 and settings.database_url.startswith("sqlite"):
        raise click.UsageError("several API processes need PostgreSQL (set DATABASE_URL)")
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{host}:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "orchestrator.wsgi:app",
    ]
    if not (with_scheduler and settings.scheduler_enabled):
        os.execvp(sys.executable, command)
    scheduler_process = subprocess.Popen([sys.executable, "-m", "orchestrator.cli", "scheduler"])
    api_process = subprocess.Popen(command)
    try:
        while api_process.poll() is None:
            if scheduler_process.poll() is not None:
                raise click.ClickException("the scheduler stopped; stopping the API too")
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        for process in (api_process, scheduler_process):
            if process.poll() is None:
                process.terminate()
                process.wait(timeout=30)
    sys.exit(api_process.returncode)


if __name__ == "__main__":
    main()
