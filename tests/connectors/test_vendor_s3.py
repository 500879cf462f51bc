"""S3 hand-off (`handoff: s3`) against moto's S3 server over real HTTP, with boto3's client.

The scheduler's jobs run as the scheduler runs them (`scheduler.run_job`); the vendor's
side is a plain boto3 client on the same server. "S3 down" stops the server (connection
refused) and starts it again on the same port, with its buckets intact.
"""

import hashlib
import json
import uuid
from datetime import UTC, datetime

import boto3
import pytest
import sqlalchemy as sa
from moto.server import ThreadedMotoServer

from connectors.base import ConnectorConfigError
from connectors.vendor import VendorConnector
from connectors.vendor_s3 import ResultsObject
from orchestrator import scheduler
from orchestrator.db import UNSTORABLE_TEXT_MESSAGE
from orchestrator.models import Answer, Batch, LedgerEntry, VendorS3Object
from orchestrator.services import vendor_s3
from orchestrator.settings import Settings
from tests.orchestrator.api.campaign import Campaign

REGION = "eu-west-1"
PREFIX = "quorum/"
JOBS = {job.name: job for job in scheduler.default_jobs(Settings())}


class S3Server:
    """moto's S3 server on a fixed loopback port, which a test can stop and start again."""

    def __init__(self):
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.server.start()
        self.port = self.server.get_host_and_port()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.running = True

    def stop(self):
        self.server.stop()
        self.running = False

    def start(self):
        # moto keeps its state in the process, so the buckets survive a restart.
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self.server.start()
        self.running = True


@pytest.fixture(scope="module")
def s3_server():
    server = S3Server()
    yield server
    if server.running:
        server.stop()


@pytest.fixture
def aws(monkeypatch, tmp_path):
    """Credentials through boto3's own chain: the environment, nothing else."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


class Vendor:
    """The vendor's side of a bucket: a plain boto3 client."""

    def __init__(self, url, bucket):
        self.bucket = bucket
        self.client = boto3.client("s3", endpoint_url=url, region_name=REGION)
        self.client.create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
        )

    def get(self, key):
        return self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()

    def etag(self, key):
        return self.client.head_object(Bucket=self.bucket, Key=key)["ETag"].strip('"')

    def put_rows(self, key, rows):
        lines = [row if isinstance(row, str) else json.dumps(row) for row in rows]
        self.client.put_object(Bucket=self.bucket, Key=key, Body="\n".join(lines).encode())

    def report(self, batch_id, name):
        return json.loads(self.get(f"{PREFIX}reports/{batch_id}/{name}.json"))

    def keys(self):
        listed = self.client.list_objects_v2(Bucket=self.bucket)
        return sorted(item["Key"] for item in listed.get("Contents", []))


@pytest.fixture
def vendor(s3_server, aws):
    vendor = Vendor(s3_server.url, f"acme-{uuid.uuid4().hex[:12]}")
    yield vendor
    vendor.client.close()


class S3Campaign(Campaign):
    """A project with gold, and vendor workforces handing off through S3."""

    def s3_workforce(self, name, bucket, vendor_name="acme", url=None, **config):
        return self.vendor_workforce(
            vendor_name,
            name=name,
            config={
                "handoff": "s3",
                "s3_bucket": bucket,
                "s3_prefix": PREFIX,
                "s3_endpoint_url": url,
                "s3_region": REGION,
                **config,
            },
        )

    def batch(self, workforce_id, **options):
        response = self.dispatch(workforce_id, **options)
        assert response.status_code == 201, response.get_json()
        return response.get_json()["data"][0]["id"]

    def api_tasks(self, key, batch_id):
        page = self.client.get(f"/api/v1/vendor/batches/{batch_id}/tasks?limit=1000", headers=key)
        assert page.status_code == 200, page.get_json()
        return page.get_json()

    def count(self, model, *where):
        self.session.expire_all()
        return self.session.scalar(sa.select(sa.func.count()).select_from(model).where(*where))


