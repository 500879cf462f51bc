"""One entry point for every aggregation method: :func:`aggregate`.

``dawid_skene`` is our own implementation (:mod:`quality.dawid_skene`); the other methods run
crowd-kit 1.4.2 through :mod:`quality._crowdkit`, which is imported on first use only, so
``import quality.aggregation`` stays cheap (crowd-kit takes seconds to import).

Whatever the method, the result has the same shape: plain dicts keyed by the caller's task
and worker ids, probability distributions over exactly the project's labels in the project's
order, and ties between labels broken towards the label listed first.

Gold: ``dawid_skene`` clamps gold tasks to their label during the fit, so gold also informs
the worker confusion matrices and the class prior. The crowd-kit methods cannot take gold,
so they fit on the answers alone and afterwards the gold tasks' labels and distributions are
overwritten with the gold label (probability 1); their skills do not use gold. Either way
a gold task's stopping confidence, which decides dynamic overlap, is what its answers alone
say (see :class:`AggregationResult`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from itertools import repeat
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ._encoding import EncodedAnswers, check_labels, encode_answers, encode_gold
from .dawid_skene import DawidSkeneParams, DawidSkeneState, fit_dawid_skene
from .errors import InvalidParameterError, UnknownMethodError
from .methods import DEFAULT_METHOD, METHODS

__all__ = ["METHODS", "AggregationResult", "Diagnostics", "aggregate", "default_params"]


# Parameter name -> (default, kind, minimum). Passed explicitly to crowd-kit every time, so a
# crowd-kit release that changes a default cannot silently change our results.
_CROWDKIT_PARAMS: dict[str, dict[str, tuple[Any, type, float | None]]] = {
    "majority_vote": {},
    "wawa": {},
    "glad": {
        "n_iter": (100, int, 1),
        "tol": (1e-5, float, 0.0),
        "m_step_max_iter": (25, int, 1),
        "m_step_tol": (1e-2, float, 0.0),
    },
    "mace": {
        "n_restarts": (10, int, 1),
        "n_iter": (50, int, 1),
        "method": ("vb", str, None),
        "smoothing": (0.1, float, 0.0),
        "default_noise": (0.5, float, 0.0),
        "alpha": (0.5, float, 0.0),
        "beta": (0.5, float, 0.0),
        "random_state": (0, int, 0),
    },
    "one_coin_dawid_skene": {
        "n_iter": (100, int, 1),
        "tol": (1e-5, float, 0.0),
        "prior_floor": (0.01, float, 0.0),
    },
}


def _resolve_crowdkit_params(method: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return the method's full parameter set: defaults overridden by ``params``, checked."""
    spec = _CROWDKIT_PARAMS[method]
    given = dict(params or {})
    unknown = sorted(set(given) - set(spec))
    if unknown:
        raise InvalidParameterError(
            f"unknown {method} parameter(s): {', '.join(unknown)}",
            details={"unknown_parameters": unknown, "known_parameters": sorted(spec)},
        )
    resolved: dict[str, Any] = {}
    for name, (default, kind, minimum) in spec.items():
        value = given.get(name, default)
        if kind is str:
            ok = isinstance(value, str)
        elif kind is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = (
                isinstance(value, int | float)
                and not isinstance(value, bool)
                and math.isfinite(value)
            )
        if not ok or (minimum is not None and value < minimum):
            bound = f" >= {minimum}" if minimum is not None else ""
            raise InvalidParameterError(
                f"{method} parameter {name} must be a {kind.__name__}{bound}",
                details={name: [repr(value)]},
            )
        resolved[name] = float(value) if kind is float else value
    if method == "mace" and resolved["method"] not in ("vb", "em"):
        raise InvalidParameterError(
            "mace parameter method must be 'vb' or 'em'", details={"method": [resolved["method"]]}
        )
    if method == "one_coin_dawid_skene" and resolved["prior_floor"] >= 1.0:
        raise InvalidParameterError(
            "prior_floor must be < 1", details={"prior_floor": [resolved["prior_floor"]]}
        )
    return resolved


def default_params(method: str) -> dict[str, Any]:
    """Return the parameters ``method`` uses when ``params`` is omitted, by name."""
    if method == "dawid_skene":
        return asdict(DawidSkeneParams())
    if method not in _CROWDKIT_PARAMS:
        raise UnknownMethodError(
            f"unknown aggregation method {method!r}", details={"method": [method]}
        )
    return {name: default for name, (default, _, _) in _CROWDKIT_PARAMS[method].items()}


