"""Items: idempotent bulk import and listing."""

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Session

from orchestrator.db import (
    UNSTORABLE_TEXT_MESSAGE,
    has_unstorable_text,
    refresh_statistics,
    utcnow,
)
from orchestrator.errors import ConflictError, InvalidInputError
from orchestrator.models import Item
from orchestrator.services.item_formats import RawRows, RowProblem
from orchestrator.services.projects import get_project

ROW_FIELDS = {"external_id", "data", "gold_label"}
MAX_EXTERNAL_ID = 255

IMPORT_MODES = ("all_or_nothing", "partial")


@dataclass
class ImportReport:
    """What an import did: counts, and the problems of refused rows (capped)."""

    created: int = 0
    unchanged: int = 0
    rejected: int = 0
    errors: list[RowProblem] = field(default_factory=list)
    max_errors: int = 1000

    def refuse(self, problem: RowProblem) -> None:
        """Count a refused row and keep its problem while under the cap."""
        self.rejected += 1
        if len(self.errors) < self.max_errors:
            self.errors.append(problem)

    def as_dict(self) -> dict[str, Any]:
        """Return the report as a JSON-ready dict."""
        return {
            "created": self.created,
            "unchanged": self.unchanged,
            "rejected": self.rejected,
            "errors": [e.as_dict() for e in self.errors],
            "errors_truncated": self.rejected > len(self.errors),
        }


@dataclass(frozen=True)
class _Row:
    line: int
    external_id: str
    data: dict[str, Any]
    gold_label: str | None


def import_items(
    session: Session,
    project_id: int,
    rows: RawRows,
    *,
    mode: str = "all_or_nothing",
    dry_run: bool = False,
    chunk_size: int = 2000,
    max_errors: int = 1000,
) -> ImportReport:
    """Import items idempotently on external id, streaming in chunks.

    In `all_or_nothing` mode (the default) one bad row refuses the whole upload and
    raises InvalidInputError listing every problem found (up to `max_errors`); the
    caller's transaction is rolled back, so nothing is stored. In `partial` mode good
    rows are stored and bad rows are reported. `dry_run` validates without storing.
    An item whose external id is already stored with the same data and gold label
    counts as unchanged; with different content it is a refused row, since items are
    immutable once imported.
    """
    project = get_project(session, project_id)
    if project.status == "archived":
        raise ConflictError(f"project {project_id} is archived and takes no new items")
    labels = frozenset(project.labels)
    report = ImportReport(max_errors=max_errors)
    seen: dict[str, tuple[int, Any, str | None]] = {}
    validated = _validate(rows, labels, report)
    while chunk := list(islice(validated, chunk_size)):
        fresh = _drop_known(session, project.id, chunk, seen, report)
        if dry_run or (mode == "all_or_nothing" and report.rejected):
            report.created += len(fresh)  # would be created; keep reading to list every problem
        elif fresh:
            inserted = _insert(session, project.id, fresh)
            report.created += inserted
            report.unchanged += len(fresh) - inserted  # lost a race to a concurrent import
    if project.status == "completed" and report.created and not dry_run:
        project.status = "active"  # new work reopens a completed project
    if report.rejected and mode == "all_or_nothing":
        raise InvalidInputError(
            f"{report.rejected} row(s) refused; nothing was imported",
            details={"rows": report.as_dict()["errors"], "rejected": report.rejected},
        )
    refresh_statistics(session, 0 if dry_run else report.created, Item)
    return report


def _validate(rows: RawRows, labels: frozenset[str], report: ImportReport) -> Iterator[_Row]:
    for line, raw in rows:
        if isinstance(raw, RowProblem):
            report.refuse(raw)
            continue
        problem = _problem(line, raw, labels)
        if problem is not None:
            report.refuse(problem)
            continue
        external_id = raw["external_id"]
        yield _Row(line, str(external_id), raw.get("data") or {}, raw.get("gold_label"))


def _problem(line: int, raw: dict[str, Any], labels: frozenset[str]) -> RowProblem | None:
    unknown = set(raw) - ROW_FIELDS
    if unknown:
        return RowProblem(line, sorted(unknown)[0], "unknown field")
    external_id = raw.get("external_id")
    if external_id is None or external_id == "":
        return RowProblem(line, "external_id", "missing")
    if isinstance(external_id, bool) or not isinstance(external_id, str | int):
        return RowProblem(line, "external_id", "must be a string")
    if len(str(external_id)) > MAX_EXTERNAL_ID:
        return RowProblem(line, "external_id", f"longer than {MAX_EXTERNAL_ID} characters")
    if "data" not in raw:
        return RowProblem(line, "data", "missing")
    if not isinstance(raw["data"], dict):
        return RowProblem(line, "data", "must be an object")
    for name in ROW_FIELDS & set(raw):
        if has_unstorable_text(raw[name]):
            return RowProblem(line, name, UNSTORABLE_TEXT_MESSAGE)
    gold = raw.get("gold_label")
    if gold is not None and gold not in labels:
        return RowProblem(line, "gold_label", f"{gold!r} is not one of the project's labels")
    return None