@pytest.fixture
def campaign(client, ops, make_key, session):
    return S3Campaign.with_gold(client, ops, make_key, session)


@pytest.fixture
def acme(campaign, vendor, s3_server):
    """Acme's S3 workforce and one batch of 10 tasks (4 gold), 2 answers wanted each."""
    workforce_id = campaign.s3_workforce("acme-s3", vendor.bucket, url=s3_server.url)
    due = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    return workforce_id, campaign.batch(workforce_id, due_at=due.isoformat())


tick = iter(range(10**6, 2 * 10**6))  # each job run is its own scheduler tick


def run(sessions, name):
    job = JOBS[name]
    return scheduler.run_job(sessions, job, now=next(tick) * job.seconds)


def answers_for(campaign, key, batch_id, workers, label="cat"):
    refs = [task["task_ref"] for task in campaign.api_tasks(key, batch_id)["data"]]
    return [
        {"task_ref": ref, "worker_id": worker, "label": label, "time_spent_ms": 1500}
        for worker in workers
        for ref in refs
    ]


# --- configuration ------------------------------------------------------------------


@pytest.mark.parametrize(
    "config",
    [
        {"handoff": "s3", "s3_bucket": "acme-labels"},
        {
            "handoff": "s3",
            "s3_bucket": "acme.labels-2",
            "s3_prefix": "quorum/in",
            "s3_endpoint_url": "https://minio.acme.example:9000",
            "s3_region": "eu-central-1",
        },
        # Switched to pull for a while, the bucket settings kept.
        {"handoff": "pull", "s3_bucket": "acme-labels"},
    ],
)
def test_valid_s3_configs(config):
    assert VendorConnector(config).config == config


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"handoff": "s3"}, "config.s3_bucket"),
        ({"handoff": "s3", "s3_bucket": "Acme_Labels"}, "config.s3_bucket"),
        ({"handoff": "s3", "s3_bucket": "ab"}, "config.s3_bucket"),
        ({"handoff": "s3", "s3_bucket": "acme..labels"}, "config.s3_bucket"),
        ({"handoff": "s3", "s3_bucket": "acme", "s3_prefix": "/abs"}, "config.s3_prefix"),
        ({"handoff": "s3", "s3_bucket": "acme", "s3_prefix": 7}, "config.s3_prefix"),
        (
            {"handoff": "s3", "s3_bucket": "acme", "s3_endpoint_url": "ftp://x"},
            "config.s3_endpoint_url",
        ),
        (
            {"handoff": "s3", "s3_bucket": "acme", "s3_endpoint_url": "https://AKIA:pw@s3.example"},
            "config.s3_endpoint_url",
        ),
        ({"handoff": "s3", "s3_bucket": "acme", "s3_region": "Europe"}, "config.s3_region"),
        (
            {"handoff": "s3", "s3_bucket": "acme", "s3_access_key_id": "AKIA"},
            "config.s3_access_key_id",
        ),
        (
            {"handoff": "s3", "s3_bucket": "acme", "aws_secret_access_key": "x"},
            "config.aws_secret_access_key",
        ),
        (
            {"handoff": "s3", "s3_bucket": "acme", "s3_session_token": "x"},
            "config.s3_session_token",
        ),
        ({"handoff": "s3", "s3_bucket": "acme", "s3_acl": "public"}, "config"),
    ],
)
def test_invalid_s3_configs_name_the_field(config, field):
    with pytest.raises(ConnectorConfigError) as error:
        VendorConnector.validate_config(config)
    assert list(error.value.details) == [field]


def test_credential_keys_are_refused_as_credentials():
    with pytest.raises(ConnectorConfigError, match="looks like a credential"):
        VendorConnector.validate_config({"handoff": "s3", "s3_bucket": "a-b", "s3_password": "x"})


