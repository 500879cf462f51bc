"""crowd-kit 1.4.2 behind a small wrapper that keeps its known defects away from users.

Importing this module imports crowd-kit (about 3 s: it pulls in scikit-learn, scipy.stats
and nltk), so ``quality.aggregation`` imports it only when a crowd-kit method is asked for.

What the wrapper does about crowd-kit 1.4.2:

* It feeds crowd-kit integer codes (task, worker, label) rather than the caller's ids, so
  crowd-kit's label-type quirks (boolean column renaming, dtype-dependent column order)
  cannot change results, and maps every output back onto the project's label order.
* ``Wawa.predict`` fails with scikit-learn >= 1.6 (``__sklearn_tags__`` in
  ``check_is_fitted``): we call ``fit`` only and run the skill-weighted majority vote
  ``Wawa.predict`` would have run ourselves.
* ``OneCoinDawidSkene``'s class prior can run away to 0 (trec2010: a class nobody can be
  assigned again), so its E-step sees the prior floored at ``prior_floor`` and renormalised.
  (The floor keeps every class reachable; it does not make the one-coin model fit trec2010,
  where it stays far less accurate than majority vote.)
* ``MACE`` indexes its per-worker ``thetas_`` in ``pd.factorize`` order (first appearance)
  but fills them from a ``groupby`` result in sorted order, so unless workers and labels
  first appear in sorted order it gives workers each other's parameters. We hand it codes
  that are in first-appearance order, which makes the two orders agree (trec2010 accuracy
  0.50 with crowd-kit's own handling of the raw ids, 0.61 with ours).
* Every fit emits pandas 3 deprecation warnings (``inplace=``, ``copy=``) from crowd-kit's
  own code; :func:`quiet_crowdkit` ignores exactly those, from crowd-kit modules only.
* crowd-kit raises bare ``ValueError`` on input it dislikes; we raise
  :class:`~quality.errors.AggregationFailedError`.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.special
from crowdkit.aggregation import GLAD, MACE, MajorityVote, OneCoinDawidSkene, Wawa
from numpy.typing import NDArray

from ._encoding import EncodedAnswers
from .errors import AggregationFailedError

# pandas 3 names its deprecations Pandas4Warning; pandas 2 (allowed by our pins) does not
# emit these particular ones, so any harmless category will do there.
_PANDAS_DEPRECATION: type[Warning] = getattr(pd.errors, "Pandas4Warning", DeprecationWarning)


@contextmanager
def quiet_crowdkit() -> Iterator[None]:
    """Ignore the pandas deprecation warnings crowd-kit 1.4.2 emits, and nothing else."""
    with warnings.catch_warnings():
        for message in (
            r"The inplace keyword in \w+\.\w+ is deprecated",
            r"The copy keyword is deprecated",
        ):
            warnings.filterwarnings(
                "ignore", message=message, category=_PANDAS_DEPRECATION, module=r"crowdkit\."
            )
        yield


@dataclass(frozen=True)
class CrowdKitFit:
    """Posteriors over the project's labels and per-worker skills from one crowd-kit model.

    Attributes:
        posteriors: ``(T, K)`` probabilities, row ``t`` for task code ``t``, column ``k`` for
            the project's label ``k`` (labels the model never saw get 0).
        skills: ``(W,)`` skill per worker code (meaning depends on the method).
        iterations: EM/optimisation iterations run, or None where the method has none.
        converged: Whether the method stopped on its tolerance, or None where unknown.
        log_likelihood: Final objective where the method reports a log-likelihood, else None.
    """

    posteriors: NDArray[np.float64]
    skills: NDArray[np.float64]
    iterations: int | None
    converged: bool | None
    log_likelihood: float | None


def _frame(enc: EncodedAnswers) -> tuple[pd.DataFrame, NDArray[np.intp]]:
    """Return the answers as integer codes for crowd-kit, and each label code's project code.

    Every code follows first appearance, the order ``pd.factorize`` gives. That matters:
    crowd-kit's MACE indexes ``thetas_`` by factorize order but fills it from a ``groupby``
    (sorted order), so with any other order it scrambles workers' and labels' rows. Task and
    worker codes already follow first appearance; labels are recoded here.
    """
    label, project_code = pd.factorize(enc.label, sort=False)
    data = pd.DataFrame({"task": enc.task, "worker": enc.worker, "label": label})
    return data, np.asarray(project_code, dtype=np.intp)


def _posteriors(
    probas: pd.DataFrame | None, enc: EncodedAnswers, project_code: NDArray[np.intp]
) -> NDArray[np.float64]:
    """Align crowd-kit's probas (task code x label code) to ``(T, K)`` in project order."""
    if probas is None:
        raise AggregationFailedError("the crowd-kit model produced no probabilities")
    k = len(enc.labels)
    seen = probas.reindex(index=range(enc.n_tasks), columns=range(len(project_code))).fillna(0.0)
    out = np.zeros((enc.n_tasks, k))
    # Labels nobody gave keep probability 0: these models only know the labels they saw.
    out[:, project_code] = seen.to_numpy(dtype=np.float64)
    totals = out.sum(axis=1, keepdims=True)
    # A task the model dropped (none do today) gets an uninformative row, not NaN.
    normalised: NDArray[np.float64] = np.divide(
        out, totals, out=np.full_like(out, 1.0 / k), where=totals > 0
    )
    return normalised


