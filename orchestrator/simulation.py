"""`quorum simulate`: a whole campaign through the real service code, on recorded crowd data.

The simulated workforce is an internal pool whose workers are the data set's real
workers. Each time the pool hands out a slot of an item, the answer is that item's
next unused recorded answer (the recorded lists are shuffled with `seed`, since
several files are grouped by worker), given by the worker who really gave it.
Part of the gold items are honeypots: imported as gold, so they are mixed into
each worker's tasks at the project's gold rate, scored at once, and can get
workers blocked. The other gold items only score the result.

Everything else is the service itself: project creation, item import, dispatch,
leases, gold scoring, blocking and exclusion, aggregation and dynamic overlap
(rounds of: answer every open slot, aggregate, top up the unsure items).

A run is deterministic for a given seed: the shuffle, the honeypots and the honeypot each
gold turn serves all come from it. Speed is the service's: about 100 answers a second on
SQLite, nearly all of it in the pool's hand-out and answer paths (`pool.next_task`,
`pool.submit_answer`), which the replay calls once per answer like any worker would.
"""

import csv
import random
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import migrate
from orchestrator.db import make_engine, make_sessionmaker, unit_of_work
from orchestrator.models import Answer, Assignment, Item, LedgerEntry, Project, WorkerProject
from orchestrator.services import aggregation, dispatch, items, pool, projects, workforces
from orchestrator.services.item_formats import RawRows
from orchestrator.services.keys import ensure_internal_worker

WORKFORCE = "simulated-pool"
ANSWERS_PER_TRANSACTION = 500
LEASE_SECONDS = 3600


@dataclass(frozen=True)
class SimulationOptions:
    """Campaign settings; unset ones take the project defaults."""

    overlap: int = 3
    max_overlap: int | None = None
    confidence_target: float | None = None
    gold_rate: float | None = None
    honeypots: float = 0.1
    method: str | None = None
    reward: Decimal = Decimal("0.01")
    seed: int = 0
    database_url: str | None = None


@dataclass
class Recorded:
    """The data set: each task's recorded answers (shuffled) and the gold labels."""

    answers: dict[str, list[tuple[str, str]]]
    gold: dict[str, str]
    labels: list[str]
    honeypots: set[str] = field(default_factory=set)


