"""Dawid-Skene aggregation, vectorised with numpy and scipy.sparse.

The model (Dawid and Skene, 1979): every task ``t`` has a hidden true class ``z_t`` drawn from
the class prior ``pi``; worker ``w`` answers label ``l`` on a task of class ``k`` with
probability ``theta[w, k, l]`` (one confusion matrix per worker, rows = true class, columns =
answered label, rows sum to 1), independently of the other answers given the class.

We fit it with EM, in log space, with three departures from the textbook/crowd-kit version:

* **Fixed class set.** The classes are the project's labels, in the project's order. A label
  nobody answered is still a class (with a small prior); an answer or a gold label outside the
  set raises :class:`~quality.errors.UnknownLabelError` instead of adding a class.
* **Gold is observed, not corrected.** A gold task's class is known, so its posterior is
  one-hot on the gold label at *every* step (including the initialisation), and its term in
  the likelihood is ``log pi[g] + sum log theta[w, g, l]`` (the joint probability of its
  answers and its known class) rather than a sum over classes. Only the stopping posterior,
  computed once after the fit for dynamic overlap, leaves gold tasks unclamped.
* **MAP with Dirichlet smoothing.** The M-step adds pseudo-counts to every worker's expected
  confusion counts -- ``confusion_diagonal_pseudo_count`` (default 1) to each diagonal cell,
  ``confusion_off_diagonal_pseudo_count`` (default 0.01) to each other cell -- and
  ``prior_pseudo_count`` (default 1) to every class's expected number of tasks. These are MAP
  estimates under Dirichlet(pseudo-count + 1) priors. No probability collapses to zero (a
  worker with 3 answers does not get a matrix of zeros that vetoes a class), and the small
  lean towards the diagonal ("a worker gives the true label more often than any single wrong
  one") keeps a label nobody uses from turning into a catch-all class: with symmetric
  smoothing, adding an unused label to zencrowd_all's label set made 628 of its 2,040 tasks
  take it; with the diagonal pseudo-count, none do.

What increases at every step: EM for a MAP estimate is guaranteed not to decrease the **log
posterior** of the parameters,

    log_posterior(theta, pi) = LL(theta, pi)
                               + sum_{w,k,l} c[k, l] * log theta[w, k, l]
                               + prior_pseudo_count * sum_k log pi[k]        (+ a constant)

where ``c`` holds the confusion pseudo-counts above and
``LL = sum_t log sum_k pi[k] prod_{answers (w, l) of t} theta[w, k, l]`` is the true marginal
log-likelihood of the observed answers (the prior term enters once per task; gold tasks
contribute their joint term as above). ``log_posterior_history`` is non-decreasing up to
rounding (the E-step's exponential and logarithm run in float32: each task's term is exact
to 1e-6 nats, in practice far better);
``log_likelihood_history`` alone need not be monotone when pseudo-counts are positive, and
equals the log posterior when they are all zero. Convergence is declared when the relative
change of the log posterior between two consecutive E-steps falls to ``tol`` or below.

Duplicate ``(task, worker)`` rows are kept: each row is one answer, as crowd-kit does. The
service never produces them (a worker answers an item once); some public data sets have them.

Performance: tasks, workers and labels are integer-coded once (without hashing when a column
is already sorted), the answers become one sparse ``tasks x (workers * labels)`` count matrix
(built without sorting when the answers come grouped by task), and one EM iteration is two
sparse matrix-vector passes over it per class plus a few dense passes over the
``classes x tasks`` posteriors.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from numpy.typing import NDArray

from ._encoding import EncodedAnswers, check_labels, encode_answers, encode_gold
from .errors import InvalidParameterError

__all__ = [
    "DawidSkeneFit",
    "DawidSkeneParams",
    "DawidSkeneState",
    "fit_dawid_skene",
]

# Pseudo-counts are raised to this floor so a zero pseudo-count (crowd-kit's maximum-likelihood
# behaviour, which clips at 1e-10) can never produce log(0); the floor is far below any count.
_MIN_PSEUDO_COUNT = 1e-12

Float = NDArray[np.float64]


@dataclass(frozen=True)
class DawidSkeneParams:
    """Parameters of :func:`fit_dawid_skene`; every one has a documented default.

    Attributes:
        max_iter: Maximum number of EM iterations (M-steps after the initial one).
        tol: Convergence threshold on the relative change of the log posterior between two
            consecutive E-steps, ``|new - old| <= tol * |old|``. ``0`` runs all ``max_iter``
            iterations unless the objective stops changing at all.
        confusion_diagonal_pseudo_count: Dirichlet pseudo-count added to each diagonal
            (correct-answer) cell of every worker's expected confusion counts in the M-step
            (answers).
        confusion_off_diagonal_pseudo_count: Dirichlet pseudo-count added to each other cell
            (answers). Both at ``0`` (and ``prior_pseudo_count=0``) give crowd-kit's maximum
            likelihood estimate.
        prior_pseudo_count: Dirichlet pseudo-count added to every class's expected number of
            tasks when estimating the class prior (tasks).
        stopping_off_diagonal_pseudo_count: Pseudo-count added to every off-diagonal
            (wrong-answer) confusion cell when computing the stopping posterior (answers).
        stopping_diagonal_pseudo_count: Pseudo-count added to every diagonal (correct-answer)
            cell for the stopping posterior (answers). Larger than the off-diagonal one, so a
            worker with few answers is taken for a better-than-random but far from perfect
            worker.
        stopping_max_accuracy: Highest probability of a correct answer that the stopping
            posterior grants any worker on any class, in (0, 1]; a smoothed confusion row
            above it is cut down to it, its wrong answers scaled up to fill the rest. ``1``
            leaves the rows as smoothed.
    """

    max_iter: int = 100
    tol: float = 1e-6
    confusion_diagonal_pseudo_count: float = 1.0
    confusion_off_diagonal_pseudo_count: float = 0.01
    prior_pseudo_count: float = 1.0
    stopping_off_diagonal_pseudo_count: float = 1.0
    stopping_diagonal_pseudo_count: float = 2.0
    stopping_max_accuracy: float = 0.92

    def __post_init__(self) -> None:
        if isinstance(self.max_iter, bool) or not isinstance(self.max_iter, int):
            raise InvalidParameterError(
                "max_iter must be an integer", details={"max_iter": [repr(self.max_iter)]}
            )
        if self.max_iter < 0:
            raise InvalidParameterError(
                "max_iter must be >= 0", details={"max_iter": [self.max_iter]}
            )
        for spec in fields(self):
            if spec.name == "max_iter":
                continue
            value = getattr(self, spec.name)
            if (
                isinstance(value, bool)
                or not isinstance(value, int | float)
                or not math.isfinite(value)
            ):
                raise InvalidParameterError(
                    f"{spec.name} must be a finite number", details={spec.name: [repr(value)]}
                )
            if value < 0:
                raise InvalidParameterError(
                    f"{spec.name} must be >= 0", details={spec.name: [value]}
                )
        if not 0 < self.stopping_max_accuracy <= 1:
            raise InvalidParameterError(
                "stopping_max_accuracy must be in (0, 1]",
                details={"stopping_max_accuracy": [self.stopping_max_accuracy]},
            )

    @classmethod
    def from_mapping(cls, params: Mapping[str, Any] | None) -> DawidSkeneParams:
        """Build parameters from a project's JSON settings, refusing unknown names."""
        params = dict(params or {})
        known = {spec.name for spec in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise InvalidParameterError(
                f"unknown dawid_skene parameter(s): {', '.join(unknown)}",
                details={"unknown_parameters": unknown, "known_parameters": sorted(known)},
            )
        return cls(**params)


@dataclass(frozen=True)
class DawidSkeneState:
    """Fitted parameters that seed a later run (warm start); JSON-friendly via ``to_dict``.

    Attributes:
        labels: The class set the parameters refer to, in order.
        priors: Class prior, shape ``(K,)``, sums to 1.
        workers: Worker ids, one per confusion matrix.
        confusion: Confusion matrices, shape ``(W, K, K)``; ``confusion[w, k, l]`` is the
            probability that worker ``w`` answers ``labels[l]`` on a task of true class
            ``labels[k]`` (rows sum to 1).
    """

    labels: tuple[str, ...]
    priors: Float
    workers: tuple[Hashable, ...]
    confusion: Float = field(repr=False)

    def __post_init__(self) -> None:
        k = len(self.labels)
        priors = np.asarray(self.priors, dtype=np.float64)
        confusion = np.asarray(self.confusion, dtype=np.float64)
        if priors.shape != (k,) or confusion.shape != (len(self.workers), k, k):
            raise InvalidParameterError(
                "warm start state has inconsistent shapes",
                details={
                    "priors": list(priors.shape),
                    "confusion": list(confusion.shape),
                    "labels": k,
                },
            )
        if not (np.isfinite(priors).all() and np.isfinite(confusion).all()):
            raise InvalidParameterError("warm start state holds non-finite numbers")
        if (priors < 0).any() or (confusion < 0).any():
            raise InvalidParameterError("warm start state holds negative probabilities")
        if len(set(self.workers)) != len(self.workers):
            raise InvalidParameterError("warm start state lists a worker twice")
        object.__setattr__(self, "priors", priors)
        object.__setattr__(self, "confusion", confusion)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-serialisable dict (lists of floats), the inverse of ``from_dict``."""
        return {
            "method": "dawid_skene",
            "labels": list(self.labels),
            "priors": self.priors.tolist(),
            "workers": list(self.workers),
            "confusion": self.confusion.tolist(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DawidSkeneState:
        """Rebuild a state stored with ``to_dict``."""
        try:
            workers = tuple(data["workers"])
            return cls(
                labels=tuple(data["labels"]),
                priors=np.asarray(data["priors"], dtype=np.float64),
                workers=workers,
                confusion=np.asarray(data["confusion"], dtype=np.float64).reshape(
                    len(workers), len(data["labels"]), len(data["labels"])
                ),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidParameterError(f"malformed warm start state: {exc}") from exc


@dataclass(frozen=True)
class DawidSkeneFit:
    """Result of :func:`fit_dawid_skene`, as numpy arrays indexed by integer codes.

    Attributes:
        labels: The class set, in the project's order; column ``k`` means ``labels[k]``.
        tasks: Task ids; row ``t`` of every per-task array is ``tasks[t]``.
        workers: Worker ids; row ``w`` of every per-worker array is ``workers[w]``.
        posteriors: ``(T, K)`` posterior class probabilities at the final parameters.
        stopping_posteriors: ``(T, K)`` posteriors recomputed with heavily smoothed confusion
            matrices (see :func:`fit_dawid_skene`), for dynamic-overlap decisions; gold
            tasks' are not clamped to their gold label.
        predicted: ``(T,)`` code of the most probable class (ties go to the earlier label).
        is_gold: ``(T,)`` True for tasks clamped to a known gold label.
        priors: ``(K,)`` class prior.
        confusion: ``(W, K, K)`` confusion matrices, rows = true class, columns = answer.
        skills: ``(W,)`` prior-weighted accuracy ``sum_k priors[k] * confusion[w, k, k]``:
            the probability that the worker answers a random task correctly.
        log_likelihood_history: Marginal log-likelihood (nats) at each E-step.
        log_posterior_history: Log posterior (nats, up to a constant) at each E-step; the
            quantity EM makes non-decreasing.
        iterations: EM iterations run (M-steps after the initialisation).
        converged: Whether the relative change fell to ``tol`` before ``max_iter``.
        warm_started: Whether parameters of a previous run seeded this one.
    """

    labels: tuple[str, ...]
    tasks: pd.Index
    workers: pd.Index
    posteriors: Float = field(repr=False)
    stopping_posteriors: Float = field(repr=False)
    predicted: NDArray[np.intp] = field(repr=False)
    is_gold: NDArray[np.bool_] = field(repr=False)
    priors: Float
    confusion: Float = field(repr=False)
    skills: Float = field(repr=False)
    log_likelihood_history: list[float] = field(repr=False)
    log_posterior_history: list[float] = field(repr=False)
    iterations: int
    converged: bool
    warm_started: bool

    @property
    def log_likelihood(self) -> float:
        """Marginal log-likelihood (nats) at the final parameters."""
        return self.log_likelihood_history[-1]

    def state(self) -> DawidSkeneState:
        """Return the fitted parameters as a warm start for the next run."""
        return DawidSkeneState(
            labels=self.labels,
            priors=self.priors,
            workers=tuple(self.workers.tolist()),
            confusion=self.confusion,
        )


@dataclass(frozen=True)
class _Block:
    """A run of consecutive tasks with its own slice of the answer count matrix."""

    start: int
    stop: int
    counts: sp.csr_array
    counts_t: sp.csc_array
    gold_row: NDArray[np.intp]
    gold_label: NDArray[np.intp]


def _answer_matrix(
    task: NDArray[np.intp], column: NDArray[np.intp], shape: tuple[int, int]
) -> sp.csr_array:
    """Return the ``tasks x (workers * labels)`` CSR matrix with one entry of 1 per answer.

    Duplicate ``(task, column)`` entries are left in place: every product sums them, which is
    the same as counting each row as an answer.
    """
    data = np.ones(len(task))
    if len(task) < 2 or bool((task[1:] >= task[:-1]).all()):
        # Task codes number tasks in order of first appearance, so answers that arrive
        # grouped by task (the usual export) are already in CSR order: no sort, no copy.
        indptr = np.zeros(shape[0] + 1, dtype=np.intp)
        np.cumsum(np.bincount(task, minlength=shape[0]), out=indptr[1:])
        return sp.csr_array((data, column, indptr), shape=shape)
    return sp.coo_array((data, (task, column)), shape=shape).tocsr()


class _Model:
    """Sparse answer counts plus the EM passes over them.

    ``counts[t, w * K + l]`` is how many times worker ``w`` answered ``l`` on task ``t``.
    Tasks are processed in blocks of ``BLOCK_TASKS`` so that one block's log joint,
    exponentials and posteriors stay in the CPU cache between the half-dozen operations an
    E-step applies to them, and the M-step's expected counts are accumulated from the same
    block while it is still there: on 1M answers this was a third of the iteration time.
    """

    BLOCK_TASKS = 32_768

    def __init__(
        self, enc: EncodedAnswers, gold_task: NDArray[np.intp], gold_label: NDArray[np.intp]
    ):
        self.k = len(enc.labels)
        self.n_tasks = enc.n_tasks
        self.n_workers = enc.n_workers
        column = enc.worker * self.k + enc.label
        counts = _answer_matrix(enc.task, column, (self.n_tasks, self.n_workers * self.k))
        # answer_counts[w * K + l] = how many times worker w answered l.
        self.answer_counts = np.bincount(column, minlength=self.n_workers * self.k).astype(
            np.float64
        )
        self.gold_task = gold_task
        self.gold_label = gold_label
        self.blocks: list[_Block] = []
        for start in range(0, self.n_tasks, self.BLOCK_TASKS):
            stop = min(start + self.BLOCK_TASKS, self.n_tasks)
            # A block is a view of the whole matrix's arrays; only its indptr is copied.
            first, last = counts.indptr[start], counts.indptr[stop]
            block_counts = sp.csr_array(
                (
                    counts.data[first:last],
                    counts.indices[first:last],
                    counts.indptr[start : stop + 1] - first,
                ),
                shape=(stop - start, counts.shape[1]),
            )
            in_block = (gold_task >= start) & (gold_task < stop)
            self.blocks.append(
                _Block(
                    start=start,
                    stop=stop,
                    counts=block_counts,
                    # The transpose is a free CSC view; its mat-vec scatters into a small
                    # (workers x labels) output while reading the block's posteriors in order.
                    counts_t=block_counts.T,
                    gold_row=gold_task[in_block] - start,
                    gold_label=gold_label[in_block],
                )
            )
        width = min(self.BLOCK_TASKS, self.n_tasks)
        self._joint = np.empty((self.k, width))
        self._scaled = np.empty((self.k, width), dtype=np.float32)

    def majority_vote(self, enc: EncodedAnswers) -> Float:
        """Return ``(K, T)`` vote shares per task (gold clamped), the cold-start posteriors."""
        votes = np.bincount(enc.label * self.n_tasks + enc.task, minlength=self.k * self.n_tasks)
        shares: Float = votes.reshape(self.k, self.n_tasks) / np.bincount(
            enc.task, minlength=self.n_tasks
        )
        if len(self.gold_task):
            shares[:, self.gold_task] = 0.0
            shares[self.gold_label, self.gold_task] = 1.0
        return shares

    def _finish_counts(self, partial: Float) -> Float:
        """Complete ``(K-1, W*K)`` expected counts with the last class; return ``(W, K, K)``."""
        counts = np.empty((self.k, self.n_workers * self.k))
        counts[:-1] = partial
        # Posteriors sum to 1 per task, so the last class's counts are the raw answer counts
        # minus the others': one sparse pass saved per iteration. Rounding can leave -1e-13
        # where the true value is 0, and a probability must not go below 0.
        np.subtract(self.answer_counts, partial.sum(axis=0), out=counts[-1])
        np.maximum(counts[-1], 0.0, out=counts[-1])
        return counts.reshape(self.k, self.n_workers, self.k).transpose(1, 0, 2)

    def expected_counts(self, posteriors: Float) -> Float:
        """Return ``(W, K, K)`` expected counts: answers ``l`` by ``w`` on tasks of class ``k``."""
        partial = np.zeros((self.k - 1, self.n_workers * self.k))
        for block in self.blocks:
            for klass in range(self.k - 1):
                partial[klass] += block.counts_t @ posteriors[klass, block.start : block.stop]
        return self._finish_counts(partial)

    def e_step(
        self, confusion: Float, priors: Float, out: Float, *, count: bool = True, clamp: bool = True
    ) -> tuple[float, Float, Float]:
        """Write ``(K, T)`` posteriors at these parameters into ``out``.

        Gold tasks' posteriors are one-hot on their gold label unless ``clamp`` is False;
        then they are what the answers alone say (``count`` must then be False too).

        Returns:
            The marginal log-likelihood (nats), the ``(W, K, K)`` expected counts and the
            ``(K,)`` expected number of tasks per class under the new posteriors: the
            sufficient statistics of the next M-step (left at zero when ``count`` is False).
        """
        assert clamp or not count, "expected counts need the gold tasks clamped"
        # by_answer[w*K + l, k] = log theta[w, k, l]: one row per (worker, answered label)
        # with the K classes side by side, so one sparse pass gathers all classes at once.
        by_answer = np.ascontiguousarray(
            np.log(confusion).transpose(0, 2, 1).reshape(self.n_workers * self.k, self.k)
        )
        log_priors = np.log(priors)[:, None]
        partial = np.zeros((self.k - 1, self.n_workers * self.k))
        class_totals = np.zeros(self.k)
        log_likelihood = 0.0
        for block in self.blocks:
            width = block.stop - block.start
            joint = np.add((block.counts @ by_answer).T, log_priors, out=self._joint[:, :width])
            # A gold task's class is observed: its likelihood term is the joint, not the marginal.
            gold_terms = joint[block.gold_label, block.gold_row]
            shift = joint.max(axis=0)
            # The exponential, its sum and the log of the sum run in float32: numpy's float64
            # exp and log are scalar code on AVX2 machines and were half of an E-step;
            # float32's are vectorised and 4x faster. The shifted values are <= 0 and each
            # sum lies in [1, K], so every task's log-likelihood term keeps an absolute error
            # below 1e-6 nats (2e-7 for K <= 4), and posteriors keep 7 significant digits and
            # sum to 1 within 1e-7 (the reported ones are renormalised in float64). The sums
            # over tasks and everything else stay in float64.
            scaled = np.subtract(joint, shift, out=self._scaled[:, :width], casting="same_kind")
            np.exp(scaled, out=scaled)
            total = scaled.sum(axis=0)
            posteriors = np.divide(scaled, total, out=out[:, block.start : block.stop])
            log_total = np.log(total, out=total)
            log_likelihood += float(shift.sum()) + float(log_total.sum(dtype=np.float64))
            if len(block.gold_row):
                # Swap the gold tasks' marginal terms for their joint terms.
                log_likelihood += float(gold_terms.sum()) - float(
                    shift[block.gold_row].sum() + log_total[block.gold_row].sum(dtype=np.float64)
                )
            if clamp:
                posteriors[:, block.gold_row] = 0.0
                posteriors[block.gold_label, block.gold_row] = 1.0
            if count:
                for klass in range(self.k - 1):
                    partial[klass] += block.counts_t @ posteriors[klass]
                class_totals += posteriors.sum(axis=1)
        return log_likelihood, self._finish_counts(partial), class_totals


def _normalise(counts: Float) -> Float:
    """Divide by the sum over the last axis."""
    out: Float = counts / counts.sum(axis=-1, keepdims=True)
    return out


def _m_step(
    counts: Float, class_totals: Float, confusion_pseudo_counts: Float, prior_pseudo_count: float
) -> tuple[Float, Float]:
    """Return MAP confusion matrices ``(W, K, K)`` and class prior ``(K,)`` from expected counts."""
    return (
        _normalise(counts + confusion_pseudo_counts),
        _normalise(class_totals + prior_pseudo_count),
    )


def _pseudo_count_matrix(k: int, diagonal: float, off_diagonal: float) -> Float:
    """Return the ``(K, K)`` Dirichlet pseudo-counts, each floored at ``_MIN_PSEUDO_COUNT``."""
    eye = np.eye(k)
    return np.maximum(diagonal * eye + off_diagonal * (1.0 - eye), _MIN_PSEUDO_COUNT)


def _cap_accuracy(confusion: Float, max_accuracy: float) -> Float:
    """Cut every confusion row whose diagonal cell exceeds ``max_accuracy`` down to it.

    The row's off-diagonal cells are scaled by one factor so that the row still sums to 1;
    rows at or below the cap are unchanged.
    """
    k = confusion.shape[-1]
    diagonal = np.einsum("...kk->...k", confusion)
    wrong = confusion.sum(axis=-1) - diagonal
    over = diagonal > max_accuracy
    # Off-diagonal cells are positive (pseudo-counts are floored above zero), so ``wrong``
    # is too in a row over the cap; rows at or below it are not divided at all.
    scale = np.where(over, (1.0 - max_accuracy) / np.where(over, wrong, 1.0), 1.0)
    capped: Float = confusion * scale[..., None]
    capped[..., np.arange(k), np.arange(k)] = np.where(over, max_accuracy, diagonal)
    return capped


def _log_prior(
    confusion: Float, priors: Float, confusion_pseudo_counts: Float, prior_pseudo_count: float
) -> float:
    """Return the Dirichlet log prior density of the parameters, up to a constant."""
    return float(
        (np.log(confusion) * confusion_pseudo_counts).sum()
        + prior_pseudo_count * np.log(priors).sum()
    )


def _initial_parameters(
    model: _Model,
    enc: EncodedAnswers,
    labels: tuple[str, ...],
    confusion_pseudo_counts: Float,
    prior_pseudo_count: float,
    warm_start: DawidSkeneState | None,
) -> tuple[Float, Float, bool]:
    """Return the starting confusion matrices and prior, and whether a warm start applied."""
    shares = model.majority_vote(enc)
    confusion, priors = _m_step(
        model.expected_counts(shares),
        shares.sum(axis=1),
        confusion_pseudo_counts,
        prior_pseudo_count,
    )
    if warm_start is None or tuple(warm_start.labels) != labels:
        # A state for another label set cannot be mapped class by class; a cold start is
        # always correct, only slower.
        return confusion, priors, False
    position = (
        pd.Index(list(warm_start.workers)).get_indexer(enc.workers) if warm_start.workers else None
    )
    if position is not None:
        known = position >= 0
        # Floor and renormalise: a stored state may come from an unsmoothed or rounded source.
        confusion[known] = _normalise(
            np.maximum(warm_start.confusion[position[known]], _MIN_PSEUDO_COUNT)
        )
    priors = _normalise(np.maximum(warm_start.priors, _MIN_PSEUDO_COUNT))
    return confusion, priors, True


def fit_dawid_skene(
    answers: pd.DataFrame,
    *,
    labels: Sequence[str],
    gold: Mapping[Any, str] | None = None,
    params: DawidSkeneParams | Mapping[str, Any] | None = None,
    warm_start: DawidSkeneState | None = None,
) -> DawidSkeneFit:
    """Fit Dawid-Skene by EM, with gold tasks clamped, and return arrays.

    Cold start: the E-step's first parameters are the M-step of majority-vote posteriors
    (each task's vote shares; gold tasks one-hot), as crowd-kit does. Warm start: workers
    present in ``warm_start`` start from their stored confusion matrix and the class prior
    from the stored prior; other workers start from the cold-start matrices. A state for a
    different label set is ignored (``warm_started`` is then False).

    The stopping posterior: confusion matrices re-estimated from the final posteriors'
    expected counts plus ``stopping_off_diagonal_pseudo_count`` (default 1) in every
    off-diagonal cell and ``stopping_diagonal_pseudo_count`` (default 2) in every diagonal
    cell, then every row's accuracy capped at ``stopping_max_accuracy`` (default 0.92),
    combined with the fitted prior. Gold tasks are not clamped there: their stopping
    posterior is what their answers alone say.
    The heavier smoothing pulls workers with few answers towards a moderately good worker
    instead of a perfect one. The fitted posterior is overconfident (mean 0.96-0.999 on gold
    where accuracy is 0.64-0.94); the stopping posterior is less so where dynamic overlap
    decides, at three answers per item: mean confidence on gold 0.992 -> 0.879 for
    weather_sentiment_amt (accuracy 0.780), 0.949 -> 0.881 for bluebirds (0.657), 0.955 ->
    0.905 for dog (0.787). It is still above accuracy, so a ``confidence_target`` is a
    ranking threshold more than a promised accuracy. The cap is for items, not workers:
    however good a worker is on the whole, some items are ambiguous, and on those good
    workers disagree (positive_sentiment has items its 20 workers split 10-10). Without it,
    a few answers from workers fitted as nearly perfect stop such an item: replaying
    positive_sentiment, the 9 labels lost against buying every answer had stopped after 3-7
    answers at 0.990-1.000, one of them on a 4-3 split. Capped at 0.92, three unanimous
    answers give at most 0.9993 on two labels (before the prior), and a 4-3 split between
    equally good workers at most 0.92. At three answers per item the cap leaves the three
    means above unchanged and moves positive_sentiment's from 0.888 to 0.870 (accuracy
    0.855). Labels come from the ordinary posterior.

    Args:
        answers: Long table with columns ``task``, ``worker`` and ``label``, one row per
            answer. Labels are matched to ``labels`` as ``str(value)``.
        labels: The project's label set; it is the class set, in this order.
        gold: Known labels by task id. Gold tasks without answers are validated and
            otherwise ignored.
        params: :class:`DawidSkeneParams` or a mapping of its field names.
        warm_start: Parameters of a previous fit (``DawidSkeneFit.state()``).

    Returns:
        DawidSkeneFit: posteriors, confusion matrices, prior and diagnostics.

    Raises:
        NotEnoughAnswersError: ``answers`` is empty.
        InvalidAnswersError: a column is missing or holds nulls.
        UnknownLabelError: an answer or gold label is not in ``labels``.
        InvalidParameterError: bad ``labels``, ``params`` or ``warm_start``.
    """
    label_set = check_labels(labels)
    if not isinstance(params, DawidSkeneParams):
        params = DawidSkeneParams.from_mapping(params)
    if warm_start is not None and not isinstance(warm_start, DawidSkeneState):
        raise InvalidParameterError("warm_start must be a DawidSkeneState")
    enc = encode_answers(answers, label_set)
    gold_task, gold_label = encode_gold(gold, enc.tasks, label_set)
    model = _Model(enc, gold_task, gold_label)

    confusion_pc = _pseudo_count_matrix(
        model.k, params.confusion_diagonal_pseudo_count, params.confusion_off_diagonal_pseudo_count
    )
    prior_pc = max(params.prior_pseudo_count, _MIN_PSEUDO_COUNT)
    confusion, priors, warm_started = _initial_parameters(
        model, enc, label_set, confusion_pc, prior_pc, warm_start
    )

    ll_history: list[float] = []
    lp_history: list[float] = []
    converged = False
    iterations = 0
    posteriors = np.empty((model.k, enc.n_tasks))
    while True:
        log_likelihood, counts, class_totals = model.e_step(confusion, priors, posteriors)
        ll_history.append(log_likelihood)
        lp_history.append(log_likelihood + _log_prior(confusion, priors, confusion_pc, prior_pc))
        if len(lp_history) > 1:
            old, new = lp_history[-2], lp_history[-1]
            if abs(new - old) <= params.tol * abs(old):
                converged = True
                break
        if iterations >= params.max_iter:
            break
        confusion, priors = _m_step(counts, class_totals, confusion_pc, prior_pc)
        iterations += 1

    # Stopping posterior from heavily smoothed matrices (see the docstring); ``counts`` are
    # the expected counts under the final posteriors.
    stopping_pseudo_counts = _pseudo_count_matrix(
        model.k, params.stopping_diagonal_pseudo_count, params.stopping_off_diagonal_pseudo_count
    )
    stopping_confusion = _cap_accuracy(
        _normalise(counts + stopping_pseudo_counts), params.stopping_max_accuracy
    )
    stopping = np.empty_like(posteriors)
    # Gold tasks unclamped: top-ups then treat them like any task (see AggregationResult).
    model.e_step(stopping_confusion, priors, stopping, count=False, clamp=False)

    # The E-step normalises with a float32 sum (see _Model.e_step); renormalise the reported
    # distributions in float64 so they sum to 1 to the last digit.
    posteriors /= posteriors.sum(axis=0)
    stopping /= stopping.sum(axis=0)
    is_gold = np.zeros(enc.n_tasks, dtype=bool)
    is_gold[gold_task] = True
    return DawidSkeneFit(
        labels=label_set,
        tasks=enc.tasks,
        workers=enc.workers,
        posteriors=np.ascontiguousarray(posteriors.T),
        stopping_posteriors=np.ascontiguousarray(stopping.T),
        predicted=np.asarray(posteriors.argmax(axis=0), dtype=np.intp),
        is_gold=is_gold,
        priors=priors,
        confusion=confusion,
        skills=np.einsum("k,wkk->w", priors, confusion),
        log_likelihood_history=ll_history,
        log_posterior_history=lp_history,
        iterations=iterations,
        converged=converged,
        warm_started=warm_started,
    )