def test_bucket_only_for_s3_handoff_and_prefix_is_a_folder():
    assert VendorConnector({"s3_bucket": "acme-labels"}).bucket() is None
    bucket = VendorConnector(
        {"handoff": "s3", "s3_bucket": "acme-labels", "s3_prefix": "in"}
    ).bucket()
    assert (bucket.bucket, bucket.prefix) == ("acme-labels", "in/")
    assert bucket.manifest_key(12) == "in/batches/12/manifest.json"
    assert bucket.results_batch("in/results/12/part-1.jsonl") == 12
    for key in ("in/results/x/a.jsonl", "in/results/12/a.csv", "in/results/12/a/b.jsonl"):
        assert bucket.results_batch(key) is None
    assert bucket.report_key("in/results/12/part-1.jsonl") == "in/reports/12/part-1.json"


def test_api_refuses_a_bad_s3_workforce_naming_the_field(campaign):
    response = campaign.client.post(
        "/api/v1/workforces",
        json={"name": "x", "kind": "vendor", "vendor": "acme", "config": {"handoff": "s3"}},
        headers=campaign.ops,
    )
    assert response.status_code == 422
    assert "config.s3_bucket" in response.get_json()["error"]["details"]


# --- batches out --------------------------------------------------------------------


def test_publish_writes_tasks_and_manifest_without_gold(campaign, acme, vendor, sessions, make_key):
    workforce_id, batch_id = acme
    assert run(sessions, "export_s3_batches")["exported"] == 1

    tasks_key = f"{PREFIX}batches/{batch_id}/tasks.jsonl"
    manifest_key = f"{PREFIX}batches/{batch_id}/manifest.json"
    assert vendor.keys() == [manifest_key, tasks_key]
    body = vendor.get(tasks_key)
    lines = [json.loads(line) for line in body.decode().splitlines()]
    api = campaign.api_tasks(make_key("vendor", vendor="acme"), batch_id)
    # Exactly what the vendor API lists, in the same order, each line self-contained.
    assert [(t["task_ref"], t["data"]) for t in lines] == [
        (t["task_ref"], t["data"]) for t in api["data"]
    ]
    assert all(set(t) == {"task_ref", "data", "instructions", "labels"} for t in lines)
    assert {(t["instructions"], tuple(t["labels"])) for t in lines} == {
        ("Is it a cat or a dog?", ("cat", "dog"))
    }
    # The 4 gold tasks are there, and nothing tells them apart.
    gold_refs = _gold_refs(campaign, batch_id)
    assert len(gold_refs) == 4 and gold_refs <= {t["task_ref"] for t in lines}
    for text in (body.decode(), vendor.get(manifest_key).decode()):
        assert "gold" not in text and '"g0"' not in text and '"i0"' not in text

    manifest = json.loads(vendor.get(manifest_key))
    assert manifest["batch_id"] == batch_id and manifest["task_count"] == 10
    assert manifest["overlap"] == 2 and manifest["labels"] == ["cat", "dog"]
    assert datetime.fromisoformat(manifest["due_at"]) == datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert manifest["tasks"] == {
        "key": tasks_key,
        "sha256": hashlib.sha256(body).hexdigest(),
        "bytes": len(body),
    }
    assert manifest["results"]["prefix"] == f"{PREFIX}results/{batch_id}/"
    assert manifest["results"]["fields"] == ["task_ref", "worker_id", "label", "time_spent_ms"]
    assert manifest["reports"] == {"prefix": f"{PREFIX}reports/{batch_id}/"}

    # Once written and recorded, a batch is not written again.
    etag = vendor.etag(manifest_key)
    assert _ran(run(sessions, "export_s3_batches")) == {}
    [record] = campaign.session.scalars(sa.select(VendorS3Object)).all()
    assert (record.kind, record.batch_id, record.key, record.etag, record.status) == (
        "manifest",
        batch_id,
        manifest_key,
        etag,
        "written",
    )
    # A crash after the write but before the record: written again, the very same bytes.
    campaign.session.delete(record)
    campaign.session.commit()
    assert run(sessions, "export_s3_batches")["exported"] == 1
    assert vendor.get(tasks_key) == body and vendor.etag(manifest_key) == etag
    assert campaign.count(VendorS3Object) == 1


