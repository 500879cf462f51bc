"""Scheduler jobs: lease expiry, re-aggregation with top-ups, batch closing, one run at a time."""

import os
import subprocess
import sys
import time
from datetime import timedelta

import pytest
import sqlalchemy as sa

from orchestrator import scheduler
from orchestrator.db import utcnow
from orchestrator.models import AggregationRun, Assignment, Batch, JobRun
from tests.orchestrator.api.campaign import Campaign


@pytest.fixture
def campaign(client, ops, make_key, session):
    # A low confidence target: these tests are about jobs, not dynamic overlap.
    return Campaign(client, ops, make_key, session, overlap=2, gold_rate=0.0, confidence_target=0.5)


def test_expire_job_reopens_expired_leases(campaign, session):
    campaign.import_items(1)
    campaign.dispatch()
    lease = campaign.next(campaign.worker("ann")).get_json()["lease_id"]
    campaign.slot(lease).lease_expires_at = utcnow() - timedelta(seconds=1)
    session.flush()
    assert scheduler.expire_leases(session) == {"expired": 1}
    assert campaign.slot(lease).status == "expired"
    assert session.scalar(sa.select(sa.func.count()).where(Assignment.status == "open")) == 2
    assert scheduler.expire_leases(session) == {"expired": 0}


def test_refresh_and_close_jobs(campaign, session, sessions):
    campaign.import_items(3)
    campaign.dispatch()
    campaign.work_until_done([campaign.worker("a"), campaign.worker("b")])
    assert scheduler.refresh_results(sessions)["aggregated"] == 1
    assert session.scalar(sa.select(sa.func.count()).select_from(AggregationRun)) == 1
    assert scheduler.refresh_results(sessions)["aggregated"] == 0  # nothing new
    assert scheduler.close_batches(session) == {"completed": 1, "overdue_slots_withdrawn": 0}
    assert session.scalar(sa.select(Batch.status)) == "completed"


def test_a_job_runs_once_per_tick(sessions):
    job = scheduler.Job("close_batches", scheduler.close_batches, 60)
    assert scheduler.run_job(sessions, job, now=600.0)["tick"] == 10
    assert scheduler.run_job(sessions, job, now=659.0) is None  # same tick, ran already
    assert scheduler.run_job(sessions, job, now=660.0)["tick"] == 11
    with sessions() as session:
        runs = session.execute(sa.select(JobRun.job, JobRun.tick, JobRun.changed)).all()
    assert [(r.job, r.tick) for r in runs] == [("close_batches", 10), ("close_batches", 11)]
    assert runs[0].changed == {"completed": 0, "overdue_slots_withdrawn": 0}


def test_a_running_job_is_not_run_again_meanwhile(engine, sessions):
    job = scheduler.Job("close_batches", scheduler.close_batches, 60)
    if engine.dialect.name != "postgresql":
        # SQLite has no advisory locks: its one scheduler process (file lock) just runs.
        assert scheduler.run_job(sessions, job, now=6000.0)["tick"] == 100
        return
    with engine.connect() as other, other.begin():
        other.execute(sa.select(sa.func.pg_advisory_xact_lock(scheduler.job_lock_key(job.name))))
        assert scheduler.run_job(sessions, job, now=6000.0) is None  # held by the other process


def test_second_sqlite_scheduler_is_refused(tmp_path):
    url = f"sqlite:///{tmp_path}/quorum.db"
    held = scheduler.sqlite_lock(url)
    try:
        with pytest.raises(scheduler.SchedulerAlreadyRunningError, match="one scheduler"):
            scheduler.sqlite_lock(url)
        env = {**os.environ, "DATABASE_URL": url}
        started = time.monotonic()
        second = subprocess.run(
            [sys.executable, "-m", "orchestrator.cli", "scheduler"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1 and "SQLite supports one scheduler" in second.stderr
        assert time.monotonic() - started < 60
    finally:
        held.close()


def test_overdue_batches_withdraw_their_open_slots(campaign, session):
    campaign.import_items(2)
    batch_id = campaign.dispatch(due_at="2020-01-01T00:00:00+00:00").get_json()["data"][0]["id"]
    lease = campaign.next(campaign.worker("ann")).get_json()["lease_id"]
    assert scheduler.close_batches(session) == {"completed": 0, "overdue_slots_withdrawn": 3}
    statuses = set(
        session.scalars(sa.select(Assignment.status).where(Assignment.batch_id == batch_id))
    )
    assert statuses == {"cancelled", "leased"}
    # A task already leased may still be answered; then the batch completes.
    assert campaign.answer(campaign.worker("ann"), lease, "cat").status_code == 201
    assert scheduler.close_batches(session)["completed"] == 1
    assert campaign.dispatch().status_code == 201  # the withdrawn items are pending again


def test_projects_complete_when_every_item_is_answered_and_reopen_on_import(campaign, session):
    campaign.import_items(2)
    campaign.dispatch()
    assert scheduler.complete_projects(session) == {"completed": 0}  # work is still live
    campaign.work_until_done([campaign.worker("a"), campaign.worker("b"), campaign.worker("c")])
    assert scheduler.complete_projects(session)["completed"] == 1
    project = campaign.client.get(f"/api/v1/projects/{campaign.project_id}", headers=campaign.ops)
    assert project.get_json()["status"] == "completed"
    assert campaign.dispatch().status_code == 409
    campaign.import_items(3)  # i0..i2: one new item
    reopened = campaign.client.get(f"/api/v1/projects/{campaign.project_id}", headers=campaign.ops)
    assert reopened.get_json()["status"] == "active"
    assert campaign.dispatch().status_code == 201


def test_failed_runs_are_recorded_and_counted(client, ops, sessions):
    def broken(session):
        raise RuntimeError("disk on fire")

    job = scheduler.Job("broken", broken, 60)
    with pytest.raises(RuntimeError):
        scheduler.run_job(sessions, job, now=120.0)
    with sessions() as session:
        run = session.scalar(sa.select(JobRun).where(JobRun.job == "broken"))
    assert (run.tick, run.status) == (2, "failed")
    assert "disk on fire" in run.changed["error"]
    metrics = client.get("/metrics", headers=ops).text
    assert 'quorum_job_runs_total{job="broken",status="failed"} 1' in metrics
