"""`quorum simulate` end to end on real crowd data sets, read back from its own database.

Each campaign runs through the CLI (click's CliRunner) on a SQLite file in tmp_path, so the
test can open the database afterwards and check what the simulation claims: that its
accuracy is what an offline aggregation of the accepted answers gives, and that the
simulated workforce only ever replayed answers the data set really holds.

Simulations commit as they go, so each gets a database of their own rather than the
session's shared test database: a SQLite file, and for one short campaign a fresh
PostgreSQL database. The longer campaigns run on SQLite only (the service code they
exercise is tested on both backends elsewhere), which keeps this file under a minute.
"""

import csv
import json
import os
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from orchestrator.cli import main
from orchestrator.db import make_engine
from orchestrator.models import Answer, Item, Project, Worker
from quality.aggregation import aggregate
from tests.conftest import fresh_postgres

# The shared data sets, as bench/_common.py finds them.
DATASETS = Path(
    os.environ.get("QUORUM_DATASETS")
    or Path(__file__).resolve().parents[2] / ".." / "shared" / "datasets"
)
SUMMARY_KEYS = {
    "items",
    "answers_used",
    "accuracy",
    "cost_total",
    "cost_per_label",
    "workers",
    "blocked_workers",
    "seconds",
}

pytestmark = pytest.mark.skipif(
    not (DATASETS / "bluebirds" / "answers.csv").is_file(),
    reason="the shared data sets are not next to the repository",
)
SQLITE = pytest.mark.backend("sqlite")


def simulate(
    tmp_path: Path, dataset: str, *options: str, tag: str = "", database: str | None = None
) -> tuple[dict, str]:
    """Run `quorum simulate` on a data set; return its summary and its database URL."""
    database = database or f"sqlite:///{tmp_path / f'{dataset}{tag}.db'}"
    folder = DATASETS / dataset
    result = CliRunner().invoke(
        main,
        [
            "simulate",
            "--answers",
            str(folder / "answers.csv"),
            "--gold",
            str(folder / "gold.csv"),
            "--database",
            database,
            *options,
        ],
    )
    assert result.exit_code == 0, result.output
    last = result.stdout.strip().splitlines()[-1]
    summary = json.loads(last)
    assert isinstance(summary, dict)
    return summary, database


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def stored_answers(database: str, project_id: int) -> pd.DataFrame:
    """Every answer the campaign bought, in the order it was given."""
    engine = make_engine(database)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(
                    Answer.id, Item.external_id, Worker.external_id, Answer.label, Answer.status
                )
                .join(Item, Item.id == Answer.item_id)
                .join(Worker, Worker.id == Answer.worker_id)
                .where(Answer.project_id == project_id)
                .order_by(Answer.id)
            ).all()
    finally:
        engine.dispose()
    return pd.DataFrame(rows, columns=["id", "task", "worker", "label", "status"])


def stored_project(database: str, project_id: int) -> tuple[Any, dict[str, str], dict[str, str]]:
    """The campaign's project, its gold labels (the honeypots) and its items' stored labels."""
    engine = make_engine(database)
    try:
        with engine.connect() as conn:
            project = conn.execute(sa.select(Project).where(Project.id == project_id)).one()
            items = conn.execute(
                sa.select(Item.external_id, Item.gold_label, Item.label).where(
                    Item.project_id == project_id
                )
            ).all()
    finally:
        engine.dispose()
    honeypots = {task: gold for task, gold, _ in items if gold is not None}
    return project, honeypots, {task: label for task, _, label in items}


@SQLITE
@pytest.mark.parametrize(
    ("dataset", "options"),
    [
        # The whole default policy (dynamic overlap, no cap) on the smallest data set; the
        # others run with ordinary options that keep this file quick.
        ("bluebirds", ()),
        ("weather_sentiment_amt", ("--max-overlap", "4")),
        ("rte", ("--overlap", "1", "--max-overlap", "2")),
    ],
)
def test_simulate_reports_what_its_database_holds(tmp_path, dataset, options):
    summary, database = simulate(tmp_path, dataset, *options)
    check_campaign(summary, database, dataset)