def _gold_refs(campaign, batch_id):
    from connectors.vendor import task_ref
    from orchestrator.models import BatchItem

    batch = campaign.session.get(Batch, batch_id)
    gold = campaign.session.scalars(
        sa.select(BatchItem.item_id).where(
            BatchItem.batch_id == batch_id, BatchItem.is_gold.is_(True)
        )
    )
    return {task_ref(batch.connector_state["task_salt"], item_id) for item_id in gold}


def _ran(changed):
    return {key: value for key, value in changed.items() if key not in ("job", "tick", "seconds")}


# --- results in ---------------------------------------------------------------------


def test_a_closed_batch_gets_one_notice_if_the_vendor_saw_it(campaign, acme, vendor, sessions):
    workforce_id, batch_id = acme
    assert _ran(run(sessions, "export_s3_batches")) == {"exported": 1}
    cancel = campaign.client.post(f"/api/v1/batches/{batch_id}/cancel", headers=campaign.ops)
    assert cancel.status_code == 200, cancel.get_json()
    # A batch cancelled before it was exported was never seen: it gets no notice.
    unseen = campaign.batch(workforce_id)
    cancel = campaign.client.post(f"/api/v1/batches/{unseen}/cancel", headers=campaign.ops)
    assert cancel.status_code == 200, cancel.get_json()
    assert _ran(run(sessions, "export_s3_batches")) == {"closed": 1}
    notice = json.loads(vendor.get(f"{PREFIX}batches/{batch_id}/closed.json"))
    assert (notice["batch_id"], notice["status"]) == (batch_id, "cancelled")
    assert datetime.fromisoformat(notice["closed_at"]).tzinfo is not None
    assert not any(key.startswith(f"{PREFIX}batches/{unseen}/") for key in vendor.keys())
    assert _ran(run(sessions, "export_s3_batches")) == {}
    kinds = campaign.session.scalars(
        sa.select(VendorS3Object.kind).where(VendorS3Object.batch_id == batch_id)
    ).all()
    assert sorted(kinds) == ["closure", "manifest"]


