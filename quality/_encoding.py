"""Validate answers, label sets and gold, and turn them into integer codes once."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from .errors import (
    InvalidAnswersError,
    InvalidParameterError,
    NotEnoughAnswersError,
    UnknownLabelError,
)

COLUMNS = ("task", "worker", "label")
# How many offending values an error message lists; the rest are only counted.
_SHOWN = 10


@dataclass(frozen=True)
class EncodedAnswers:
    """Answers as integer codes: worker ``worker[i]`` answered ``label[i]`` on ``task[i]``."""

    labels: tuple[str, ...]
    tasks: pd.Index
    workers: pd.Index
    task: NDArray[np.intp]
    worker: NDArray[np.intp]
    label: NDArray[np.intp]

    @property
    def n_tasks(self) -> int:
        """Number of distinct tasks."""
        return len(self.tasks)

    @property
    def n_workers(self) -> int:
        """Number of distinct workers."""
        return len(self.workers)


def check_labels(labels: Sequence[str]) -> tuple[str, ...]:
    """Return the project's label set as a tuple, refusing an empty or repetitive one."""
    if isinstance(labels, str):
        # A bare string is a Sequence[str] too; "abc" is almost surely a caller's mistake.
        raise InvalidParameterError("labels must be a list of strings, not one string")
    out = tuple(labels)
    if not out:
        raise InvalidParameterError("labels must not be empty", details={"labels": []})
    if not all(isinstance(label, str) for label in out):
        raise InvalidParameterError(
            "labels must be strings", details={"labels": [repr(x) for x in out]}
        )
    if len(set(out)) != len(out):
        raise InvalidParameterError("labels must be distinct", details={"labels": list(out)})
    return out


def factorize(values: pd.Series) -> tuple[NDArray[np.intp], pd.Index]:
    """Return ``values`` as codes numbered in order of first appearance, and the distinct values.

    The result is ``pd.factorize``'s (a null gets code -1 and is not among the distinct
    values), computed faster in two common cases. A column already in sorted order (answers
    exported by task id) needs no hash table: its codes count the changes from one row to
    the next. An Arrow-backed column (pandas 3's default ``str``) goes straight to Arrow's
    hash kernel, which ``pd.factorize`` runs too before re-assembling the encoded chunks;
    on a million string ids that re-assembly took half as long again as the hashing.
    """
    array = values.array
    if len(values) == 0:
        codes, uniques = pd.factorize(values, sort=False)
        return np.asarray(codes, dtype=np.intp), pd.Index(uniques)
    if isinstance(array, pd.arrays.ArrowExtensionArray):
        return _factorize_arrow(array)
    if isinstance(values.dtype, np.dtype) and values.dtype.kind in "iu":  # no nulls possible
        numbers = values.to_numpy()
        head, tail = numbers[:-1], numbers[1:]
        if bool((tail >= head).all()):
            return _sorted_codes(tail != head, array)
    codes, uniques = pd.factorize(values, sort=False)
    return np.asarray(codes, dtype=np.intp), pd.Index(uniques)


def _sorted_codes(
    is_change: NDArray[np.bool_], array: pd.api.extensions.ExtensionArray
) -> tuple[NDArray[np.intp], pd.Index]:
    """Codes and distinct values of a sorted column; ``is_change[i]``: row i+1 != row i."""
    codes = np.zeros(len(is_change) + 1, dtype=np.intp)
    np.cumsum(is_change, out=codes[1:])
    firsts = np.flatnonzero(np.concatenate(([True], is_change)))
    return codes, pd.Index(array.take(firsts))


