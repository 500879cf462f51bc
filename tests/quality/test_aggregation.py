"""aggregate(): one interface over our Dawid-Skene and the crowd-kit methods."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from quality.aggregation import METHODS, AggregationResult, aggregate, default_params
from quality.dawid_skene import DawidSkeneState, fit_dawid_skene
from quality.errors import (
    InvalidAnswersError,
    InvalidParameterError,
    NotEnoughAnswersError,
    QualityError,
    UnknownLabelError,
    UnknownMethodError,
)

from .helpers import load_dataset

CROWDKIT_METHODS = [method for method in METHODS if method != "dawid_skene"]
# Small iteration counts keep GLAD and MACE (pandas loops in crowd-kit) to about a second.
FAST = {
    "glad": {"n_iter": 3, "m_step_max_iter": 5},
    "mace": {"n_restarts": 2, "n_iter": 10},
    "one_coin_dawid_skene": {"n_iter": 20},
}


@pytest.fixture(scope="module")
def bluebirds() -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    return load_dataset("bluebirds")


def _check_shape(result: AggregationResult, answers: pd.DataFrame, labels: list[str]) -> None:
    tasks = set(answers["task"])
    assert set(result.labels_) == set(result.probas_) == set(result.confidence_) == tasks
    assert set(result.stopping_confidence_) == tasks
    assert set(result.skills_) == set(answers["worker"])
    assert set(result.labels_.values()) <= set(labels)
    for task, distribution in result.probas_.items():
        assert list(distribution) == labels
        assert math.isclose(sum(distribution.values()), 1.0, rel_tol=1e-9)
        assert all(0.0 <= p <= 1.0 for p in distribution.values())
        assert distribution[result.labels_[task]] == max(distribution.values())
        assert result.confidence_[task] == distribution[result.labels_[task]]
    assert all(0.0 <= skill <= 1.0 for skill in result.skills_.values())


@pytest.mark.parametrize("method", CROWDKIT_METHODS)
def test_every_crowdkit_method_runs_clean_over_the_project_labels(method: str, bluebirds) -> None:
    # pytest runs with filterwarnings=error: any warning crowd-kit leaks fails this test.
    answers, gold, labels = bluebirds
    project_labels = [*labels, "unsure"]  # a label nobody used must still appear, with p = 0
    result = aggregate(answers, labels=project_labels, method=method, params=FAST.get(method))
    _check_shape(result, answers, project_labels)
    assert all(distribution["unsure"] == 0.0 for distribution in result.probas_.values())
    assert result.method == method
    assert result.confusion_ is None and result.warm_start_ is None
    assert result.stopping_confidence_ == result.confidence_
    truth = pd.Series(gold)
    accuracy = (pd.Series(result.labels_).reindex(truth.index) == truth).mean()
    assert accuracy > 0.55  # better than the 2-class coin the broken wrappers produced


@pytest.mark.parametrize("method", ["majority_vote", "wawa", "one_coin_dawid_skene"])
def test_crowdkit_methods_with_default_parameters(method: str) -> None:
    answers, gold, labels = load_dataset("rte")
    result = aggregate(answers, labels=labels, method=method)
    _check_shape(result, answers, labels)
    truth = pd.Series(gold)
    accuracy = (pd.Series(result.labels_).reindex(truth.index) == truth).mean()
    assert accuracy > 0.85


def test_wawa_weights_the_vote_by_skill() -> None:
    # t3 splits 1-1 between a reliable worker (agrees with the majority elsewhere) and an
    # unreliable one; Wawa must side with the reliable worker where plain voting ties.
    rows = [("t1", "good", "a"), ("t1", "x", "a"), ("t1", "bad", "b"),
            ("t2", "good", "b"), ("t2", "x", "b"), ("t2", "bad", "a"),
            ("t3", "good", "b"), ("t3", "bad", "a")]  # fmt: skip
    answers = pd.DataFrame(rows, columns=["task", "worker", "label"])
    result = aggregate(answers, labels=["a", "b"], method="wawa")
    assert result.labels_["t3"] == "b"
    assert result.skills_["good"] > result.skills_["bad"]
    vote = aggregate(answers, labels=["a", "b"], method="majority_vote")
    assert vote.probas_["t3"] == {"a": 0.5, "b": 0.5}
    assert vote.labels_["t3"] == "a"  # ties go to the label listed first


@pytest.mark.parametrize("method", METHODS)
def test_gold_items_carry_their_gold_label(method: str, bluebirds) -> None:
    answers, gold, labels = bluebirds
    # Pick gold items the answers get wrong, so keeping the label is the method's doing.
    vote = aggregate(answers, labels=labels, method="majority_vote")
    wrong = {task: label for task, label in gold.items() if vote.labels_[task] != label}
    assert wrong
    result = aggregate(answers, labels=labels, method=method, gold=wrong, params=FAST.get(method))
    for task, label in wrong.items():
        assert result.labels_[task] == label
        assert result.probas_[task][label] == 1.0
        assert result.confidence_[task] == 1.0
    # Dynamic overlap decides on what the answers alone say, for gold as for any task.
    stopping = [result.stopping_confidence_[task] for task in wrong]
    assert all(1 / len(labels) <= value <= 1.0 for value in stopping)
    if method == "dawid_skene":  # gold moves the workers' matrices, so not the gold-free value
        assert min(stopping) < 0.99
    else:  # these models cannot take gold: the same as without it
        plain = aggregate(answers, labels=labels, method=method, params=FAST.get(method))
        assert stopping == pytest.approx([plain.stopping_confidence_[task] for task in wrong])


def test_dawid_skene_result_is_plain_and_json_serialisable(bluebirds) -> None:
    answers, gold, labels = bluebirds
    result = aggregate(answers, labels=labels, gold=dict(list(gold.items())[:10]))
    _check_shape(result, answers, labels)
    assert result.method == "dawid_skene"
    assert result.diagnostics.converged and result.diagnostics.iterations > 0
    assert result.diagnostics.log_likelihood == result.diagnostics.log_likelihood_history[-1] < 0
    assert result.priors_ is not None and math.isclose(sum(result.priors_.values()), 1.0)
    assert result.confusion_ is not None and set(result.confusion_) == set(answers["worker"])
    for matrix in result.confusion_.values():
        assert list(matrix) == labels
        for row in matrix.values():
            assert list(row) == labels and math.isclose(sum(row.values()), 1.0)
    # Everything the orchestrator stores must be JSON as is.
    json.dumps(
        {
            "labels": result.labels_,
            "probas": result.probas_,
            "stopping": result.stopping_confidence_,
            "skills": result.skills_,
            "confusion": result.confusion_,
            "warm_start": result.warm_start_,
        }
    )
    # The stopping confidence is the calibrated one: never above the raw posterior on average.
    assert np.mean(list(result.stopping_confidence_.values())) < np.mean(
        list(result.confidence_.values())
    )


def test_dawid_skene_warm_start_through_aggregate() -> None:
    answers, _, labels = load_dataset("dog")
    shuffled = answers.sample(frac=1.0, random_state=1)
    earlier = aggregate(shuffled.iloc[: int(len(shuffled) * 0.95)], labels=labels)
    stored = json.loads(json.dumps(earlier.warm_start_))  # what the orchestrator keeps
    from_result = aggregate(shuffled, labels=labels, warm_start=earlier)
    from_stored = aggregate(shuffled, labels=labels, warm_start=stored)
    direct = fit_dawid_skene(shuffled, labels=labels, warm_start=DawidSkeneState.from_dict(stored))
    cold = aggregate(shuffled, labels=labels)
    for warm in (from_result, from_stored):
        assert warm.diagnostics.warm_started and not cold.diagnostics.warm_started
        assert warm.diagnostics.iterations == direct.iterations < cold.diagnostics.iterations
        assert warm.diagnostics.log_posterior_history == direct.log_posterior_history


def test_other_methods_ignore_a_warm_start(bluebirds) -> None:
    answers, _, labels = bluebirds
    earlier = aggregate(answers, labels=labels)
    result = aggregate(answers, labels=labels, method="majority_vote", warm_start=earlier)
    assert not result.diagnostics.warm_started


def test_skills_rank_simulated_workers() -> None:
    rng = np.random.default_rng(11)
    accuracy = {f"expert{i}": 0.95 for i in range(3)}
    accuracy |= {f"average{i}": 0.75 for i in range(3)} | {f"spammer{i}": 0.5 for i in range(3)}
    workers = list(accuracy)
    rows = []
    for task in range(400):
        truth = rng.choice(["a", "b"])
        for worker in rng.choice(workers, size=5, replace=False):
            wrong = "b" if truth == "a" else "a"
            rows.append((task, worker, truth if rng.random() < accuracy[worker] else wrong))
    answers = pd.DataFrame(rows, columns=["task", "worker", "label"])
    for method in METHODS:
        skills = pd.Series(
            aggregate(answers, labels=["a", "b"], method=method, params=FAST.get(method)).skills_
        )
        by_group = skills.groupby(skills.index.str.rstrip("0123456789")).mean()
        assert by_group["expert"] > by_group["average"] > by_group["spammer"], method


def test_mace_sees_labels_in_first_appearance_order(bluebirds) -> None:
    # crowd-kit's MACE scrambles thetas_ when ids are not in first-appearance order; we feed
    # it first-appearance codes, so renaming the labels cannot change which tasks group together.
    answers, _, labels = bluebirds
    renamed = answers.assign(label=answers["label"].map({"0": "z", "1": "a"}))
    first = aggregate(answers, labels=labels, method="mace", params=FAST["mace"])
    second = aggregate(renamed, labels=["a", "z"], method="mace", params=FAST["mace"])
    mapping = {"0": "z", "1": "a"}
    assert all(mapping[first.labels_[task]] == second.labels_[task] for task in first.labels_)


def test_one_coin_e_step_sees_a_floored_prior() -> None:
    from crowdkit.aggregation import DawidSkene, MajorityVote, OneCoinDawidSkene

    from quality._crowdkit import _floored_one_coin, quiet_crowdkit

    data = pd.DataFrame({"task": [0, 0, 1, 1], "worker": [0, 1, 0, 1], "label": [0, 1, 1, 1]})
    with quiet_crowdkit():
        vote = MajorityVote(on_missing_skill="error", default_skill=None)
        errors = DawidSkene._m_step(data, vote.fit_predict_proba(data))
        runaway = pd.Series([1.0, 0.0], index=pd.Index([0, 1], name="label"))
        floored = _floored_one_coin(0.25)._e_step(data, runaway.copy(), errors)
        # clip at 0.25 -> (1.0, 0.25) -> renormalised (0.8, 0.2)
        expected = OneCoinDawidSkene._e_step(
            data, pd.Series([0.8, 0.2], index=runaway.index), errors
        )
        unfloored = OneCoinDawidSkene._e_step(data, runaway.copy(), errors)
    pd.testing.assert_frame_equal(floored, expected)
    assert floored[1].sum() > unfloored[1].sum() + 0.1


@pytest.mark.parametrize("method", METHODS)
def test_a_single_label_everywhere_is_not_an_error(method: str) -> None:
    answers = pd.DataFrame(
        {"task": ["t1", "t1", "t2"], "worker": ["w1", "w2", "w1"], "label": ["a", "a", "a"]}
    )
    result = aggregate(answers, labels=["a", "b"], method=method)
    assert result.labels_ == {"t1": "a", "t2": "a"}
    assert result.probas_["t1"]["a"] > 0.5


# --- errors -------------------------------------------------------------------------------------


def test_unknown_method() -> None:
    with pytest.raises(UnknownMethodError) as info:
        aggregate(
            pd.DataFrame({"task": [1], "worker": [1], "label": ["a"]}), labels=["a"], method="magic"
        )
    assert info.value.code == "unknown_method"
    assert isinstance(info.value, QualityError)
    with pytest.raises(UnknownMethodError):
        default_params("magic")


@pytest.mark.parametrize("method", METHODS)
def test_unknown_answer_label(method: str) -> None:
    answers = pd.DataFrame({"task": ["t1", "t2"], "worker": ["w1", "w1"], "label": ["a", "c"]})
    with pytest.raises(UnknownLabelError) as info:
        aggregate(answers, labels=["a", "b"], method=method)
    assert info.value.details["unknown_labels"] == ["c"]


@pytest.mark.parametrize("method", METHODS)
def test_unknown_gold_label(method: str) -> None:
    answers = pd.DataFrame({"task": ["t1", "t2"], "worker": ["w1", "w1"], "label": ["a", "b"]})
    with pytest.raises(UnknownLabelError):
        aggregate(answers, labels=["a", "b"], method=method, gold={"t1": "c"})


@pytest.mark.parametrize("method", METHODS)
def test_unknown_parameter(method: str) -> None:
    answers = pd.DataFrame({"task": ["t1"], "worker": ["w1"], "label": ["a"]})
    with pytest.raises(InvalidParameterError) as info:
        aggregate(answers, labels=["a", "b"], method=method, params={"n_itter": 5})
    assert info.value.details["unknown_parameters"] == ["n_itter"]


@pytest.mark.parametrize(
    ("method", "params"),
    [("glad", {"n_iter": 0}), ("mace", {"method": "gibbs"}), ("mace", {"smoothing": "lots"}),
     ("one_coin_dawid_skene", {"prior_floor": 1.5}), ("dawid_skene", {"tol": -1})],
)  # fmt: skip
def test_invalid_parameter_values(method: str, params: dict) -> None:
    answers = pd.DataFrame({"task": ["t1"], "worker": ["w1"], "label": ["a"]})
    with pytest.raises(InvalidParameterError):
        aggregate(answers, labels=["a", "b"], method=method, params=params)


@pytest.mark.parametrize("method", METHODS)
def test_no_answers(method: str) -> None:
    with pytest.raises(NotEnoughAnswersError):
        aggregate(pd.DataFrame(columns=["task", "worker", "label"]), labels=["a"], method=method)


def test_missing_column() -> None:
    with pytest.raises(InvalidAnswersError) as info:
        aggregate(pd.DataFrame({"task": [1], "answer": ["a"]}), labels=["a"])
    assert info.value.details["missing_columns"] == ["worker", "label"]


def test_default_params_are_explicit_for_every_method() -> None:
    assert default_params("dawid_skene")["max_iter"] == 100
    assert default_params("majority_vote") == {}
    assert default_params("glad") == {
        "n_iter": 100,
        "tol": 1e-5,
        "m_step_max_iter": 25,
        "m_step_tol": 1e-2,
    }
    assert default_params("mace")["random_state"] == 0
    assert default_params("one_coin_dawid_skene")["prior_floor"] == 0.01


def test_importing_quality_does_not_import_crowdkit_or_frameworks() -> None:
    code = (
        "import sys, quality, quality.aggregation, quality.dawid_skene, quality.gold, "
        "quality.overlap, quality.methods; "
        "heavy = {'crowdkit', 'sklearn', 'flask', 'sqlalchemy'} & set(sys.modules); "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
