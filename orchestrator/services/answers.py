"""Storing accepted answers, scoring gold, and blocking workers who fail it.

Every workforce's answers come through `AnswerIntake` (`accept_answer` is its
one-answer form), so gold scoring, worker records and blocking work the same for
the internal pool, vendors and MTurk. This is a hot path: a flush runs a handful of
Core statements, each covering every queued answer, and no ORM loads.
"""

import functools
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from orchestrator.db import utcnow
from orchestrator.errors import InvalidInputError
from orchestrator.models import Answer, Assignment, Item, Project, Worker, WorkerProject
from orchestrator.models.types import BigId
from orchestrator.services import bulk, ledger
from orchestrator.services.workforces import serving_gold_on_demand
from quality.gold import should_block


@dataclass(frozen=True)
class Slot:
    """The parts of an assignment row that storing an answer needs."""

    id: int
    item_id: int
    project_id: int
    batch_id: int
    workforce_id: int
    is_gold: bool


@dataclass(frozen=True)
class AcceptedAnswer:
    """The stored answer's id and label, and whether it got its worker blocked."""

    answer_id: int
    label: str
    blocked_worker: bool


@dataclass(frozen=True)
class NewAnswer:
    """An answer to store on a slot."""

    slot: Slot
    worker_id: int
    label: str
    gold_label: str | None
    time_spent_ms: int | None = None
    external_id: str | None = None

    @property
    def is_correct(self) -> bool | None:
        """Whether a gold answer matches the gold label; None when it is not scored."""
        if not self.slot.is_gold or self.gold_label is None:
            return None
        return self.label == self.gold_label


@dataclass
class _Tally:
    """A worker's record in a project as acceptance goes on: status and gold counters."""

    status: str
    gold_answers: int
    gold_correct: int


def check_label(labels: list[str], label: object) -> str:
    """Return the label if the project's schema allows it, else raise a 422 naming `label`."""
    if not isinstance(label, str) or label not in labels:
        raise InvalidInputError(
            f"label {label!r} is not one of the project's labels",
            details={"label": [f"must be one of: {', '.join(labels)}"]},
        )
    return label


COUNTERS = ("answers", "gold_answers", "gold_correct", "gold_seen", "tasks_seen")
MAX_TIME_SPENT_MS = 86_400_000
"""The longest time an answer may report having taken (a day), on every intake."""


@functools.cache
def _worker_record_upsert(dialect: str, counters: tuple[str, ...]) -> Any:
    """The counters' upsert, built once per dialect and set of counters; bound by name."""
    table = WorkerProject.__table__
    insert = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}[dialect](table)
    return (
        insert.values(
            worker_id=sa.bindparam("worker_id"),
            project_id=sa.bindparam("project_id"),
            status="active",
            **{name: sa.bindparam(name) if name in counters else 0 for name in COUNTERS},
        )
        .on_conflict_do_update(
            index_elements=["worker_id", "project_id"],
            set_={name: table.c[name] + insert.excluded[name] for name in counters},
        )
        .returning(*table.c)
    )


def upsert_worker_record(
    session: Session, worker_id: int, project_id: int, **increments: int
) -> sa.Row:
    """Add to a worker's counters in a project (creating the record) and return the new row."""
    statement = _worker_record_upsert(session.get_bind().dialect.name, tuple(sorted(increments)))
    params = {"worker_id": worker_id, "project_id": project_id, **increments}
    return session.execute(statement, params).one()


def accept_answer(
    session: Session,
    *,
    slot: Slot,
    worker_id: int,
    label: str,
    gold_label: str | None,
    time_spent_ms: int | None = None,
    external_id: str | None = None,
) -> AcceptedAnswer:
    """Store an answer on a slot, score it if gold, and block the worker if gold says so."""
    intake = AnswerIntake(session)
    intake.add(NewAnswer(slot, worker_id, label, gold_label, time_spent_ms, external_id))
    return intake.finish()[0]