@dataclass(frozen=True)
class Diagnostics:
    """How a fit went.

    Attributes:
        iterations: EM (or optimiser) iterations run; 0 for majority vote and Wawa; for MACE
            its fixed ``n_iter`` per restart.
        converged: Whether the method stopped on its tolerance before its iteration cap;
            True for the closed-form methods; None for MACE (it has no tolerance).
        log_likelihood: Final marginal log-likelihood of the answers in nats (Dawid-Skene
            only; None otherwise).
        log_likelihood_history: Log-likelihood at every E-step (Dawid-Skene; else empty).
        log_posterior_history: Log posterior at every E-step, the quantity EM keeps
            non-decreasing (Dawid-Skene; else empty).
        warm_started: Whether a previous run's parameters seeded this fit.
        seconds: Wall-clock time of the whole call, in seconds.
    """

    iterations: int | None
    converged: bool | None
    log_likelihood: float | None
    log_likelihood_history: list[float] = field(repr=False)
    log_posterior_history: list[float] = field(repr=False)
    warm_started: bool
    seconds: float


@dataclass(frozen=True)
class AggregationResult:
    """Aggregated labels, confidences and worker skills, as plain Python containers.

    Keys are the task and worker ids found in the answers (gold tasks without answers are not
    included). Every per-task distribution covers exactly ``labels``.

    Attributes:
        method: The method that produced the result.
        labels: The project's label set, in order.
        labels_: Task id -> aggregated label (gold tasks: their gold label).
        probas_: Task id -> {label: probability}, summing to 1 (gold tasks: one-hot).
        confidence_: Task id -> probability of the aggregated label (the maximum of
            ``probas_``; 1.0 for gold tasks).
        stopping_confidence_: Task id -> confidence to compare with the project's
            ``confidence_target`` for dynamic overlap. Dawid-Skene: the probability of the
            aggregated label under the smoothed stopping posterior (see
            :func:`quality.dawid_skene.fit_dawid_skene`), which is less overconfident than
            ``confidence_`` when items have few answers. Other methods: ``confidence_``.
            Gold tasks: the same, from their answers alone (the most probable label's
            probability, the gold label set aside), so that dynamic overlap buys answers for
            gold as for other tasks and a workforce cannot tell gold by which tasks get more
            answers. (Another task's label is the fitted posterior's, whose stopping
            probability can fall below the maximum; they differ only where the two
            posteriors disagree on the label.)
        skills_: Worker id -> skill in [0, 1]. Dawid-Skene: prior-weighted accuracy
            ``sum_k prior[k] * confusion[k][k]``, the probability of answering a random task
            correctly. Majority vote and Wawa: share of the worker's answers that agree with
            the majority vote. One-coin DS: the fitted probability of a correct answer.
            GLAD: ``expit(alpha)``, the probability of a correct answer on a task of unit
            difficulty term. MACE: the probability that the worker is not spamming.
        confusion_: Dawid-Skene only: worker id -> {true label: {answered label: probability}}
            (each inner dict sums to 1). None for other methods.
        priors_: Dawid-Skene only: label -> class prior probability. None otherwise.
        diagnostics: Iterations, convergence and log-likelihood of the fit.
        warm_start_: Dawid-Skene only: JSON-serialisable fitted parameters to pass as
            ``warm_start`` next time (store it as is), with ``cold_start_answers``, the number
            of answers at the last cold start (see ``COLD_RESTART_GROWTH``). None for other
            methods.
    """

    method: str
    labels: tuple[str, ...]
    labels_: dict[Any, str] = field(repr=False)
    probas_: dict[Any, dict[str, float]] = field(repr=False)
    confidence_: dict[Any, float] = field(repr=False)
    stopping_confidence_: dict[Any, float] = field(repr=False)
    skills_: dict[Any, float] = field(repr=False)
    confusion_: dict[Any, dict[str, dict[str, float]]] | None = field(repr=False)
    priors_: dict[str, float] | None
    diagnostics: Diagnostics
    warm_start_: dict[str, Any] | None = field(repr=False)


