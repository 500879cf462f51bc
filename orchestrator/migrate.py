"""Run Alembic migrations from code (CLI, tests, `make serve`)."""

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config(url: str | None = None, connection: Connection | None = None) -> Config:
    """Build an Alembic config pointing at the packaged migrations."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def upgrade(
    url: str | None = None, revision: str = "head", connection: Connection | None = None
) -> None:
    """Upgrade the database schema to `revision`."""
    command.upgrade(alembic_config(url, connection), revision)


def downgrade(
    url: str | None = None, revision: str = "-1", connection: Connection | None = None
) -> None:
    """Downgrade the database schema to `revision`."""
    command.downgrade(alembic_config(url, connection), revision)


def revision(url: str | None, message: str) -> None:
    """Write a new migration from the difference between the models and the database."""
    command.revision(alembic_config(url), message=message, autogenerate=True)
