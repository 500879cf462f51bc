"""Factorising answer columns: the fast paths give exactly ``pd.factorize``'s result, and a fit
does not depend on the order of the rows or on how the ids are stored."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from quality._encoding import factorize
from quality.dawid_skene import fit_dawid_skene

from .helpers import synthetic_crowd

ARROW = pd.StringDtype("pyarrow")


def _chunked(*chunks: list[str]) -> pd.Series:
    return pd.Series(pd.arrays.ArrowExtensionArray(pa.chunked_array([pa.array(c) for c in chunks])))


COLUMNS = {
    "arrow sorted": pd.Series(["a", "a", "b", "c", "c"], dtype=ARROW),
    "arrow unsorted": pd.Series(["b", "a", "b", "c"], dtype=ARROW),
    "arrow with null": pd.Series(["a", None, "a", "b"], dtype=ARROW),
    "arrow one row": pd.Series(["a"], dtype=ARROW),
    "arrow chunks sorted": _chunked(["x", "y"], ["y", "z", "zz"]),
    "arrow chunks unsorted": _chunked(["x", "y", None], ["y", "a", "x"]),
    "arrow integers sorted": pd.Series([1, 1, 3, 7], dtype="int64[pyarrow]"),
    "arrow floats, signed zeros": pd.Series([-0.0, 0.0, 0.0], dtype="float64[pyarrow]"),
    "object": pd.Series(["b", "a", None, "b"], dtype=object),
    "int sorted": pd.Series([2, 2, 5, 9, 9]),
    "int unsorted": pd.Series([9, 2, 9, 5]),
    "uint8 sorted": pd.Series([1, 1, 3], dtype=np.uint8),
    "nullable Int64": pd.Series([1, None, 1, 2], dtype="Int64"),
    "category": pd.Series(["q", "r", "q"], dtype="category"),
    "empty": pd.Series([], dtype=ARROW),
}


@pytest.mark.parametrize("name", COLUMNS)
def test_factorize_matches_pandas(name: str) -> None:
    values = COLUMNS[name]
    codes, uniques = factorize(values)
    expected_codes, expected_uniques = pd.factorize(values, sort=False)
    assert codes.dtype == np.intp
    np.testing.assert_array_equal(codes, expected_codes)
    pd.testing.assert_index_equal(uniques, pd.Index(expected_uniques))


def _by_task(fit) -> pd.DataFrame:
    ids = fit.tasks.astype(str)
    if not ids.str.startswith("t").all():  # integer ids: spell them as the string ids
        ids = "t" + ids.str.zfill(5)
    return pd.DataFrame(fit.posteriors, index=ids).sort_index()


def test_fit_ignores_row_order_and_id_storage() -> None:
    answers, _, labels = synthetic_crowd(400, n_workers=25, seed=3)
    # Zero-padded ids sort like the tasks' numbers, so sorting by task takes the fast paths
    # (no hashing, answers already in CSR order) and a shuffle takes the general ones.
    number = answers["task"].str[1:].astype(int)
    answers = answers.assign(task=number.map("t{:05d}".format)).sort_values("task", kind="stable")
    variants = {
        "arrow sorted": answers.astype(ARROW),
        "arrow shuffled": answers.astype(ARROW).sample(frac=1.0, random_state=0),
        "object shuffled": answers.astype(object).sample(frac=1.0, random_state=1),
        "int sorted": answers.assign(task=answers["task"].str[1:].astype(int)),
    }
    params = {"max_iter": 30, "tol": 0.0}
    reference = fit_dawid_skene(variants.pop("object shuffled"), labels=labels, params=params)
    expected = _by_task(reference)
    for name, frame in variants.items():
        fit = fit_dawid_skene(frame, labels=labels, params=params)
        got = _by_task(fit)
        pd.testing.assert_index_equal(got.index, expected.index)
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-6, err_msg=name)
        np.testing.assert_allclose(
            fit.log_posterior_history, reference.log_posterior_history, rtol=1e-9, err_msg=name
        )
