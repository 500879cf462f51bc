"""mturk: review decisions per assignment, blocks sent to MTurk

Revision ID: 0007_mturk
Revises: 0006
Create Date: 2026-11-28 04:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.models.types

revision: str = "0007_mturk"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UtcDateTime = orchestrator.models.types.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "mturk_review",
        sa.Column("id", BigId, nullable=False),
        sa.Column("workforce_id", BigId, nullable=False),
        sa.Column("project_id", BigId, nullable=False),
        sa.Column("batch_id", BigId, nullable=True),
        sa.Column("assignment_id", sa.String(length=64), nullable=False),
        sa.Column("hit_id", sa.String(length=64), nullable=False),
        sa.Column("worker_ref", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("feedback", sa.String(length=1024), nullable=False),
        sa.Column("unstored_answers", sa.Integer(), nullable=False),
        sa.Column("unstored_reason", sa.String(length=32), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("decided_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batch.id"],
            name=op.f("fk_mturk_review_batch_id_batch"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_mturk_review_project_id_project")
        ),
        sa.ForeignKeyConstraint(
            ["workforce_id"], ["workforce.id"], name=op.f("fk_mturk_review_workforce_id_workforce")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mturk_review")),
        sa.UniqueConstraint(
            "workforce_id", "assignment_id", name=op.f("uq_mturk_review_workforce_id_assignment_id")
        ),
    )
    with op.batch_alter_table("mturk_review", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_mturk_review_project_id"), ["project_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_mturk_review_status"), ["status"], unique=False)

    op.create_table(
        "mturk_block",
        sa.Column("id", BigId, nullable=False),
        sa.Column("workforce_id", BigId, nullable=False),
        sa.Column("worker_id", BigId, nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["worker.id"], name=op.f("fk_mturk_block_worker_id_worker")
        ),
        sa.ForeignKeyConstraint(
            ["workforce_id"], ["workforce.id"], name=op.f("fk_mturk_block_workforce_id_workforce")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mturk_block")),
        sa.UniqueConstraint(
            "workforce_id", "worker_id", name=op.f("uq_mturk_block_workforce_id_worker_id")
        ),
    )


def downgrade() -> None:
    op.drop_table("mturk_block")
    with op.batch_alter_table("mturk_review", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_mturk_review_status"))
        batch_op.drop_index(batch_op.f("ix_mturk_review_project_id"))
    op.drop_table("mturk_review")