def load_dataset(answers_csv: Path, gold_csv: Path, *, seed: int, honeypots: float) -> Recorded:
    """Read `task,worker,label` answers and `task,label` gold; pick the honeypots."""
    rng = random.Random(seed)
    answers: dict[str, list[tuple[str, str]]] = defaultdict(list)
    with open(answers_csv, newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            answers[row["task"]].append((row["worker"], row["label"]))
    for recorded in answers.values():
        rng.shuffle(recorded)
    with open(gold_csv, newline="", encoding="utf-8") as f:
        gold = {row["task"]: row["label"] for row in csv.DictReader(f) if row["task"] in answers}
    labels = sorted({label for rows in answers.values() for _, label in rows} | set(gold.values()))
    chosen = set(rng.sample(sorted(gold), round(honeypots * len(gold))))
    return Recorded(dict(answers), gold, labels, chosen)


class Replay:
    """Hands each open slot to the worker whose recorded answer comes next for its item."""

    def __init__(
        self,
        recorded: Recorded,
        item_ids: dict[str, int],
        worker_ids: dict[str, int],
        *,
        seed: int = 0,
    ):
        self.recorded = recorded
        self.task_of = {item_id: task for task, item_id in item_ids.items()}
        self.worker_ids = worker_ids
        self.next_index: dict[int, int] = defaultdict(int)
        self.answered: set[tuple[int, int]] = set()
        self.blocked: set[int] = set()
        # Items whose recorded answers are used up: the data set cannot give them more.
        self.exhausted: set[int] = set()
        # Each worker's recorded answers on honeypots, to replay on their gold turns.
        self.honeypot_answers: dict[int, dict[int, str]] = defaultdict(dict)
        # Which honeypot a gold turn serves is drawn here, from the seed, and handed to the
        # pool as the only choice: the pool's own pick (SQL random()) would make two runs
        # with the same seed differ.
        self.rng = random.Random(seed + 1)
        for task in sorted(recorded.honeypots):
            for worker, label in recorded.answers[task]:
                self.honeypot_answers[worker_ids[worker]].setdefault(item_ids[task], label)

    def next_answer(self, item_id: int) -> tuple[int, str] | None:
        """Return (worker id, label) of the item's next usable recorded answer, if any."""
        rows = self.recorded.answers[self.task_of[item_id]]
        while self.next_index[item_id] < len(rows):
            worker, label = rows[self.next_index[item_id]]
            self.next_index[item_id] += 1
            worker_id = self.worker_ids[worker]
            # A worker answers an item once; blocked workers get no more work.
            if worker_id not in self.blocked and (item_id, worker_id) not in self.answered:
                return worker_id, label
        return None

    def label_for(self, worker_id: int, item_id: int) -> str:
        """The recorded label of a worker on a gold item (their gold turn)."""
        return self.honeypot_answers[worker_id].pop(item_id)

    def gold_choices(self, worker_id: int) -> list[int]:
        """One honeypot (seeded draw) the worker has a recorded answer for and has not answered."""
        choices = list(self.honeypot_answers[worker_id])
        return [self.rng.choice(choices)] if choices else []


def run_simulation(
    answers_csv: Path,
    gold_csv: Path,
    options: SimulationOptions,
    progress: Callable[[str, int, int], None] | None = None,
) -> dict[str, Any]:
    """Run the campaign and return its summary (the JSON `quorum simulate` prints last)."""
    started = time.perf_counter()
    recorded = load_dataset(answers_csv, gold_csv, seed=options.seed, honeypots=options.honeypots)
    with _database(options.database_url) as url:
        engine = make_engine(url)
        try:
            summary = _campaign(make_sessionmaker(engine), recorded, options, progress or _quiet)
        finally:
            engine.dispose()
    summary["seconds"] = round(time.perf_counter() - started, 2)
    return summary


def _quiet(stage: str, done: int, total: int) -> None:
    """Progress callback that reports nothing."""


@dataclass
class _Context:
    project_id: int
    workforce_id: int
    item_ids: dict[str, int]
    worker_ids: dict[str, int]


def _campaign(
    sessions: sessionmaker[Session],
    recorded: Recorded,
    options: SimulationOptions,
    progress: Callable[[str, int, int], None],
) -> dict[str, Any]:
    with unit_of_work(sessions) as session:
        context = _set_up(session, recorded, options)
    replay = Replay(recorded, context.item_ids, context.worker_ids, seed=options.seed)
    rounds = 0
    while True:
        rounds += 1
        _answer_open_slots(sessions, context, replay, progress, rounds)
        with unit_of_work(sessions) as session:
            aggregation.aggregate_project(session, context.project_id)
            aggregation.top_up(session, context.project_id)
            if not _close_exhausted(session, context.project_id, replay.exhausted):
                break
    with unit_of_work(sessions) as session:
        # The final labels come from a cold fit, so they are exactly what an offline
        # aggregation of the same answers gives (a warm start may sit in another optimum).
        aggregation.aggregate_project(session, context.project_id, force=True, cold=True)
        return _summary(session, context, recorded, options, rounds)


def _close_exhausted(session: Session, project_id: int, exhausted: set[int]) -> bool:
    """Cancel open slots of items the data set cannot answer; return whether others remain."""
    open_items = set(
        session.scalars(
            sa.select(Assignment.item_id).where(
                Assignment.project_id == project_id, Assignment.status == "open"
            )
        )
    )
    if open_items & exhausted:
        session.execute(
            sa.update(Assignment)
            .where(
                Assignment.project_id == project_id,
                Assignment.status == "open",
                Assignment.item_id.in_(open_items & exhausted),
            )
            .values(status="cancelled")
        )
    return bool(open_items - exhausted)


def _set_up(session: Session, recorded: Recorded, options: SimulationOptions) -> _Context:
    settings: dict[str, Any] = {
        "name": "simulation",
        "labels": recorded.labels,
        "overlap": options.overlap,
        "max_overlap": options.max_overlap,
        "reward": options.reward,
        "lease_seconds": LEASE_SECONDS,
    }
    for name in ("confidence_target", "gold_rate"):
        if getattr(options, name) is not None:
            settings[name] = getattr(options, name)
    if options.method is not None:
        settings["aggregation_method"] = options.method
    project = projects.create_project(session, **settings)
    items.import_items(session, project.id, _item_rows(recorded), chunk_size=5000)
    workforce = workforces.create_workforce(session, name=WORKFORCE, kind="internal")
    item_ids = dict(
        session.execute(
            sa.select(Item.external_id, Item.id).where(Item.project_id == project.id)
        ).all()
    )
    workers = sorted({worker for rows in recorded.answers.values() for worker, _ in rows})
    worker_ids = {w: ensure_internal_worker(session, w, WORKFORCE).id for w in workers}
    dispatch.dispatch(session, project.id, workforce_id=workforce.id, seed=options.seed)
    return _Context(project.id, workforce.id, item_ids, worker_ids)


def _item_rows(recorded: Recorded) -> RawRows:
    for line, task in enumerate(sorted(recorded.answers), 1):
        gold = recorded.gold[task] if task in recorded.honeypots else None
        yield line, {"external_id": task, "data": {"task": task}, "gold_label": gold}


def _open_slots(sessions: sessionmaker[Session], project_id: int) -> list[tuple[int, int]]:
    with unit_of_work(sessions) as session:
        return [
            (row.id, row.item_id)
            for row in session.execute(
                sa.select(Assignment.id, Assignment.item_id)
                .where(Assignment.project_id == project_id, Assignment.status == "open")
                .order_by(Assignment.id)
            )
        ]


def _answer_open_slots(
    sessions: sessionmaker[Session],
    context: _Context,
    replay: Replay,
    progress: Callable[[str, int, int], None],
    round_no: int,
) -> None:
    # Every slot ends answered or closed; exclusions reopen slots, so repeat until none is open.
    while slots := _open_slots(sessions, context.project_id):
        done = 0
        for chunk in _chunks(slots, ANSWERS_PER_TRANSACTION):
            with unit_of_work(sessions) as session:
                for slot_id, item_id in chunk:
                    _fill_slot(session, context, replay, slot_id, item_id)
            done += len(chunk)
            progress(f"round {round_no}", done, len(slots))


def _fill_slot(
    session: Session, context: _Context, replay: Replay, slot_id: int, item_id: int
) -> None:
    """Answer one open slot with the item's next recorded answer, or close it if none is left."""
    while True:
        status = session.scalar(sa.select(Assignment.status).where(Assignment.id == slot_id))
        if status != "open":
            return
        chosen = replay.next_answer(item_id)
        if chosen is None:
            # The data set has no more answers for this item: it cannot get more.
            replay.exhausted.add(item_id)
            session.execute(
                sa.update(Assignment).where(Assignment.id == slot_id).values(status="cancelled")
            )
            return
        worker_id, label = chosen
        lease = pool.next_task(
            session,
            worker_id=worker_id,
            project_id=context.project_id,
            default_lease_seconds=LEASE_SECONDS,
            item_id=item_id,
            gold_item_ids=replay.gold_choices(worker_id),
        )
        if lease is None:
            continue
        if lease.item_id != item_id:  # the worker's gold turn: replay their honeypot answer
            _answer(session, replay, worker_id, lease, replay.label_for(worker_id, lease.item_id))
            replay.next_index[item_id] -= 1  # the same recorded answer fills the slot next
            continue
        _answer(session, replay, worker_id, lease, label)


def _answer(
    session: Session, replay: Replay, worker_id: int, lease: pool.Lease, label: str
) -> None:
    accepted = pool.submit_answer(session, worker_id=worker_id, token=lease.token, label=label)
    replay.answered.add((lease.item_id, worker_id))
    if accepted.blocked_worker:
        replay.blocked.add(worker_id)


def _chunks(values: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _summary(
    session: Session, context: _Context, recorded: Recorded, options: SimulationOptions, rounds: int
) -> dict[str, Any]:
    answers_used = (
        session.scalar(sa.select(sa.func.count()).where(Answer.project_id == context.project_id))
        or 0
    )
    labels = dict(
        session.execute(
            sa.select(Item.external_id, Item.label).where(Item.project_id == context.project_id)
        ).all()
    )
    scored = [task for task in recorded.gold if task not in recorded.honeypots]
    correct = sum(1 for task in scored if labels.get(task) == recorded.gold[task])
    labelled = sum(1 for task, label in labels.items() if label and task not in recorded.honeypots)
    cost = _cost_total(session, context.project_id, answers_used, options.reward)
    blocked = (
        session.scalar(
            sa.select(sa.func.count()).where(
                WorkerProject.project_id == context.project_id, WorkerProject.status == "blocked"
            )
        )
        or 0
    )
    workers = (
        session.scalar(
            sa.select(sa.func.count()).where(WorkerProject.project_id == context.project_id)
        )
        or 0
    )
    project = session.get(Project, context.project_id)
    assert project is not None
    return {
        "items": len(recorded.answers),
        "recorded_answers": sum(len(rows) for rows in recorded.answers.values()),
        "answers_used": answers_used,
        "honeypots": len(recorded.honeypots),
        "scored_items": len(scored),
        "correct": correct,
        "accuracy": round(correct / len(scored), 4) if scored else None,
        "cost_total": str(cost),
        "cost_per_label": str((cost / labelled).quantize(Decimal("0.000001")))
        if labelled
        else None,
        "workers": workers,
        "blocked_workers": blocked,
        "rounds": rounds,
        "project_id": context.project_id,
        "seed": options.seed,
        # The settings the campaign ran with: the options given, the project defaults for the rest.
        "policy": {
            "overlap": project.overlap,
            "max_overlap": project.max_overlap,
            "confidence_target": project.confidence_target,
            "gold_rate": project.gold_rate,
            "gold_accuracy_threshold": project.gold_accuracy_threshold,
            "gold_min_answers": project.gold_min_answers,
            "exclude_blocked_answers": project.exclude_blocked_answers,
            "aggregation_method": project.aggregation_method,
            "aggregation_params": project.aggregation_params,
            "honeypots": options.honeypots,
        },
    }


def _cost_total(session: Session, project_id: int, answers_used: int, reward: Decimal) -> Decimal:
    """Ledger total when billing recorded the answers; else reward x answers bought."""
    micros = session.scalar(
        sa.select(sa.func.sum(LedgerEntry.amount_micros)).where(
            LedgerEntry.project_id == project_id
        )
    )
    if micros is not None:
        return (Decimal(micros) / 1_000_000).quantize(Decimal("0.01"))
    return (reward * answers_used).quantize(Decimal("0.01"))


class _database:
    """The given database, or a throwaway SQLite file, migrated to the newest schema."""

    def __init__(self, url: str | None) -> None:
        self.url = url
        self.tmp: tempfile.TemporaryDirectory[str] | None = None

    def __enter__(self) -> str:
        if self.url is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="quorum-simulate-")
            self.url = f"sqlite:///{self.tmp.name}/simulation.db"
        migrate.upgrade(self.url)
        return self.url

    def __exit__(self, *exc: object) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()
