"""vendor s3 hand-off: the objects written to and read from vendors' buckets

Revision ID: 0008_vendor_s3
Revises: 0007_mturk
Create Date: 2026-11-28 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import orchestrator.models.types

revision: str = "0008_vendor_s3"
down_revision: str | None = "0007_mturk"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UtcDateTime = orchestrator.models.types.UtcDateTime
JSONDocument = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "vendor_s3_object",
        sa.Column("id", BigId, nullable=False),
        sa.Column("workforce_id", BigId, nullable=False),
        sa.Column("batch_id", BigId, nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("etag", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("rejected", sa.Integer(), nullable=False),
        sa.Column("report", JSONDocument, nullable=True),
        sa.Column("created_at", UtcDateTime(timezone=True), nullable=False),
        sa.Column("reported_at", UtcDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["batch.id"],
            name=op.f("fk_vendor_s3_object_batch_id_batch"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["workforce_id"],
            ["workforce.id"],
            name=op.f("fk_vendor_s3_object_workforce_id_workforce"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vendor_s3_object")),
        sa.UniqueConstraint(
            "workforce_id", "key", "etag", name=op.f("uq_vendor_s3_object_workforce_id_key_etag")
        ),
    )
    with op.batch_alter_table("vendor_s3_object", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_vendor_s3_object_batch_id"), ["batch_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_vendor_s3_object_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("vendor_s3_object", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_vendor_s3_object_status"))
        batch_op.drop_index(batch_op.f("ix_vendor_s3_object_batch_id"))
    op.drop_table("vendor_s3_object")
