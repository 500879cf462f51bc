"""Prometheus metrics computed from the database at scrape time.

Every API process reads the same database, so any process answers a scrape with the
same figures, and nothing is lost when a process restarts: hand-outs, answers, queue
depths, aggregation runs and spend are all counted from stored rows.
"""

from collections.abc import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from orchestrator.models import AggregationRun, Answer, Assignment, JobRun, LedgerEntry, Project


def _line(name: str, value: float, labels: dict[str, object] | None = None) -> str:
    if labels:
        rendered = ",".join(f'{key}="{_escape(str(val))}"' for key, val in sorted(labels.items()))
        return f"{name}{{{rendered}}} {value}"
    return f"{name} {value}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _family(name: str, kind: str, help_text: str, samples: Iterable[str]) -> list[str]:
    return [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", *samples]


def render_metrics(session: Session) -> str:
    """Render the service's metrics in the Prometheus text exposition format (0.0.4)."""
    slots = session.execute(
        sa.select(Assignment.status, sa.func.count()).group_by(Assignment.status)
    ).all()
    hand_outs = session.scalar(sa.select(sa.func.count()).where(Assignment.leased_at.is_not(None)))
    answers = session.execute(
        sa.select(Answer.status, sa.func.count()).group_by(Answer.status)
    ).all()
    gold = session.execute(
        sa.select(Answer.is_correct, sa.func.count())
        .where(Answer.is_gold.is_(True), Answer.is_correct.is_not(None))
        .group_by(Answer.is_correct)
    ).all()
    runs = session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(AggregationRun.seconds), 0.0))
    ).one()
    spend = session.execute(
        sa.select(LedgerEntry.currency, sa.func.sum(LedgerEntry.amount_micros)).group_by(
            LedgerEntry.currency
        )
    ).all()
    job_runs = session.execute(
        sa.select(JobRun.job, JobRun.status, sa.func.count()).group_by(JobRun.job, JobRun.status)
    ).all()
    projects = session.execute(
        sa.select(Project.status, sa.func.count()).group_by(Project.status)
    ).all()
    lines = [
        *_family(
            "quorum_slots",
            "gauge",
            "Assignment slots by status (open = queue depth).",
            (_line("quorum_slots", n, {"status": status}) for status, n in slots),
        ),
        *_family(
            "quorum_hand_outs_total",
            "counter",
            "Slots ever leased to a worker.",
            [_line("quorum_hand_outs_total", hand_outs or 0)],
        ),
        *_family(
            "quorum_answers_total",
            "counter",
            "Answers stored, by status.",
            (_line("quorum_answers_total", n, {"status": status}) for status, n in answers),
        ),
        *_family(
            "quorum_gold_answers_total",
            "counter",
            "Scored gold answers, by correctness.",
            (
                _line("quorum_gold_answers_total", n, {"correct": str(bool(ok)).lower()})
                for ok, n in gold
            ),
        ),
        *_family(
            "quorum_aggregation_runs_total",
            "counter",
            "Aggregation runs.",
            [_line("quorum_aggregation_runs_total", runs[0])],
        ),
        *_family(
            "quorum_aggregation_seconds_total",
            "counter",
            "Time spent aggregating (seconds).",
            [_line("quorum_aggregation_seconds_total", round(float(runs[1]), 6))],
        ),
        *_family(
            "quorum_spend_total",
            "counter",
            "Net ledger total, by currency (currency units).",
            (
                _line("quorum_spend_total", (micros or 0) / 1_000_000, {"currency": currency})
                for currency, micros in spend
            ),
        ),
        *_family(
            "quorum_job_runs_total",
            "counter",
            "Scheduler job runs, by job and status (ok, failed).",
            (
                _line("quorum_job_runs_total", n, {"job": job, "status": status})
                for job, status, n in job_runs
            ),
        ),
        *_family(
            "quorum_projects",
            "gauge",
            "Projects by status.",
            (_line("quorum_projects", n, {"status": status}) for status, n in projects),
        ),
    ]
    return "\n".join(lines) + "\n"
