"""Data for the quality tests: the shared real data sets and a seeded synthetic crowd."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

DATASETS = Path(
    os.environ.get("QUORUM_DATASETS")
    or Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
)


def dataset_names() -> list[str]:
    """Names of the shared data sets; an empty list fails the tests that need them."""
    if not DATASETS.is_dir():
        return []
    return sorted(p.name for p in DATASETS.iterdir() if (p / "answers.csv").is_file())


@functools.cache
def _read(name: str) -> tuple[pd.DataFrame, dict[str, str]]:
    folder = DATASETS / name
    answers = pd.read_csv(folder / "answers.csv", dtype=str, keep_default_na=False)
    gold = pd.read_csv(folder / "gold.csv", dtype=str, keep_default_na=False)
    return answers, dict(zip(gold["task"], gold["label"], strict=True))


def load_dataset(name: str) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """Return (answers, gold, labels) of a shared data set; labels = every label seen, sorted."""
    if not (DATASETS / name / "answers.csv").is_file():
        pytest.fail(f"data set {name!r} not found under {DATASETS} (set QUORUM_DATASETS)")
    answers, gold = _read(name)
    labels = sorted(set(answers["label"]) | set(gold.values()))
    return answers.copy(), dict(gold), labels


def synthetic_crowd(
    n_tasks: int, *, n_workers: int = 30, n_classes: int = 3, overlap: int = 5, seed: int = 0
) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """Simulate answers from workers with known confusion matrices.

    Returns answers (string ids), the true label of every task, and the label set.
    """
    rng = np.random.default_rng(seed)
    labels = [f"c{k}" for k in range(n_classes)]
    truth = rng.choice(
        n_classes, size=n_tasks, p=np.linspace(2, 1, n_classes) / np.linspace(2, 1, n_classes).sum()
    )
    accuracy = rng.uniform(0.45, 0.95, size=n_workers)
    off = (1 - accuracy) / (n_classes - 1)
    confusion = off[:, None, None] * np.ones((n_classes, n_classes)) + (accuracy - off)[
        :, None, None
    ] * np.eye(n_classes)
    rows = []
    for task in range(n_tasks):
        for worker in rng.choice(n_workers, size=overlap, replace=False):
            label = rng.choice(n_classes, p=confusion[worker, truth[task]])
            rows.append((f"t{task}", f"w{worker}", labels[label]))
    answers = pd.DataFrame(rows, columns=["task", "worker", "label"])
    return answers, {f"t{t}": labels[k] for t, k in enumerate(truth)}, labels
