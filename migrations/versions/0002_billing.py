"""billing: invoice exact totals and grouping, bonuses, the reservation index

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 00:46:57.935642
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import orchestrator.models.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LIVE = "status IN ('open', 'leased')"


def upgrade() -> None:
    op.create_table(
        "bonus",
        sa.Column("id", BigId, nullable=False),
        sa.Column("project_id", BigId, nullable=False),
        sa.Column("workforce_id", BigId, nullable=False),
        sa.Column("worker_id", BigId, nullable=False),
        sa.Column("request_key", sa.String(length=255), nullable=False),
        sa.Column("request_hash", sa.String(length=64), nullable=False),
        sa.Column("amount_micros", sa.BigInteger(), nullable=False),
        sa.Column("cost_micros", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("token", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("api_key_id", BigId, nullable=True),
        sa.Column(
            "attempted_at", orchestrator.models.types.UtcDateTime(timezone=True), nullable=True
        ),
        sa.Column("paid_at", orchestrator.models.types.UtcDateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", orchestrator.models.types.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_key.id"], name=op.f("fk_bonus_api_key_id_api_key")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["project.id"], name=op.f("fk_bonus_project_id_project")
        ),
        sa.ForeignKeyConstraint(
            ["worker_id"], ["worker.id"], name=op.f("fk_bonus_worker_id_worker")
        ),
        sa.ForeignKeyConstraint(
            ["workforce_id"], ["workforce.id"], name=op.f("fk_bonus_workforce_id_workforce")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bonus")),
        sa.UniqueConstraint(
            "project_id",
            "request_key",
            "worker_id",
            name=op.f("uq_bonus_project_id_request_key_worker_id"),
        ),
        sa.UniqueConstraint("token", name=op.f("uq_bonus_token")),
    )
    with op.batch_alter_table("bonus", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_bonus_worker_id"), ["worker_id"], unique=False)

    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.create_index(
            "ix_assignment_reserved_project",
            ["project_id", "reserved_micros"],
            unique=False,
            postgresql_where=sa.text(LIVE),
            sqlite_where=sa.text(LIVE),
        )

    # Server defaults only carry existing rows over; the models set every value.
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("exact_total_micros", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("group_by", sa.String(length=16), nullable=False, server_default="batch")
        )
    with op.batch_alter_table("invoice_line", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("exact_amount_micros", sa.BigInteger(), nullable=False, server_default="0")
        )
        batch_op.add_column(
            sa.Column("is_carried_over", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute("UPDATE invoice SET exact_total_micros = total_micros")
    op.execute("UPDATE invoice_line SET exact_amount_micros = amount_micros")


def downgrade() -> None:
    with op.batch_alter_table("invoice_line", schema=None) as batch_op:
        batch_op.drop_column("is_carried_over")
        batch_op.drop_column("exact_amount_micros")
    with op.batch_alter_table("invoice", schema=None) as batch_op:
        batch_op.drop_column("group_by")
        batch_op.drop_column("exact_total_micros")
    with op.batch_alter_table("assignment", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_assignment_reserved_project",
            postgresql_where=sa.text(LIVE),
            sqlite_where=sa.text(LIVE),
        )
    with op.batch_alter_table("bonus", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_bonus_worker_id"))
    op.drop_table("bonus")
