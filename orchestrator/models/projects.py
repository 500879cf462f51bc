"""Projects and their items."""

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from billing.money import from_micros
from orchestrator.db import Base, JSONDocument, utcnow
from orchestrator.models.types import BigId, UtcDateTime


class Project(Base):
    """A labeling campaign: its label schema, quality policy, aggregation and money settings."""

    __tablename__ = "project"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(200))
    # "classification" (one label from `labels`); the column leaves room for other task types.
    task_type: Mapped[str] = mapped_column(sa.String(32), default="classification")
    labels: Mapped[list[str]] = mapped_column(JSONDocument)
    instructions: Mapped[str] = mapped_column(sa.Text, default="")
    overlap: Mapped[int] = mapped_column(sa.Integer, default=3)
    max_overlap: Mapped[int | None] = mapped_column(sa.Integer)
    confidence_target: Mapped[float] = mapped_column(sa.Float, default=0.99)
    gold_rate: Mapped[float] = mapped_column(sa.Float, default=0.1)
    # No column default: create_project sets it from the number of labels.
    gold_accuracy_threshold: Mapped[float] = mapped_column(sa.Float)
    gold_min_answers: Mapped[int] = mapped_column(sa.Integer, default=10)
    exclude_blocked_answers: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    aggregation_method: Mapped[str] = mapped_column(sa.String(40), default="dawid_skene")
    aggregation_params: Mapped[dict[str, Any]] = mapped_column(JSONDocument, default=dict)
    reward_micros: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    currency: Mapped[str] = mapped_column(sa.String(3), default="USD")
    budget_micros: Mapped[int | None] = mapped_column(sa.BigInteger)
    lease_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    status: Mapped[str] = mapped_column(sa.String(16), default="active", index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    archived_at: Mapped[datetime | None] = mapped_column(UtcDateTime)

    @property
    def reward(self) -> Decimal:
        """Reward per accepted answer."""
        return from_micros(self.reward_micros)

    @property
    def budget(self) -> Decimal | None:
        """Spending limit, or None for no limit."""
        return None if self.budget_micros is None else from_micros(self.budget_micros)


class Item(Base):
    """One thing to label; a gold item carries its known answer in `gold_label`."""

    __tablename__ = "item"
    __table_args__ = (sa.UniqueConstraint("project_id", "external_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(
        sa.ForeignKey("project.id", ondelete="CASCADE"), index=True
    )
    external_id: Mapped[str] = mapped_column(sa.String(255))
    data: Mapped[dict[str, Any]] = mapped_column(JSONDocument)
    gold_label: Mapped[str | None] = mapped_column(sa.String(255))
    # Aggregated result, written by the aggregation run.
    label: Mapped[str | None] = mapped_column(sa.String(255))
    confidence: Mapped[float | None] = mapped_column(sa.Float)
    label_distribution: Mapped[dict[str, float] | None] = mapped_column(JSONDocument)
    # Calibrated confidence that decides dynamic overlap (see quality.overlap).
    stopping_confidence: Mapped[float | None] = mapped_column(sa.Float)
    answer_count: Mapped[int] = mapped_column(sa.Integer, default=0)
    aggregated_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)

    @property
    def is_gold(self) -> bool:
        """Whether the item is a gold question."""
        return self.gold_label is not None
