"""Aggregated results of a project, as JSON Lines or CSV (for the API and `quorum export`)."""

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.models import Item
from orchestrator.services.projects import get_project

FORMATS = ("jsonl", "csv")
MEDIA_TYPES = {"jsonl": "application/x-ndjson", "csv": "text/csv"}
CHUNK = 5000


def result_rows(
    session: Session, project_id: int, *, include_gold: bool = False, distribution: bool = False
) -> Iterator[dict[str, Any]]:
    """Yield one dict per item: external id, label, confidence, answers (and distribution)."""
    get_project(session, project_id)
    query = (
        sa.select(
            Item.id,
            Item.external_id,
            Item.label,
            Item.confidence,
            Item.answer_count,
            Item.label_distribution,
            Item.gold_label,
        )
        .where(Item.project_id == project_id)
        .order_by(Item.id)
    )
    if not include_gold:
        query = query.where(Item.gold_label.is_(None))
    for row in session.execute(query.execution_options(yield_per=CHUNK)):
        out: dict[str, Any] = {
            "external_id": row.external_id,
            "label": row.label,
            "confidence": row.confidence,
            "answers": row.answer_count,
        }
        if include_gold:
            out["gold_label"] = row.gold_label
        if distribution:
            out["distribution"] = row.label_distribution
        yield out


def render(
    rows: Iterator[dict[str, Any]], fmt: str, labels: list[str], *, distribution: bool = False
) -> Iterator[str]:
    """Render result rows as JSON Lines or CSV (CSV: one `p_<label>` column per label)."""
    if fmt == "jsonl":
        for row in rows:
            yield json.dumps(row) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    first = True
    for row in rows:
        probabilities = row.pop("distribution", None) or {}
        if first:
            writer.writerow([*row, *(f"p_{label}" for label in labels if distribution)])
            first = False
        extra = [probabilities.get(label, "") for label in labels] if distribution else []
        writer.writerow(["" if value is None else value for value in row.values()] + extra)
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