class AnswerIntake:
    """Accept answers in order, storing them with a few multi-row statements per flush.

    `add` applies the rules at once, in Python: it scores gold against the worker's
    record (read and row-locked once per worker, in worker id order, so concurrent
    requests never deadlock) and decides whether the answer gets its worker blocked.
    The answers queue up; `flush` writes the queue: the answers, their slots, the
    items' counts, the worker records and the ledger entries. A block flushes first
    and then runs `block_worker`, so its exclusions, reversals and reopened slots see
    every answer accepted before it, exactly as accepting one by one would.

    The caller decides which answers are allowed (a blocked worker's, a second one on
    an item, a slot already taken); this class only stores them and keeps score.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self._pending: list[NewAnswer] = []
        self._blocked: list[bool] = []
        self._tallies: dict[tuple[int, int], _Tally] = {}
        self._stored: list[AcceptedAnswer] = []

    def lock_workers(self, project_id: int, worker_ids: Iterable[int]) -> dict[int, str]:
        """Read (creating if needed) and lock the workers' records; return their statuses."""
        worker_ids = set(worker_ids)
        wanted = sorted(w for w in worker_ids if (w, project_id) not in self._tallies)
        rows = [
            {"worker_id": worker_id, "project_id": project_id, "status": "active"}
            | dict.fromkeys(COUNTERS, 0)
            for worker_id in wanted
        ]
        if rows:
            table = WorkerProject.__table__
            # A no-op update: it creates missing records and row-locks them all, in id order.
            locked = bulk.insert_rows(
                self.session,
                table,
                rows,
                lambda insert: insert.on_conflict_do_update(
                    index_elements=["worker_id", "project_id"], set_={"answers": table.c.answers}
                ).returning(
                    table.c.worker_id, table.c.status, table.c.gold_answers, table.c.gold_correct
                ),
            )
            for row in locked:
                self._tallies[(row.worker_id, project_id)] = _Tally(
                    row.status, row.gold_answers, row.gold_correct
                )
        return {w: self._tallies[(w, project_id)].status for w in worker_ids}

    def add(self, answer: NewAnswer) -> bool:
        """Accept an answer (stored on the next flush); return whether it blocked its worker."""
        self._pending.append(answer)
        self._blocked.append(False)
        is_correct = answer.is_correct
        if is_correct is None:
            return False
        project_id = answer.slot.project_id
        self.lock_workers(project_id, [answer.worker_id])
        tally = self._tallies[(answer.worker_id, project_id)]
        tally.gold_answers += 1
        tally.gold_correct += int(is_correct)
        if tally.status != "active":
            return False
        project = self.session.get(Project, project_id)
        assert project is not None
        if not should_block(
            tally.gold_answers,
            tally.gold_correct,
            threshold=project.gold_accuracy_threshold,
            min_answers=project.gold_min_answers,
        ):
            return False
        self._blocked[-1] = True
        self.flush()
        accuracy = tally.gold_correct / tally.gold_answers
        block_worker(
            self.session,
            project,
            answer.worker_id,
            reason=f"gold accuracy {accuracy:.0%} below {project.gold_accuracy_threshold:.0%} "
            f"after {tally.gold_answers} gold answers",
        )
        tally.status = "blocked"
        return True

    def flush(self) -> None:
        """Write the queued answers and everything they change."""
        pending, blocked = self._pending, self._blocked
        if not pending:
            return
        self._pending, self._blocked = [], []
        now = utcnow()
        answer_ids = self._insert_answers(pending, now)
        slot_table = Assignment.__table__
        bulk.update_rows(
            self.session,
            slot_table,
            [{"slot": a.slot.id, "worker": a.worker_id} for a in pending],
            types={"slot": BigId, "worker": BigId},
            where=lambda row: slot_table.c.id == row.slot,
            values=lambda row: {"status": "answered", "worker_id": row.worker, "answered_at": now},
        )
        # Billing: the answers' cost goes on the ledger.
        ledger.record_accepted_answers(
            self.session,
            [
                ledger.AcceptedCost(a.slot, answer_id, a.worker_id, a.time_spent_ms)
                for a, answer_id in zip(pending, answer_ids, strict=True)
            ],
            accepted_at=now,
        )
        self._update_worker_records(pending)
        # Last: gold items are shared by every batch, so their row locks are held briefly.
        change_answer_counts(self.session, Counter(a.slot.item_id for a in pending))
        self._stored += [
            AcceptedAnswer(answer_id, a.label, was_blocking)
            for a, answer_id, was_blocking in zip(pending, answer_ids, blocked, strict=True)
        ]

    def finish(self) -> list[AcceptedAnswer]:
        """Flush, and return every accepted answer in the order added."""
        self.flush()
        return self._stored

    def _insert_answers(self, pending: list[NewAnswer], now: datetime) -> list[int]:
        table = Answer.__table__
        rows = [
            {
                "assignment_id": a.slot.id,
                "item_id": a.slot.item_id,
                "project_id": a.slot.project_id,
                "batch_id": a.slot.batch_id,
                "workforce_id": a.slot.workforce_id,
                "worker_id": a.worker_id,
                "label": a.label,
                "status": "accepted",
                "is_gold": a.slot.is_gold,
                "is_correct": a.is_correct,
                "time_spent_ms": a.time_spent_ms,
                "external_id": a.external_id,
                "created_at": now,
            }
            for a in pending
        ]
        stored = bulk.insert_rows(
            self.session,
            table,
            rows,
            lambda insert: insert.returning(table.c.id, table.c.assignment_id),
        )
        ids = {row.assignment_id: row.id for row in stored.all()}
        return [ids[a.slot.id] for a in pending]

    def _update_worker_records(self, pending: list[NewAnswer]) -> None:
        counts: dict[tuple[int, int], Counter[str]] = defaultdict(Counter)
        for a in pending:
            count = counts[(a.worker_id, a.slot.project_id)]
            count["answers"] += 1
            if a.is_correct is not None:
                count["gold_answers"] += 1
                count["gold_correct"] += int(a.is_correct)
        table = WorkerProject.__table__
        bulk.insert_rows(
            self.session,
            table,
            [
                {"worker_id": worker_id, "project_id": project_id, "status": "active"}
                | {name: counts[(worker_id, project_id)][name] for name in COUNTERS}
                for worker_id, project_id in sorted(counts)
            ],
            lambda insert: insert.on_conflict_do_update(
                index_elements=["worker_id", "project_id"],
                set_={name: table.c[name] + insert.excluded[name] for name in COUNTERS[:3]},
            ),
        )
        gold: Counter[int] = Counter()
        correct: Counter[int] = Counter()
        for (worker_id, _), count in counts.items():
            if count["gold_answers"]:
                gold[worker_id] += count["gold_answers"]
                correct[worker_id] += count["gold_correct"]
        if not gold:
            return
        worker = Worker.__table__
        bulk.update_rows(
            self.session,
            worker,
            [
                {"worker": worker_id, "scored": gold[worker_id], "right": correct[worker_id]}
                for worker_id in sorted(gold)
            ],
            types={"worker": BigId, "scored": sa.Integer(), "right": sa.Integer()},
            where=lambda row: worker.c.id == row.worker,
            values=lambda row: {
                "gold_answers": worker.c.gold_answers + row.scored,
                "gold_correct": worker.c.gold_correct + row.right,
            },
        )


