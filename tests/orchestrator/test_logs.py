"""Structured JSON request logs with request ids."""

import json
import logging

from orchestrator.logs import JsonFormatter


def test_requests_get_an_id_and_a_json_log_line(client, ops, caplog):
    caplog.set_level(logging.INFO, logger="quorum.request")
    response = client.get("/api/v1/projects", headers={**ops, "X-Request-ID": "abc-123"})
    assert response.headers["X-Request-ID"] == "abc-123"
    record = [r for r in caplog.records if r.name == "quorum.request"][-1]
    assert (record.method, record.path, record.status) == ("GET", "/api/v1/projects", 200)
    generated = client.get("/healthz").headers["X-Request-ID"]
    assert len(generated) == 32


def test_json_formatter_keeps_extra_fields():
    record = logging.LogRecord("quorum.scheduler", logging.INFO, __file__, 1, "job ran", None, None)
    record.job, record.seconds = "expire_leases", 0.01
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "job ran" and entry["job"] == "expire_leases"
    assert entry["level"] == "info" and entry["time"].endswith("Z")
