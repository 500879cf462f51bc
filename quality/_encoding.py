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


def _label_codes(values: pd.Series, labels: tuple[str, ...], what: str) -> NDArray[np.intp]:
    """Map label values to positions in ``labels`` (compared as ``str(value)``)."""
    codes, uniques = pd.factorize(values, sort=False)
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
    task, tasks = pd.factorize(answers["task"], sort=False)
    worker, workers = pd.factorize(answers["worker"], sort=False)
    for name, codes in (("task", task), ("worker", worker)):
        if (codes < 0).any():
            raise InvalidAnswersError(
                f"answer {name} ids must not be null", details={name: ["null value"]}
            )
    label = _label_codes(answers["label"], labels, "answer")
    return EncodedAnswers(
        labels=labels,
        tasks=pd.Index(tasks),
        workers=pd.Index(workers),
        task=np.asarray(task, dtype=np.intp),
        worker=np.asarray(worker, dtype=np.intp),
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