def block_worker(session: Session, project: Project, worker_id: int, *, reason: str) -> None:
    """Block a worker in a project: no more work, leases withdrawn, answers maybe excluded."""
    session.execute(
        sa.update(WorkerProject)
        .where(WorkerProject.worker_id == worker_id, WorkerProject.project_id == project.id)
        .values(status="blocked", blocked_at=utcnow(), block_reason=reason)
        .execution_options(synchronize_session=False)
    )
    live_leases = sa.and_(
        Assignment.project_id == project.id,
        Assignment.worker_id == worker_id,
        Assignment.status == "leased",
    )
    reopen_slots(session, live_leases, ended_status="released")
    if not project.exclude_blocked_answers:
        return
    theirs = [
        Answer.project_id == project.id,
        Answer.worker_id == worker_id,
        Answer.status == "accepted",
    ]
    workforce_id = session.scalar(sa.select(Worker.workforce_id).where(Worker.id == worker_id))
    if workforce_id in serving_gold_on_demand(session, {workforce_id}):
        # The pool asks no gold again (it serves gold on demand): its gold answers stay.
        # Elsewhere gold goes with the rest, so its slots reopen like any task's.
        theirs.append(Answer.is_gold.is_(False))
    excluded = session.execute(
        sa.update(Answer)
        .where(*theirs)
        .values(status="excluded")
        .returning(Answer.assignment_id, Answer.item_id)
        .execution_options(synchronize_session=False)
    ).all()
    change_answer_counts(session, Counter(item_id for _, item_id in excluded), sign=-1)
    # Billing: excluded answers get reversing ledger entries, never an edit.
    ledger.reverse_excluded_answers(
        session, project_id=project.id, worker_id=worker_id, memo=reason
    )
    assignment_ids = [assignment_id for assignment_id, _ in excluded if assignment_id]
    if assignment_ids:
        reopen_slots(session, Assignment.id.in_(assignment_ids), ended_status="excluded")


