"""outbox: messages to send outside (signed vendor webhooks) and their delivery attempts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 01:31:52.578931
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import orchestrator.models.types

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
JSONDocument = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
UtcDateTime = orchestrator.models.types.UtcDateTime


def upgrade() -> None:
    op.create_table(
        "outbox_message",
        sa.Column("id", BigId, nullable=False),
        sa.Column("message_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("event", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=2000), nullable=False),
        sa.Column("workforce_id", BigId, nullable=True),
        sa.Column("batch_id", BigId, nullable=True),
        sa.Column("payload", JSONDocument, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", UtcDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batch.id"],
            name=op.f("fk_outbox_message_batch_id_batch"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workforce_id"],
            ["workforce.id"],
            name=op.f("fk_outbox_message_workforce_id_workforce"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox_message")),
        sa.UniqueConstraint("message_id", name=op.f("uq_outbox_message_message_id")),
    )
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_message_due", ["status", "next_attempt_at"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_outbox_message_workforce_id"), ["workforce_id"], unique=False
        )

    op.create_table(
        "delivery_attempt",
        sa.Column("id", BigId, nullable=False),
        sa.Column("outbox_message_id", BigId, nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("started_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["outbox_message_id"],
            ["outbox_message.id"],
            name=op.f("fk_delivery_attempt_outbox_message_id_outbox_message"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_attempt")),
        sa.UniqueConstraint(
            "outbox_message_id",
            "attempt",
            name=op.f("uq_delivery_attempt_outbox_message_id_attempt"),
        ),
    )


def downgrade() -> None:
    op.drop_table("delivery_attempt")
    with op.batch_alter_table("outbox_message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbox_message_workforce_id"))
        batch_op.drop_index("ix_outbox_message_due")
    op.drop_table("outbox_message")
