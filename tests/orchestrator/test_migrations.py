"""The schema comes only from Alembic, and it matches the models."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from orchestrator import migrate
from orchestrator.db import Base


def test_models_and_migrations_agree(connection):
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "render_as_batch": True}
    )
    assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_base_and_back(connection):
    # DDL is transactional on both backends, so the test's rollback restores the schema.
    migrate.downgrade(revision="base", connection=connection)
    assert set(connection.dialect.get_table_names(connection)) <= {"alembic_version"}
    migrate.upgrade(connection=connection)
    assert "assignment" in connection.dialect.get_table_names(connection)
