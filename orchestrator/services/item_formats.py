"""Readers for item uploads: JSON array, JSON Lines and CSV, streamed row by row.

Each reader yields `(position, row)` where `position` is the 1-based line number
(JSON Lines, CSV) or the 1-based element number (JSON array), and `row` is either a
raw dict or a `RowProblem` when the row could not even be parsed.
"""

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

import ijson

from orchestrator.errors import UnsupportedMediaTypeError

FORMATS = {
    "application/json": "json",
    "application/x-ndjson": "ndjson",
    "application/jsonl": "ndjson",
    "application/jsonlines": "ndjson",
    "text/csv": "csv",
}


@dataclass(frozen=True)
class RowProblem:
    """Why one row of an upload was refused."""

    line: int
    field: str
    message: str

    def as_dict(self) -> dict[str, Any]:
        """Return the problem as a JSON-ready dict."""
        return {"line": self.line, "field": self.field, "message": self.message}


RawRows = Iterator[tuple[int, dict[str, Any] | RowProblem]]


def format_for(content_type: str | None) -> str:
    """Map a Content-Type header to a reader name, or refuse it with 415."""
    mime = (content_type or "").split(";")[0].strip().lower()
    if mime not in FORMATS:
        raise UnsupportedMediaTypeError(
            f"unsupported Content-Type {mime or '(none)'!r}",
            details={"content_type": [f"use one of {', '.join(sorted(FORMATS))}"]},
        )
    return FORMATS[mime]


def read_rows(stream: IO[bytes], fmt: str) -> RawRows:
    """Yield raw rows from a binary stream in the given format."""
    readers = {"json": _read_json_array, "ndjson": _read_json_lines, "csv": _read_csv}
    return readers[fmt](stream)


def _read_json_array(stream: IO[bytes]) -> RawRows:
    head = stream.read(64 * 1024)
    if not head.lstrip().startswith(b"["):
        yield 1, RowProblem(1, "_body", "a JSON upload must be an array of item objects")
        return
    position = 0
    try:
        elements = ijson.items(_Prepended(head, stream), "item", use_float=True)
        for position, element in enumerate(elements, 1):
            yield position, element if isinstance(element, dict) else _not_object(position)
    except ijson.JSONError as exc:
        yield position + 1, RowProblem(position + 1, "_body", f"malformed JSON: {exc}")


class _Prepended:
    """A read-only stream that replays already-read bytes before the rest of a stream."""

    def __init__(self, head: bytes, rest: IO[bytes]) -> None:
        self._head = head
        self._rest = rest

    def read(self, size: int = -1) -> bytes:
        if self._head:
            chunk = self._head if size < 0 else self._head[:size]
            self._head = self._head[len(chunk) :]
            return chunk
        return self._rest.read(size)


def _read_json_lines(stream: IO[bytes]) -> RawRows:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="strict", newline="")
    line_no = 0
    try:
        for line_no, line in enumerate(text, 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield line_no, RowProblem(line_no, "_line", f"malformed JSON: {exc.msg}")
                continue
            yield line_no, value if isinstance(value, dict) else _not_object(line_no)
    except UnicodeDecodeError:
        yield line_no + 1, RowProblem(line_no + 1, "_line", "not valid UTF-8")


def _read_csv(stream: IO[bytes]) -> RawRows:
    text = io.TextIOWrapper(stream, encoding="utf-8-sig", errors="strict", newline="")
    try:
        reader = csv.reader(text)
        header = next(reader, None)
        if header is None:
            return
        if "external_id" not in header:
            yield 1, RowProblem(1, "external_id", "CSV header has no external_id column")
            return
        data_columns = [
            (i, name) for i, name in enumerate(header) if name not in ("external_id", "gold_label")
        ]
        id_col = header.index("external_id")
        gold_col = header.index("gold_label") if "gold_label" in header else None
        for cells in reader:
            line = reader.line_num
            if not cells:
                continue
            if len(cells) != len(header):
                yield (
                    line,
                    RowProblem(
                        line, "_line", f"expected {len(header)} columns, found {len(cells)}"
                    ),
                )
                continue
            gold = cells[gold_col] if gold_col is not None else ""
            yield (
                line,
                {
                    "external_id": cells[id_col],
                    "data": {name: cells[i] for i, name in data_columns},
                    "gold_label": gold or None,
                },
            )
    except UnicodeDecodeError:
        yield 0, RowProblem(0, "_line", "not valid UTF-8")
    except csv.Error as exc:
        yield 0, RowProblem(0, "_line", f"malformed CSV: {exc}")


def _not_object(position: int) -> RowProblem:
    return RowProblem(position, "_line", "each item must be a JSON object")
