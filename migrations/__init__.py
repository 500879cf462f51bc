"""Alembic environment and schema versions: the only way Quorum's schema is made or changed."""