def _task_dicts(
    task_ids: list[Any],
    labels: tuple[str, ...],
    posteriors: NDArray[np.float64],
    stopping: NDArray[np.float64],
    gold_rows: NDArray[np.intp],
) -> tuple[dict[Any, str], dict[Any, dict[str, float]], dict[Any, float], dict[Any, float]]:
    """Turn ``(T, K)`` posteriors into the per-task dicts of :class:`AggregationResult`.

    ``stopping`` holds the posteriors that decide dynamic overlap, with the gold tasks (rows
    ``gold_rows``) not clamped to their gold label.
    """
    rows = np.arange(len(task_ids))
    # argmax returns the first maximum, i.e. ties go to the label listed first.
    predicted = posteriors.argmax(axis=1)
    names = np.asarray(labels, dtype=object)[predicted].tolist()
    confidence = posteriors[rows, predicted].tolist()
    stopping_rows = stopping[rows, predicted]
    stopping_rows[gold_rows] = stopping[gold_rows].max(axis=1)
    stopping_confidence = stopping_rows.tolist()
    # map/zip rather than a comprehension: this loop runs once per task (333k dicts take
    # about half a second either way; this is the faster of the two).
    distributions = map(dict, map(zip, repeat(labels), posteriors.tolist()))
    probas = dict(zip(task_ids, distributions, strict=True))
    return (
        dict(zip(task_ids, names, strict=True)),
        probas,
        dict(zip(task_ids, confidence, strict=True)),
        dict(zip(task_ids, stopping_confidence, strict=True)),
    )


def _warm_state(warm_start: object) -> DawidSkeneState | None:
    """Accept a previous result, a state, or a stored ``warm_start_`` dict."""
    if warm_start is None or isinstance(warm_start, DawidSkeneState):
        return warm_start
    if isinstance(warm_start, AggregationResult):
        return (
            None
            if warm_start.warm_start_ is None
            else DawidSkeneState.from_dict(warm_start.warm_start_)
        )
    if isinstance(warm_start, Mapping):
        if warm_start.get("method", "dawid_skene") != "dawid_skene":
            return None
        return DawidSkeneState.from_dict(warm_start)
    raise InvalidParameterError(
        "warm_start must be an AggregationResult, a DawidSkeneState or a stored warm_start_ dict"
    )


# A warm start follows the optimum it started in. EM only finds a local optimum, and the one
# a campaign's early answers led to can stay behind after the answers have grown: replaying
# weather_sentiment_amt, the warm-started fit ended 60 nats of log posterior below a cold fit
# of the same answers, with 3% of the labels different (adult_content: 115 labels). So
# whenever the answers have grown by this factor since the last cold start, a cold start
# runs too and the fit with the higher log posterior wins.
COLD_RESTART_GROWTH = 1.1


def _cold_start_answers(warm_start: object) -> int | None:
    """Answers at the last cold start, as recorded in a stored ``warm_start_`` dict."""
    stored = warm_start.warm_start_ if isinstance(warm_start, AggregationResult) else warm_start
    if isinstance(stored, Mapping):
        value = stored.get("cold_start_answers")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def _dawid_skene(
    answers: pd.DataFrame,
    labels: tuple[str, ...],
    gold: Mapping[Any, str] | None,
    params: Mapping[str, Any] | None,
    warm_start: object,
    started: float,
) -> AggregationResult:
    ds_params = DawidSkeneParams.from_mapping(params)
    fit = fit_dawid_skene(
        answers, labels=labels, gold=gold, params=ds_params, warm_start=_warm_state(warm_start)
    )
    cold_start_answers = len(answers)
    if fit.warm_started:
        last = _cold_start_answers(warm_start)
        if last is not None and len(answers) < COLD_RESTART_GROWTH * last:
            cold_start_answers = last  # a cold start competed recently: keep the warm fit
        else:
            cold = fit_dawid_skene(answers, labels=labels, gold=gold, params=ds_params)
            if cold.log_posterior_history[-1] > fit.log_posterior_history[-1]:
                fit = cold
    task_ids = fit.tasks.tolist()
    worker_ids = fit.workers.tolist()
    labels_, probas_, confidence_, stopping_ = _task_dicts(
        task_ids, labels, fit.posteriors, fit.stopping_posteriors, np.flatnonzero(fit.is_gold)
    )
    confusion_ = {
        worker: {
            true: dict(zip(labels, row, strict=True))
            for true, row in zip(labels, matrix, strict=True)
        }
        for worker, matrix in zip(worker_ids, fit.confusion.tolist(), strict=True)
    }
    return AggregationResult(
        method="dawid_skene",
        labels=labels,
        labels_=labels_,
        probas_=probas_,
        confidence_=confidence_,
        stopping_confidence_=stopping_,
        skills_=dict(zip(worker_ids, fit.skills.tolist(), strict=True)),
        confusion_=confusion_,
        priors_=dict(zip(labels, fit.priors.tolist(), strict=True)),
        diagnostics=Diagnostics(
            iterations=fit.iterations,
            converged=fit.converged,
            log_likelihood=fit.log_likelihood,
            log_likelihood_history=fit.log_likelihood_history,
            log_posterior_history=fit.log_posterior_history,
            warm_started=fit.warm_started,
            seconds=time.perf_counter() - started,
        ),
        warm_start_=fit.state().to_dict() | {"cold_start_answers": cold_start_answers},
    )