def test_results_are_stored_scored_and_ledgered_once(campaign, acme, vendor, sessions, make_key):
    workforce_id, batch_id = acme
    key = make_key("vendor", vendor="acme")
    rows = answers_for(campaign, key, batch_id, ["w1", "w2"])  # "cat": every gold answer right
    results_key = f"{PREFIX}results/{batch_id}/part-1.jsonl"
    vendor.put_rows(results_key, rows)

    assert _ran(run(sessions, "ingest_s3_results")) == {"processed": 1, "reported": 1}
    report = vendor.report(batch_id, "part-1")
    assert report["status"] == "processed" and report["reason"] is None
    assert (report["rows"], report["accepted_count"], report["rejected_count"]) == (20, 20, 0)
    assert [row["line"] for row in report["accepted"]] == list(range(1, 21))
    assert report["etag"] == vendor.etag(results_key)

    # Stored like bulk submissions: vendor workers, gold scored, the vendor's rate.
    answers = campaign.session.scalars(
        sa.select(Answer).where(Answer.batch_id == batch_id).order_by(Answer.id)
    ).all()
    assert len(answers) == 20 and {a.time_spent_ms for a in answers} == {1500}
    assert sorted(a.id for a in answers) == sorted(r["answer_id"] for r in report["accepted"])
    gold = [a for a in answers if a.is_gold]
    assert len(gold) == 8 and all(a.is_correct for a in gold)
    charges = campaign.session.scalars(
        sa.select(LedgerEntry.amount_micros).where(
            LedgerEntry.batch_id == batch_id, LedgerEntry.kind == "vendor_charge"
        )
    ).all()
    assert len(charges) == 20 and set(charges) == {100_000}
    assert campaign.session.get(Batch, batch_id).status == "in_progress"

    # A re-run reads nothing again and stores nothing twice.
    assert _ran(run(sessions, "ingest_s3_results")) == {"reported": 0}
    assert campaign.count(Answer, Answer.batch_id == batch_id) == 20

    # A new version of the file (new ETag) is read again: its old rows are duplicates.
    vendor.put_rows(
        results_key, [*rows, {"task_ref": rows[0]["task_ref"], "worker_id": "w3", "label": "dog"}]
    )
    assert _ran(run(sessions, "ingest_s3_results")) == {"processed": 1, "reported": 1}
    again = vendor.report(batch_id, "part-1")
    assert again["etag"] == vendor.etag(results_key) != report["etag"]
    assert again["accepted_count"] == 0 and again["rejected_count"] == 21
    codes = [row["code"] for row in again["rejected"]]
    assert codes == ["duplicate_answer"] * 20 + ["no_open_slot"]
    assert campaign.count(Answer, Answer.batch_id == batch_id) == 20
    assert campaign.count(LedgerEntry, LedgerEntry.kind == "vendor_charge") == 20
    records = campaign.session.scalars(
        sa.select(VendorS3Object)
        .where(VendorS3Object.kind == "results")
        .order_by(VendorS3Object.id)
    ).all()
    assert [(r.key, r.status, r.outcome, r.accepted, r.rejected) for r in records] == [
        (results_key, "reported", "processed", 20, 0),
        (results_key, "reported", "processed", 0, 21),
    ]


def test_bad_rows_are_rejected_with_a_reason_in_the_report(
    campaign, acme, vendor, sessions, make_key
):
    _, batch_id = acme
    key = make_key("vendor", vendor="acme")
    [good, other, *_] = answers_for(campaign, key, batch_id, ["w1"])
    vendor.put_rows(
        f"{PREFIX}results/{batch_id}/mixed.jsonl",
        [
            good,
            "{not json",
            {**other, "worker": "w1"},
            "",
            {**other, "label": "horse"},
            {**other, "task_ref": "t_nope"},
            {**other, "time_spent_ms": -1},
            ["a", "list"],
            {**other, "worker_id": "w\ud800"},  # valid JSON, but no backend stores it
        ],
    )
    assert _ran(run(sessions, "ingest_s3_results")) == {"processed": 1, "reported": 1}
    report = vendor.report(batch_id, "mixed")
    assert (report["rows"], report["accepted_count"], report["rejected_count"]) == (8, 1, 7)
    assert (
        report["accepted"][0]["line"] == 1 and report["accepted"][0]["task_ref"] == good["task_ref"]
    )
    rejected = {row["line"]: row for row in report["rejected"]}
    assert {line: row["code"] for line, row in rejected.items()} == {
        2: "invalid_row",
        3: "invalid_row",
        5: "invalid_label",
        6: "unknown_task",
        7: "invalid_row",
        8: "invalid_row",
        9: "invalid_row",
    }
    assert rejected[2]["reason"].startswith("not JSON")
    assert rejected[3]["reason"].startswith("unknown field 'worker'")
    assert (rejected[3]["task_ref"], rejected[3]["worker_id"]) == (other["task_ref"], "w1")
    assert "horse" in rejected[5]["reason"] and "t_nope" in rejected[6]["reason"]
    assert rejected[7]["reason"].startswith("time_spent_ms")
    assert rejected[8]["reason"] == "not a JSON object"
    assert rejected[9]["reason"] == f"worker_id {UNSTORABLE_TEXT_MESSAGE}"
    assert (rejected[9]["task_ref"], rejected[9]["worker_id"]) == (other["task_ref"], None)
    assert campaign.count(Answer, Answer.batch_id == batch_id) == 1
    # The file counts in the vendor's figures as a bulk submission would.
    figures = campaign.client.get("/api/v1/vendor/quality", headers=key).get_json()
    counted = (figures["submissions"], figures["rows_submitted"], figures["rows_rejected"])
    assert counted == (1, 8, 7)
    assert figures["rejected_by_reason"] == {"invalid_label": 1, "unknown_task": 1}