def _skills(
    skills: pd.Series | None, enc: EncodedAnswers, default: float = math.nan
) -> NDArray[np.float64]:
    """Align a crowd-kit skills Series indexed by worker code to ``(W,)``."""
    if skills is None:
        raise AggregationFailedError("the crowd-kit model produced no worker skills")
    return skills.reindex(range(enc.n_workers)).fillna(default).to_numpy(dtype=np.float64)


def _majority_vote(
    data: pd.DataFrame, enc: EncodedAnswers, codes: NDArray[np.intp], params: dict[str, Any]
) -> CrowdKitFit:
    """Plain majority vote; skill = share of a worker's answers equal to the vote."""
    mv = MajorityVote(on_missing_skill="error", default_skill=None).fit(data)
    return CrowdKitFit(
        _posteriors(mv.probas_, enc, codes), _skills(mv.skills_, enc), None, None, None
    )


def _wawa(
    data: pd.DataFrame, enc: EncodedAnswers, codes: NDArray[np.intp], params: dict[str, Any]
) -> CrowdKitFit:
    """Majority vote weighted by each worker's agreement with the plain vote."""
    wawa = Wawa().fit(data)
    # What Wawa.predict_proba does, minus its check_is_fitted call that breaks on sklearn>=1.6.
    weighted = MajorityVote(on_missing_skill="error", default_skill=None)
    weighted.fit(data, skills=wawa.skills_)
    return CrowdKitFit(
        _posteriors(weighted.probas_, enc, codes), _skills(wawa.skills_, enc), None, None, None
    )


def _glad(
    data: pd.DataFrame, enc: EncodedAnswers, codes: NDArray[np.intp], params: dict[str, Any]
) -> CrowdKitFit:
    """GLAD: worker ability and task difficulty; skill = expit(ability)."""
    glad = GLAD(
        silent=True, labels_priors=None, alphas_priors_mean=None, betas_priors_mean=None, **params
    )
    glad.fit(data)
    iterations = len(glad.loss_history_)
    # GLAD's ability alpha is a real number; expit(alpha) is the probability of a correct answer
    # on a task whose difficulty term exp(beta) is 1, which puts it on the same 0-1 scale as
    # the other methods' skills.
    skills = scipy.special.expit(_skills(glad.alphas_, enc, default=0.0))
    return CrowdKitFit(
        _posteriors(glad.probas_, enc, codes),
        skills,
        iterations,
        iterations < params["n_iter"],
        None,
    )


def _mace(
    data: pd.DataFrame, enc: EncodedAnswers, codes: NDArray[np.intp], params: dict[str, Any]
) -> CrowdKitFit:
    """MACE: each worker knows the answer or spams; skill = probability of knowing."""
    mace = MACE(verbose=0, **params)
    mace.fit(data)
    probas = mace.probas_
    # spamming_[w, 1] is the probability that worker w knows and gives the true label (MACE's
    # competence); spamming_[w, 0] that they answer from their spamming strategy instead.
    workers = pd.factorize(data["worker"])[1]
    competence = pd.Series(mace.spamming_[:, 1], index=workers)
    return CrowdKitFit(
        _posteriors(probas, enc, codes), _skills(competence, enc), params["n_iter"], None, None
    )


def _floored_one_coin(prior_floor: float) -> type[OneCoinDawidSkene]:
    """Return a OneCoinDawidSkene whose E-step uses the class prior floored at ``prior_floor``."""

    class FlooredOneCoinDawidSkene(OneCoinDawidSkene):
        @staticmethod
        def _e_step(data: pd.DataFrame, priors: pd.Series, errors: pd.DataFrame) -> pd.DataFrame:
            floored = priors.clip(lower=prior_floor)
            return OneCoinDawidSkene._e_step(data, floored / floored.sum(), errors)

    return FlooredOneCoinDawidSkene


def _one_coin(
    data: pd.DataFrame, enc: EncodedAnswers, codes: NDArray[np.intp], params: dict[str, Any]
) -> CrowdKitFit:
    """One-coin Dawid-Skene with a floored class prior; skill = probability correct."""
    model_class = _floored_one_coin(params["prior_floor"])
    model = model_class(n_iter=params["n_iter"], tol=params["tol"], initial_error_strategy=None)
    model.fit(data)
    iterations = len(model.loss_history_)
    return CrowdKitFit(
        _posteriors(model.probas_, enc, codes),
        _skills(model.skills_, enc),
        iterations,
        iterations < params["n_iter"],
        None,
    )


_RUNNERS: dict[
    str, Callable[[pd.DataFrame, EncodedAnswers, NDArray[np.intp], dict[str, Any]], CrowdKitFit]
] = {
    "majority_vote": _majority_vote,
    "wawa": _wawa,
    "glad": _glad,
    "mace": _mace,
    "one_coin_dawid_skene": _one_coin,
}


def fit_crowdkit(method: str, enc: EncodedAnswers, params: dict[str, Any]) -> CrowdKitFit:
    """Fit one crowd-kit method on encoded answers with fully resolved ``params``."""
    data, codes = _frame(enc)
    if len(codes) == 1:
        # Every answer is the same label: nothing to estimate, and GLAD divides by log(K - 1).
        posteriors = np.zeros((enc.n_tasks, len(enc.labels)))
        posteriors[:, enc.label[0]] = 1.0
        return CrowdKitFit(posteriors, np.ones(enc.n_workers), 0, True, None)
    try:
        with quiet_crowdkit():
            return _RUNNERS[method](data, enc, codes, params)
    except ValueError as exc:
        raise AggregationFailedError(f"{method} failed: {exc}", details={"method": method}) from exc