def _crowdkit_method(
    method: str,
    enc: EncodedAnswers,
    gold: Mapping[Any, str] | None,
    params: Mapping[str, Any] | None,
    started: float,
) -> AggregationResult:
    resolved = _resolve_crowdkit_params(method, params)
    gold_task, gold_label = encode_gold(gold, enc.tasks, enc.labels)
    from . import _crowdkit  # deferred: importing crowd-kit takes seconds

    fit = _crowdkit.fit_crowdkit(method, enc, resolved)
    # These models cannot take gold: overwrite the gold tasks' results with the known label,
    # and decide dynamic overlap on what the model made of their answers.
    stopping = fit.posteriors.copy()
    posteriors = fit.posteriors
    posteriors[gold_task] = 0.0
    posteriors[gold_task, gold_label] = 1.0
    labels_, probas_, confidence_, stopping_ = _task_dicts(
        enc.tasks.tolist(), enc.labels, posteriors, stopping, np.unique(gold_task)
    )
    closed_form = method in ("majority_vote", "wawa")
    return AggregationResult(
        method=method,
        labels=enc.labels,
        labels_=labels_,
        probas_=probas_,
        confidence_=confidence_,
        stopping_confidence_=stopping_,
        skills_=dict(zip(enc.workers.tolist(), fit.skills.tolist(), strict=True)),
        confusion_=None,
        priors_=None,
        diagnostics=Diagnostics(
            iterations=0 if closed_form else fit.iterations,
            converged=True if closed_form else fit.converged,
            log_likelihood=fit.log_likelihood,
            log_likelihood_history=[],
            log_posterior_history=[],
            warm_started=False,
            seconds=time.perf_counter() - started,
        ),
        warm_start_=None,
    )


def aggregate(
    answers: pd.DataFrame,
    *,
    labels: Sequence[str],
    method: str = DEFAULT_METHOD,
    gold: Mapping[Any, str] | None = None,
    params: Mapping[str, Any] | None = None,
    warm_start: AggregationResult | DawidSkeneState | Mapping[str, Any] | None = None,
) -> AggregationResult:
    """Aggregate redundant answers into one label per task, with confidences and skills.

    Args:
        answers: Long table, one row per answer, with columns ``task`` (task id),
            ``worker`` (worker id) and ``label`` (the answer; compared with ``labels`` as
            ``str(value)``). Ids keep their type and become the keys of the result.
            Duplicate ``(task, worker)`` rows count as separate answers.
        labels: The project's label set; results are distributions over exactly these.
        method: One of :data:`METHODS`.
        gold: Known labels by task id; keys must equal the ``task`` values, type included
            (see the module docstring for how each method uses gold). Gold tasks without
            answers are checked and otherwise ignored.
        params: Method parameters by name, e.g. ``{"max_iter": 50}`` for ``dawid_skene``
            (:class:`~quality.dawid_skene.DawidSkeneParams`) or ``{"n_iter": 20}`` for
            ``glad``; unknown names are refused. Omitted ones take documented defaults.
        warm_start: For ``dawid_skene``: a previous result, its ``warm_start_`` dict or a
            :class:`~quality.dawid_skene.DawidSkeneState`, to start EM from its parameters
            (converges in fewer iterations after a few more answers). Once the answers have
            grown by ``COLD_RESTART_GROWTH`` since the last cold start (or when that is not
            known, as with a bare state), a cold start runs as well and the fit with the
            higher log posterior is kept. Ignored by the other methods and when the label
            set changed.

    Returns:
        AggregationResult: labels, distributions, confidences, skills and diagnostics.

    Raises:
        UnknownMethodError: ``method`` is not in :data:`METHODS`.
        NotEnoughAnswersError: ``answers`` has no rows.
        InvalidAnswersError: a required column is missing or holds nulls.
        UnknownLabelError: an answer or a gold label is not in ``labels``.
        InvalidParameterError: bad ``labels``, ``params`` or ``warm_start``.
        AggregationFailedError: crowd-kit rejected the input.
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise UnknownMethodError(
            f"unknown aggregation method {method!r}; choose one of {', '.join(METHODS)}",
            details={"method": [method], "methods": list(METHODS)},
        )
    label_set = check_labels(labels)
    if params is not None and not isinstance(params, Mapping):
        raise InvalidParameterError("params must be a mapping of parameter names to values")
    if method == "dawid_skene":
        return _dawid_skene(answers, label_set, gold, params, warm_start, started)
    enc = encode_answers(answers, label_set)
    return _crowdkit_method(method, enc, gold, params, started)