def _drop_known(
    session: Session,
    project_id: int,
    chunk: list[_Row],
    seen: dict[str, tuple[int, Any, str | None]],
    report: ImportReport,
) -> list[_Row]:
    """Split off rows already stored or repeated in this upload; return the new ones."""
    ids = [row.external_id for row in chunk]
    query = sa.select(Item.external_id, Item.data, Item.gold_label).where(
        Item.project_id == project_id
    )
    if session.get_bind().dialect.name == "postgresql":
        # Join an unnested array parameter: the plan walks the (project_id, external_id)
        # index, even as a reused generic plan, where a long IN list or `= ANY` would
        # compare every id with every row of the project.
        wanted = (
            sa.func.unnest(sa.bindparam("ids", ids, type_=ARRAY(sa.String)))
            .table_valued("external_id")
            .render_derived()
        )
        query = query.join(wanted, Item.external_id == wanted.c.external_id)
    else:
        query = query.where(Item.external_id.in_(ids))
    stored = {external_id: (data, gold) for external_id, data, gold in session.execute(query)}
    fresh = []
    for row in chunk:
        earlier = seen.get(row.external_id)
        if earlier is not None:
            if (earlier[1], earlier[2]) == (row.data, row.gold_label):
                report.unchanged += 1
            else:
                report.refuse(
                    RowProblem(
                        row.line,
                        "external_id",
                        f"repeats line {earlier[0]} with different content",
                    )
                )
            continue
        seen[row.external_id] = (row.line, row.data, row.gold_label)
        if row.external_id in stored:
            if stored[row.external_id] == (row.data, row.gold_label):
                report.unchanged += 1
            else:
                report.refuse(
                    RowProblem(
                        row.line,
                        "external_id",
                        "already imported with different data or gold_label; items are immutable",
                    )
                )
            continue
        fresh.append(row)
    return fresh


def _insert(session: Session, project_id: int, rows: list[_Row]) -> int:
    """Insert new items, skipping any a concurrent import stored first; return the count."""
    if session.get_bind().dialect.name == "postgresql":
        return _insert_postgresql(session, project_id, rows)
    table = Item.__table__
    result = session.connection().execute(
        sqlite.insert(table)
        .on_conflict_do_nothing(index_elements=["project_id", "external_id"])
        .returning(table.c.id),
        [
            {
                "project_id": project_id,
                "external_id": row.external_id,
                "data": row.data,
                "gold_label": row.gold_label,
                "answer_count": 0,
                "created_at": utcnow(),
            }
            for row in rows
        ],
    )
    # RETURNING counts the rows really inserted: ON CONFLICT skips those that a
    # concurrent import stored first.
    return len(result.all())


_PG_INSERT = sa.text(
    """
    INSERT INTO item (project_id, external_id, data, gold_label, answer_count, created_at)
    SELECT :project_id, r.external_id, r.data, r.gold_label, 0, :now
    FROM jsonb_to_recordset(CAST(:rows AS jsonb))
         AS r(external_id text, data jsonb, gold_label text)
    ON CONFLICT (project_id, external_id) DO NOTHING
    RETURNING id
    """
)


def _insert_postgresql(session: Session, project_id: int, rows: list[_Row]) -> int:
    # One JSON parameter per chunk: binding thousands of separate parameters costs
    # more client time than the server needs for the whole insert.
    payload = json.dumps(
        [{"external_id": r.external_id, "data": r.data, "gold_label": r.gold_label} for r in rows]
    )
    result = session.execute(
        _PG_INSERT, {"project_id": project_id, "now": utcnow(), "rows": payload}
    )
    return len(result.all())


def list_items(
    session: Session, project_id: int, *, limit: int = 100, offset: int = 0
) -> tuple[list[Item], int]:
    """Return one page of a project's items (in import order) and the total count."""
    get_project(session, project_id)
    total = session.scalar(
        sa.select(sa.func.count()).select_from(Item).where(Item.project_id == project_id)
    )
    page = session.scalars(
        sa.select(Item)
        .where(Item.project_id == project_id)
        .order_by(Item.id)
        .limit(limit)
        .offset(offset)
    )
    return list(page), total or 0
