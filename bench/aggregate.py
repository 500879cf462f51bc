"""Benchmark: aggregation accuracy on the shared data sets, and Dawid-Skene speed at 1M answers.

Per data set (one JSON line each): accuracy on the gold labels and seconds of majority vote,
crowd-kit's DawidSkene (its defaults, passed explicitly), our Dawid-Skene through
``quality.aggregation.aggregate`` (defaults, no gold), and ours with a seeded quarter of the
gold given as known, scored on the other three quarters (``accuracy_ours_no_gold_same_tasks``
scores the no-gold run on those same tasks, for a like-for-like comparison). The baseline
keys (``baseline_*``, ``ratio``) refer to crowd-kit's DawidSkene.

Then a synthetic crowd of 1,000,000 answers (4 classes, overlap 3, Zipf-like worker activity,
per-worker confusion leaning to neighbouring classes, 10% spammers; rows listed task by task
in id order, as in an export sorted by task, which lets ours skip hashing the task ids),
once with string ids and once with integer ids, and once more with the string-id rows
shuffled (``*_string_ids_shuffled``: the same rows in random order, so ours hashes them):
50 EM iterations of ours (``fit_dawid_skene``, factorising the ids included) against
crowd-kit ``DawidSkene(n_iter=50, tol=0)``. Each side runs in a fresh Python process that
first loads the data and imports everything, then measures the fit alone: wall-clock
seconds, and peak resident memory above the process's resident size just before the fit
(Linux: the peak counter is reset through /proc/self/clear_refs; elsewhere the ru_maxrss
growth, which can only under-count). Each side runs ``--repeats`` times (default 3), each
in a fresh process; the line keeps each side's median time and highest peak.
``seconds_aggregate`` adds what the service pays on top: ``aggregate()`` turning the arrays
into plain per-task dicts.

    .venv/bin/python bench/aggregate.py [--quick] [--synthetic-only]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench._common import dataset_names, load_dataset  # noqa: E402

QUICK_DATASETS = ["bluebirds", "dog", "rte", "weather_sentiment_amt"]


def synthetic_crowd(
    n_answers: int, *, string_ids: bool, n_classes: int = 4, overlap: int = 3, seed: int = 0
) -> tuple[pd.DataFrame, np.ndarray]:
    """Return simulated answers (``task``, ``worker``, ``label``) and each task's true class."""
    rng = np.random.default_rng(seed)
    n_tasks = -(-n_answers // overlap)
    n_workers = max(50, n_answers // 500)
    prior = np.linspace(2.0, 1.0, n_classes)
    truth = rng.choice(n_classes, size=n_tasks, p=prior / prior.sum())
    # Accuracy ~ Beta(7, 2) (mean 0.78); errors go to nearby classes more often (graded
    # scales are the usual case); 10% spammers answer uniformly at random.
    accuracy = rng.beta(7.0, 2.0, size=n_workers)
    distance = np.abs(np.subtract.outer(np.arange(n_classes), np.arange(n_classes)))
    off = np.where(distance == 0, 0.0, 1.0 / np.maximum(distance, 1))
    off /= off.sum(axis=1, keepdims=True)
    confusion = accuracy[:, None, None] * np.eye(n_classes) + (1 - accuracy)[:, None, None] * off
    confusion[rng.random(n_workers) < 0.1] = 1.0 / n_classes
    # Zipf-like activity: a few workers give most answers, as on real platforms.
    activity = 1.0 / np.arange(1, n_workers + 1) ** 0.8
    activity /= activity.sum()
    workers = rng.choice(n_workers, size=(n_tasks, overlap), p=activity)
    for _ in range(100):  # redraw repeats so each task has distinct workers
        repeated = np.zeros(n_tasks, dtype=bool)
        for i in range(overlap):
            for j in range(i):
                repeated |= workers[:, i] == workers[:, j]
        if not repeated.any():
            break
        workers[repeated, -1] = rng.choice(n_workers, size=int(repeated.sum()), p=activity)
        workers[repeated] = rng.permuted(workers[repeated], axis=1)
    task = np.repeat(np.arange(n_tasks), overlap)[:n_answers]
    worker = workers.ravel()[:n_answers]
    cumulative = np.cumsum(confusion[worker, truth[task]], axis=1)
    label = (rng.random(n_answers)[:, None] > cumulative).sum(axis=1).clip(max=n_classes - 1)
    if not string_ids:
        return pd.DataFrame({"task": task, "worker": worker, "label": label}), truth
    names = np.array([f"class_{k}" for k in range(n_classes)], dtype=object)
    frame = pd.DataFrame(
        {
            "task": pd.Series(task).map("https://example.com/items/{:08d}".format),
            "worker": pd.Series(worker).map("A{:013X}".format),
            "label": names[label],
        }
    ).astype(str)
    return frame, truth


def _rss_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise OSError("no VmRSS")


def _peak_kb() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise OSError("no VmHWM")


def _worker(side: str, path: str) -> None:
    """Run one side in this fresh process and print its figures as JSON."""
    answers = pd.read_pickle(path)
    truth = np.load(path + ".truth.npy")
    labels = sorted({str(label) for label in pd.unique(answers["label"])})
    from crowdkit.aggregation import DawidSkene

    from quality._crowdkit import quiet_crowdkit
    from quality.aggregation import aggregate
    from quality.dawid_skene import fit_dawid_skene

    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # reset the peak counter (VmHWM) to the current size
        before, method = _rss_kb(), "subprocess_vmhwm_reset"
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        method = "subprocess_ru_maxrss_delta"
    started = time.perf_counter()
    if side == "ours":
        fit = fit_dawid_skene(answers, labels=labels, params={"max_iter": 50, "tol": 0.0})
        predicted = pd.Series(fit.predicted, index=fit.tasks)
        iterations = fit.iterations
    elif side == "ours_aggregate":
        result = aggregate(answers, labels=labels, params={"max_iter": 50, "tol": 0.0})
        predicted = pd.Series(result.labels_).map({label: k for k, label in enumerate(labels)})
        iterations = result.diagnostics.iterations
    else:
        with quiet_crowdkit():
            model = DawidSkene(n_iter=50, tol=0.0, initial_error_strategy=None).fit(answers)
        assert model.labels_ is not None
        codes = {label: k for k, label in enumerate(labels)}
        predicted = model.labels_.astype(str).map(codes)
        iterations = len(model.loss_history_)
    seconds = time.perf_counter() - started
    if method == "subprocess_vmhwm_reset":
        peak_mb = (_peak_kb() - before) / 1024
    else:
        peak_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    # Task ids are 0..T-1 (int) or encode the position (string); map back to the truth.
    position = (
        predicted.index.str.rsplit("/", n=1).str[-1].astype(int)
        if predicted.index.dtype != np.int64
        else predicted.index
    )
    accuracy = float((predicted.to_numpy() == truth[np.asarray(position)]).mean())
    print(json.dumps({"seconds": seconds, "peak_mb": peak_mb, "iterations": iterations,
                      "accuracy": accuracy, "memory_method": method}))  # fmt: skip


def _run_side(side: str, path: str, repeats: int) -> dict[str, Any]:
    """Run a side `repeats` times, each in a fresh process: the median run, the highest peak."""
    runs = []
    for _ in range(repeats):
        command = [sys.executable, __file__, "--worker", side, path]
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        runs.append(dict(json.loads(done.stdout.strip().splitlines()[-1])))
    median = sorted(runs, key=lambda run: run["seconds"])[len(runs) // 2]
    return {**median, "peak_mb": max(run["peak_mb"] for run in runs)}


def bench_synthetic(n_answers: int, repeats: int) -> None:
    """Print one line per id kind (and string ids shuffled): ours vs crowd-kit, 50 iterations."""
    for string_ids, shuffled in ((True, False), (True, True), (False, False)):
        answers, truth = synthetic_crowd(n_answers, string_ids=string_ids)
        if shuffled:
            answers = answers.sample(frac=1.0, random_state=1).reset_index(drop=True)
        with tempfile.TemporaryDirectory() as folder:
            path = os.path.join(folder, "answers.pickle")
            answers.to_pickle(path)
            np.save(path + ".truth.npy", truth)
            ours = _run_side("ours", path, repeats)
            baseline = _run_side("crowdkit", path, repeats)
            with_dicts = _run_side("ours_aggregate", path, repeats)
        kind = ("string_ids" if string_ids else "int_ids") + ("_shuffled" if shuffled else "")
        size = f"{n_answers // 1_000_000}m" if n_answers >= 1_000_000 else f"{n_answers // 1000}k"
        line = {
            "bench": "aggregate",
            "case": f"synthetic_{size}_{kind}",
            "answers": len(answers),
            "tasks": int(answers["task"].nunique()),
            "workers": int(answers["worker"].nunique()),
            "iterations": ours["iterations"],
            "seconds": round(ours["seconds"], 3),
            "peak_mb": round(ours["peak_mb"], 1),
            "accuracy": round(ours["accuracy"], 4),
            "baseline_iterations": baseline["iterations"],
            "baseline_seconds": round(baseline["seconds"], 3),
            "baseline_peak_mb": round(baseline["peak_mb"], 1),
            "baseline_accuracy": round(baseline["accuracy"], 4),
            "ratio": round(baseline["seconds"] / ours["seconds"], 1),
            "seconds_aggregate": round(with_dicts["seconds"], 3),
            "peak_mb_aggregate": round(with_dicts["peak_mb"], 1),
            "memory_method": ours["memory_method"],
            "repeats": repeats,
        }
        print(json.dumps(line), flush=True)


def _accuracy(labels: dict[Any, str], gold: dict[str, str]) -> float:
    hits = [labels.get(task) == label for task, label in gold.items() if task in labels]
    return round(float(np.mean(hits)), 4)


def bench_dataset(name: str) -> None:
    """Print accuracy and seconds of each method on one shared data set."""
    from crowdkit.aggregation import DawidSkene

    from quality._crowdkit import quiet_crowdkit
    from quality.aggregation import aggregate

    answers, gold = load_dataset(name)
    labels = sorted(set(answers["label"]) | set(gold.values()))
    rng = np.random.default_rng(0)
    keys = sorted(gold)
    known_keys = set(rng.choice(keys, size=len(keys) // 4, replace=False).tolist())
    known = {task: gold[task] for task in known_keys}
    scored = {task: label for task, label in gold.items() if task not in known_keys}

    started = time.perf_counter()
    vote = aggregate(answers, labels=labels, method="majority_vote")
    seconds_vote = time.perf_counter() - started

    started = time.perf_counter()
    with quiet_crowdkit():
        reference = DawidSkene(n_iter=100, tol=1e-5, initial_error_strategy=None).fit(answers)
    seconds_reference = time.perf_counter() - started
    assert reference.labels_ is not None
    reference_labels = {task: str(label) for task, label in reference.labels_.items()}

    started = time.perf_counter()
    ours = aggregate(answers, labels=labels)
    seconds_ours = time.perf_counter() - started

    started = time.perf_counter()
    with_gold = aggregate(answers, labels=labels, gold=known)
    seconds_gold = time.perf_counter() - started

    line = {
        "bench": "aggregate",
        "case": name,
        "answers": len(answers),
        "accuracy_majority_vote": _accuracy(vote.labels_, gold),
        "accuracy_crowdkit_ds": _accuracy(reference_labels, gold),
        "accuracy_ours": _accuracy(ours.labels_, gold),
        "accuracy_ours_quarter_gold": _accuracy(with_gold.labels_, scored),
        "accuracy_ours_no_gold_same_tasks": _accuracy(ours.labels_, scored),
        "seconds_majority_vote": round(seconds_vote, 3),
        "seconds_crowdkit_ds": round(seconds_reference, 3),
        "seconds_ours": round(seconds_ours, 3),
        "seconds_ours_quarter_gold": round(seconds_gold, 3),
        "iterations_crowdkit_ds": len(reference.loss_history_),
        "iterations_ours": ours.diagnostics.iterations,
        "accuracy": _accuracy(ours.labels_, gold),
        "seconds": round(seconds_ours, 3),
        "baseline_accuracy": _accuracy(reference_labels, gold),
        "baseline_seconds": round(seconds_reference, 3),
        "ratio": round(seconds_reference / seconds_ours, 1),
    }
    print(json.dumps(line), flush=True)


def main() -> None:
    """Run the benchmark; ``--quick`` uses 100,000 synthetic answers and four small data sets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k answers, four data sets")
    parser.add_argument(
        "--synthetic-only", action="store_true", help="skip the data sets (speed lines only)"
    )
    parser.add_argument(
        "--repeats",
        type=int,
        help="fresh-process runs per side of each speed line, median kept (default 3; quick 1)",
    )
    parser.add_argument("--worker", nargs=2, metavar=("SIDE", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(*args.worker)
        return
    # crowd-kit's pandas deprecation warnings are silenced inside quality; nothing else is.
    warnings.simplefilter("default")
    names = [n for n in QUICK_DATASETS if n in dataset_names()] if args.quick else dataset_names()
    for name in [] if args.synthetic_only else names:
        bench_dataset(name)
    repeats = args.repeats or (1 if args.quick else 3)
    bench_synthetic(100_000 if args.quick else 1_000_000, repeats)


if __name__ == "__main__":
    main()
