"""The `quorum` command line: database, keys, serving."""

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import click
from sqlalchemy.orm import Session

from orchestrator import migrate
from orchestrator.db import make_engine, make_sessionmaker, unit_of_work
from orchestrator.errors import ServiceError
from orchestrator.models.keys import ROLES
from orchestrator.services import audit, keys
from orchestrator.settings import Settings


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


@keys_group.command("list")
def keys_list() -> None:
    """List keys (id, prefix, role, scope, status)."""
    with _transaction() as session:
        for key in keys.list_keys(session):
            status = "revoked" if key.revoked_at else "active"
            scope = (
                f"vendor={key.vendor_id}"
                if key.vendor_id
                else (f"worker={key.worker_id}" if key.worker_id else "-")
            )
            click.echo(f"{key.id}\t{key.prefix}...\t{key.role}\t{scope}\t{status}\t{key.name}")


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
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option(
    "--workers",
    default=lambda: int(os.environ.get("QUORUM_WEB_WORKERS", "1")),
    type=int,
    help="gunicorn processes (PostgreSQL for more than one).",
)
@click.option("--threads", default=8, show_default=True, type=int)
def serve(host: str, port: int, workers: int, threads: int) -> None:
    """Serve the API with gunicorn."""
    if workers > 1 and Settings.from_env().database_url.startswith("sqlite"):
        raise click.UsageError("several API processes need PostgreSQL (set DATABASE_URL)")
    os.execvp(
        sys.executable,
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"{host}:{port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--access-logfile",
            "-",
            "orchestrator.wsgi:app",
        ],
    )