def test_a_file_that_fails_holds_back_no_other_and_is_retried(
    campaign, acme, vendor, sessions, make_key, monkeypatch
):
    _, batch_id = acme
    key = make_key("vendor", vendor="acme")
    first, second = answers_for(campaign, key, batch_id, ["w1"])[:2]
    vendor.put_rows(f"{PREFIX}results/{batch_id}/a.jsonl", [first])
    vendor.put_rows(f"{PREFIX}results/{batch_id}/b.jsonl", [second])
    ingest = vendor_s3.ingest_object

    def broken_on_a(sessions, target, listed):
        if listed.key.endswith("/a.jsonl"):
            raise RuntimeError("a bug met by one file")
        return ingest(sessions, target, listed)

    monkeypatch.setattr(vendor_s3, "ingest_object", broken_on_a)
    assert _ran(run(sessions, "ingest_s3_results")) == {"failed": 1, "processed": 1, "reported": 1}
    assert vendor.report(batch_id, "b")["accepted_count"] == 1
    monkeypatch.setattr(vendor_s3, "ingest_object", ingest)  # fixed: the file is taken up again
    assert _ran(run(sessions, "ingest_s3_results")) == {"processed": 1, "reported": 1}
    assert vendor.report(batch_id, "a")["accepted_count"] == 1
    assert campaign.count(Answer, Answer.batch_id == batch_id) == 2


def test_results_for_another_vendors_batch_are_refused(
    campaign, vendor, sessions, make_key, s3_server
):
    acme_wf = campaign.s3_workforce("acme-s3", vendor.bucket, url=s3_server.url)
    acme_batch = campaign.batch(acme_wf, max_items=3)
    beta_bucket = f"beta-{uuid.uuid4().hex[:12]}"
    Vendor(s3_server.url, beta_bucket).client.close()  # the bucket is all beta needs here
    beta_wf = campaign.s3_workforce("beta-s3", beta_bucket, vendor_name="beta", url=s3_server.url)
    beta_batch = campaign.batch(beta_wf)
    beta_rows = answers_for(campaign, make_key("vendor", vendor="beta"), beta_batch, ["w1"])
    # Acme puts results for beta's batch, a batch that does not exist, and a stray file.
    vendor.put_rows(f"{PREFIX}results/{beta_batch}/steal.jsonl", beta_rows)
    vendor.put_rows(f"{PREFIX}results/999999/x.jsonl", beta_rows)
    vendor.put_rows(f"{PREFIX}results/answers.jsonl", beta_rows)

    assert _ran(run(sessions, "ingest_s3_results")) == {"refused": 3, "reported": 3}
    stolen = vendor.report(beta_batch, "steal")
    missing = vendor.report(999999, "x")
    # The same words for another vendor's batch and for no batch at all: nothing leaks.
    assert stolen["status"] == missing["status"] == "refused"
    assert stolen["reason"] == f"batch {beta_batch} not found"
    assert missing["reason"] == "batch 999999 not found"
    assert stolen["batch_id"] is None and stolen["accepted"] == []
    stray = json.loads(vendor.get(f"{PREFIX}reports/answers.json"))
    assert stray["reason"] == f"results go in {PREFIX}results/{{batch_id}}/{{name}}.jsonl"
    assert campaign.count(Answer, Answer.batch_id == beta_batch) == 0
    assert campaign.count(Answer) == 0
    # Refused versions are recorded too: they are not read again.
    assert _ran(run(sessions, "ingest_s3_results")) == {"reported": 0}

    # Acme's own batch, once cancelled, takes no more answers: the whole file is refused.
    cancel = campaign.client.post(f"/api/v1/batches/{acme_batch}/cancel", headers=campaign.ops)
    assert cancel.status_code == 200, cancel.get_json()
    acme_rows = answers_for(campaign, make_key("vendor", vendor="acme"), acme_batch, ["w1"])
    vendor.put_rows(f"{PREFIX}results/{acme_batch}/late.jsonl", [*acme_rows, "{bad"])
    assert _ran(run(sessions, "ingest_s3_results")) == {"refused": 1, "reported": 1}
    late = vendor.report(acme_batch, "late")
    assert late["reason"] == f"batch {acme_batch} is cancelled; it takes no more answers"
    assert (late["batch_id"], late["rows"], late["accepted"], late["rejected"]) == (
        acme_batch,
        len(acme_rows) + 1,
        [],
        [],
    )
    assert campaign.count(Answer) == 0