@pytest.mark.backend("postgresql")
def test_simulate_runs_on_postgresql(tmp_path):
    with fresh_postgres() as url:
        summary, database = simulate(tmp_path, "bluebirds", "--max-overlap", "3", database=url)
        check_campaign(summary, database, "bluebirds")


def check_campaign(summary: dict, database: str, dataset: str) -> None:
    """Check a finished campaign's summary against its database and the data set."""
    assert SUMMARY_KEYS <= set(summary)
    recorded: dict[str, Counter] = defaultdict(Counter)
    for row in read_csv(DATASETS / dataset / "answers.csv"):
        recorded[row["task"]][(row["worker"], row["label"])] += 1
    assert summary["items"] == len(recorded)
    assert summary["answers_used"] > 0 and summary["workers"] > 0
    assert summary["seconds"] > 0
    # Reward 0.01 an answer; excluded answers of blocked workers are refunded on the ledger.
    cost = Decimal(summary["cost_total"])
    assert 0 < cost <= Decimal("0.01") * summary["answers_used"]
    labelled = summary["items"] - summary["honeypots"]
    assert abs(Decimal(summary["cost_per_label"]) * labelled - cost) < Decimal("0.01")

    project, honeypots, stored_labels = stored_project(database, summary["project_id"])
    answers = stored_answers(database, summary["project_id"])
    assert len(answers) == summary["answers_used"]

    gold = {row["task"]: row["label"] for row in read_csv(DATASETS / dataset / "gold.csv")}
    assert set(honeypots) < set(gold)
    assert all(honeypots[task] == gold[task] for task in honeypots)
    scored = [task for task in gold if task not in honeypots]
    assert len(honeypots) == summary["honeypots"] == round(0.1 * len(gold))
    assert len(scored) == summary["scored_items"]
    # The reported accuracy is that of the labels the service stored.
    correct = sum(1 for task in scored if stored_labels[task] == gold[task])
    assert summary["correct"] == correct
    assert summary["accuracy"] == round(correct / len(scored), 4)

    # And those labels are exactly what an offline aggregation of the accepted answers
    # gives, with the honeypots as gold: the campaign's last aggregation is a cold fit
    # (the warm-started ones before it may sit in another local optimum).
    accepted = answers[answers["status"] == "accepted"]
    result = aggregate(
        accepted[["task", "worker", "label"]],
        labels=project.labels,
        method=project.aggregation_method,
        gold=honeypots,
        params=project.aggregation_params or None,
    )
    assert result.labels_ == {task: stored_labels[task] for task in result.labels_}
    assert sum(1 for task in scored if result.labels_.get(task) == gold[task]) == correct

    # The replay only ever gave answers the data set holds, each at most as often as
    # recorded (excluded answers of blocked workers were bought too, so count them all),
    # so no item got more answers than the data set has; and a worker answers an item once.
    given = Counter(zip(answers["task"], answers["worker"], answers["label"], strict=True))
    for (task, worker, label), times in given.items():
        assert times <= recorded[task][(worker, label)], (task, worker, label)
    per_item = answers.groupby("task").size()
    assert all(count <= recorded[task].total() for task, count in per_item.items())
    assert not answers.duplicated(["task", "worker"]).any()


def replay_order(tmp_path: Path, seed: int, tag: str) -> list[tuple[str, str]]:
    summary, database = simulate(
        tmp_path, "bluebirds", "--max-overlap", "3", "--seed", str(seed), tag=tag
    )
    answers = stored_answers(database, summary["project_id"])
    return list(zip(answers["task"], answers["worker"], strict=True))


@SQLITE
def test_seed_changes_the_replay_order(tmp_path):
    first = replay_order(tmp_path, 0, "a")
    again = replay_order(tmp_path, 0, "b")
    other = replay_order(tmp_path, 1, "c")
    assert first == again  # the same seed replays the same campaign
    assert first != other
    # bluebirds lists its answers worker by worker: replayed in file order, every item's
    # first answer would come from the same worker.
    for order in (first, other):
        first_worker: dict[str, str] = {}
        for task, worker in order:
            first_worker.setdefault(task, worker)
        assert len(set(first_worker.values())) > 10
    assert {task for task, _ in first} == {task for task, _ in other}