def change_answer_counts(session: Session, counts: Mapping[int, int], *, sign: int = 1) -> None:
    """Add (or with `sign=-1` take away) answers to items' `answer_count`, in one update.

    The item rows are locked first, in id order. Aggregation also writes items in id
    order, and both lock items after the worker records they touch, so an answer and an
    aggregation wait for each other instead of deadlocking.
    """
    if not counts:
        return
    ids = sorted(counts)
    session.execute(
        sa.select(Item.id)
        .where(bulk.among(session, Item.id, ids))
        .order_by(Item.id)
        .with_for_update(key_share=True)  # FOR NO KEY UPDATE: inserts' key checks pass
    )
    item = Item.__table__
    bulk.update_rows(
        session,
        item,
        [{"item": item_id, "added": sign * counts[item_id]} for item_id in ids],
        types={"item": BigId, "added": sa.Integer()},
        where=lambda row: item.c.id == row.item,
        values=lambda row: {"answer_count": item.c.answer_count + row.added},
    )


def reopen_slots(session: Session, condition: sa.ColumnElement[bool], *, ended_status: str) -> int:
    """End the matching slots with `ended_status` and put a fresh open slot in each one's place.

    The ended rows keep their worker, so history shows who saw what and the
    hand-out never gives that worker the item again. Gold slots reopen too, except the
    internal pool's, which it creates on demand: elsewhere gold is an ordinary task, and
    a workforce must not tell it by which tasks are asked again.
    """
    ended = session.execute(
        sa.update(Assignment)
        .where(condition)
        .values(status=ended_status)
        .returning(
            Assignment.batch_id,
            Assignment.item_id,
            Assignment.project_id,
            Assignment.workforce_id,
            Assignment.is_gold,
            Assignment.reserved_micros,
        )
        .execution_options(synchronize_session=False)
    ).all()
    on_demand = serving_gold_on_demand(session, {row.workforce_id for row in ended if row.is_gold})
    fresh = [
        {
            "batch_id": row.batch_id,
            "item_id": row.item_id,
            "project_id": row.project_id,
            "workforce_id": row.workforce_id,
            "is_gold": row.is_gold,
            "status": "open",
            "reserved_micros": row.reserved_micros,
            "created_at": utcnow(),
        }
        for row in ended
        if not (row.is_gold and row.workforce_id in on_demand)
    ]
    if fresh:
        session.execute(sa.insert(Assignment), fresh)
    return len(ended)
