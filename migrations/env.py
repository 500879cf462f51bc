"""Alembic environment: runs migrations against the configured database."""

from alembic import context
from sqlalchemy.engine import Connection

import orchestrator.models  # noqa: F401  (registers every table on Base.metadata)
from orchestrator.db import Base, make_engine
from orchestrator.settings import Settings

target_metadata = Base.metadata


def run(connection: Connection) -> None:
    """Run the migrations on one connection, batch mode on SQLite for ALTERs."""
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_online() -> None:
    """Use a connection handed in by the caller (tests, CLI) or open one from settings."""
    connection = context.config.attributes.get("connection")
    if connection is not None:
        run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url") or Settings.from_env().database_url
    engine = make_engine(url)
    with engine.connect() as conn:
        run(conn)
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run `quorum db upgrade`")
run_online()
