"""job runs

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 01:31:29.430368
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import orchestrator.models.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_run",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("job", sa.String(length=64), nullable=False),
        sa.Column("tick", sa.BigInteger(), nullable=False),
        sa.Column("runner", sa.String(length=200), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column(
            "changed",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        ),
        sa.Column(
            "started_at", orchestrator.models.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_run")),
        sa.UniqueConstraint("job", "tick", name=op.f("uq_job_run_job_tick")),
    )


def downgrade() -> None:
    op.drop_table("job_run")