def _factorize_arrow(
    array: pd.arrays.ArrowExtensionArray,
) -> tuple[NDArray[np.intp], pd.Index]:
    """``factorize`` for an Arrow-backed column."""
    # Only reached when the column is Arrow-backed, so pyarrow is installed (it has no stubs).
    import pyarrow as pa  # type: ignore[import-untyped]
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    chunked = array.__arrow_array__()
    kind = chunked.type
    # Only types whose equality is byte equality, as in the hash kernel (floats are not:
    # -0.0 == 0.0 yet they hash apart).
    exact = pa.types.is_integer(kind) or pa.types.is_string(kind) or pa.types.is_large_string(kind)
    if exact and chunked.null_count == 0:
        head, tail = chunked[:-1], chunked[1:]
        if len(chunked) == 1 or pc.all(pc.greater_equal(tail, head)).as_py():
            is_change = pc.not_equal(tail, head).to_numpy(zero_copy_only=False)
            return _sorted_codes(np.asarray(is_change, dtype=bool), array)
    # Every chunk of a chunked dictionary encoding shares one dictionary.
    encoded = chunked.dictionary_encode()
    indices = [
        chunk.indices.fill_null(-1) if chunk.indices.null_count else chunk.indices
        for chunk in encoded.chunks
    ]
    codes = np.concatenate([chunk.to_numpy() for chunk in indices], dtype=np.intp)
    return codes, pd.Index(pd.array(encoded.chunk(0).dictionary, dtype=array.dtype))


def _label_codes(values: pd.Series, labels: tuple[str, ...], what: str) -> NDArray[np.intp]:
    """Map label values to positions in ``labels`` (compared as ``str(value)``)."""
    codes, uniques = factorize(values)
    if (codes < 0).any():
        # A missing answer label is malformed input; a missing gold label is simply not a label.
        error = InvalidAnswersError if what == "answer" else UnknownLabelError
        raise error(f"{what} labels must not be null", details={"label": ["null value"]})
    # Factorising first keeps the per-row cost in C; only the few distinct values go through str().
    positions = pd.Index(labels).get_indexer(pd.Index([str(value) for value in uniques]))
    if (positions < 0).any():
        unknown = sorted(
            {str(value) for value, pos in zip(uniques, positions, strict=True) if pos < 0}
        )
        raise UnknownLabelError(
            f"{what} label(s) outside the project's label set: {', '.join(unknown[:_SHOWN])}"
            + (f" and {len(unknown) - _SHOWN} more" if len(unknown) > _SHOWN else ""),
            details={"unknown_labels": unknown[:_SHOWN], "labels": list(labels)},
        )
    return np.asarray(positions[codes], dtype=np.intp)


def encode_answers(answers: pd.DataFrame, labels: tuple[str, ...]) -> EncodedAnswers:
    """Validate the long answers table and factorise its columns to integer codes."""
    if not isinstance(answers, pd.DataFrame):
        raise InvalidAnswersError("answers must be a pandas DataFrame")
    missing = [column for column in COLUMNS if column not in answers.columns]
    if missing:
        raise InvalidAnswersError(
            f"answers lack column(s): {', '.join(missing)}", details={"missing_columns": missing}
        )
    if len(answers) == 0:
        raise NotEnoughAnswersError("there are no answers to aggregate")
    task, tasks = factorize(answers["task"])
    worker, workers = factorize(answers["worker"])
    for name, codes in (("task", task), ("worker", worker)):
        if (codes < 0).any():
            raise InvalidAnswersError(
                f"answer {name} ids must not be null", details={name: ["null value"]}
            )
    label = _label_codes(answers["label"], labels, "answer")
    return EncodedAnswers(
        labels=labels,
        tasks=tasks,
        workers=workers,
        task=task,
        worker=worker,
        label=label,
    )


def encode_gold(
    gold: Mapping[Any, str] | None, tasks: pd.Index, labels: tuple[str, ...]
) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Return (task codes, label codes) of the gold tasks that have answers.

    Every gold label is checked against ``labels``, including those of gold tasks without
    answers, so a misconfigured gold item fails now rather than when it is first answered.
    """
    if not gold:
        empty = np.zeros(0, dtype=np.intp)
        return empty, empty
    keys: list[Hashable] = list(gold.keys())
    label = _label_codes(pd.Series([gold[key] for key in keys], dtype=object), labels, "gold")
    task = tasks.get_indexer(pd.Index(keys))
    present = task >= 0
    return np.asarray(task[present], dtype=np.intp), label[present]
