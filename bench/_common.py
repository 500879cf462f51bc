"""Helpers shared by the benchmarks: where the shared data sets live and how to load one."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd


def datasets_dir() -> Path:
    """Return the shared data sets folder: ``$QUORUM_DATASETS`` or ``../shared/datasets``."""
    env = os.environ.get("QUORUM_DATASETS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets"


def dataset_names() -> list[str]:
    """Return the names of the data sets (folders holding an ``answers.csv``), sorted."""
    return sorted(p.name for p in datasets_dir().iterdir() if (p / "answers.csv").is_file())


def load_dataset(name: str) -> tuple[pd.DataFrame, dict[str, str]]:
    """Load a data set: answers (``task``, ``worker``, ``label``, all strings) and gold."""
    folder = datasets_dir() / name
    answers = pd.read_csv(folder / "answers.csv", dtype=str, keep_default_na=False)
    gold = pd.read_csv(folder / "gold.csv", dtype=str, keep_default_na=False)
    return answers, dict(zip(gold["task"], gold["label"], strict=True))
