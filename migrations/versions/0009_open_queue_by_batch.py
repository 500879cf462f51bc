"""hand-out queue index ordered by batch, then slot

Revision ID: 0009_open_queue_by_batch
Revises: 0008_vendor_s3
Create Date: 2026-11-28 06:45:00

The pool hands out open slots oldest batch first (`ORDER BY batch_id, id`). Only this
partial index yields that order, so PostgreSQL's planner can no longer prefer a
primary-key scan that steps over every answered slot before the first open one
(it did: the statistics cannot tell it that open slots sit at the end).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_open_queue_by_batch"
down_revision: str | None = "0008_vendor_s3"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = sa.text("status = 'open'")


def _queue_index(columns: list[str]) -> None:
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.drop_index("ix_assignment_open_queue")
        batch_op.create_index(
            "ix_assignment_open_queue",
            columns,
            unique=False,
            postgresql_where=OPEN,
            sqlite_where=OPEN,
        )


def upgrade() -> None:
    _queue_index(["workforce_id", "batch_id", "id"])


def downgrade() -> None:
    _queue_index(["workforce_id", "id"])