def test_s3_down_is_retried_later_and_nothing_is_lost(
    campaign, vendor, sessions, make_key, s3_server
):
    workforce_id = campaign.s3_workforce("acme-s3", vendor.bucket, url=s3_server.url)
    s3_server.stop()
    try:
        batch_id = campaign.batch(workforce_id)  # publishing never waits for S3
        assert _ran(run(sessions, "export_s3_batches")) == {"unavailable": 1}
        assert _ran(run(sessions, "ingest_s3_results")) == {"unavailable": 1}
        assert campaign.count(VendorS3Object) == 0
    finally:
        s3_server.start()
    assert _ran(run(sessions, "export_s3_batches")) == {"exported": 1}
    assert f"{PREFIX}batches/{batch_id}/manifest.json" in vendor.keys()

    # S3 fails after a results file is stored but before its report is written.
    key = make_key("vendor", vendor="acme")
    rows = answers_for(campaign, key, batch_id, ["w1"])
    results_key = f"{PREFIX}results/{batch_id}/late.jsonl"
    vendor.put_rows(results_key, rows)
    with vendor_s3.open_targets(sessions) as [target]:
        [listed] = target.bucket.list_results()
        assert vendor_s3.ingest_object(sessions, target, listed) == "processed"
        assert vendor_s3.ingest_object(sessions, target, listed) == "seen"
    s3_server.stop()
    try:
        assert _ran(run(sessions, "ingest_s3_results")) == {"unavailable": 1}
        [record] = campaign.session.scalars(
            sa.select(VendorS3Object).where(VendorS3Object.kind == "results")
        ).all()
        assert record.status == "reporting" and record.accepted == len(rows)
    finally:
        s3_server.start()
    assert _ran(run(sessions, "ingest_s3_results")) == {"reported": 1}
    report = vendor.report(batch_id, "late")
    assert report["accepted_count"] == len(rows) == 10 and report["rejected_count"] == 0
    assert campaign.count(Answer, Answer.batch_id == batch_id) == 10
    assert _ran(run(sessions, "ingest_s3_results")) == {"reported": 0}


def test_a_file_deleted_before_it_is_read_is_skipped(campaign, acme, vendor, sessions):
    _, batch_id = acme
    vendor.put_rows(f"{PREFIX}results/{batch_id}/gone.jsonl", [{"task_ref": "t"}])
    with vendor_s3.open_targets(sessions) as [target]:
        [listed] = target.bucket.list_results()
        vendor.client.delete_object(Bucket=vendor.bucket, Key=listed.key)
        assert vendor_s3.ingest_object(sessions, target, listed) == "gone"
        too_big = ResultsObject(listed.key, listed.etag, vendor_s3.MAX_OBJECT_BYTES + 1)
        assert vendor_s3.ingest_object(sessions, target, too_big) == "refused"
        assert vendor_s3.write_reports(sessions, target) == 1
    assert vendor.report(batch_id, "gone")["reason"].startswith("larger than")
