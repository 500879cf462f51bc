"""Projects API: defaults, validation rules, update, archive."""

from typing import Any

import pytest
from flask.testing import FlaskClient

MINIMAL = {"name": "Sentiment", "labels": ["pos", "neg"]}


def create(client: FlaskClient, headers: dict[str, str], **overrides: Any) -> Any:
    return client.post("/api/v1/projects", json={**MINIMAL, **overrides}, headers=headers)


def test_create_needs_only_name_and_labels(client, ops):
    response = create(client, ops)
    assert response.status_code == 201
    project = response.get_json()
    assert isinstance(project["id"], int)
    assert project["labels"] == ["pos", "neg"]
    assert project["overlap"] == 3
    assert project["max_overlap"] == 5
    assert project["gold_rate"] == 0.1
    assert project["gold_accuracy_threshold"] == 0.6
    assert project["aggregation_method"] == "dawid_skene"
    assert project["reward"] == "0.00"
    assert project["currency"] == "USD"
    assert project["budget"] is None
    assert project["status"] == "active"


@pytest.mark.parametrize(("labels", "threshold"), [(["a", "b", "c", "d"], 0.4), (["a"], 1.0)])
def test_gold_threshold_defaults_by_label_count_unless_given(client, ops, labels, threshold):
    assert create(client, ops, labels=labels).get_json()["gold_accuracy_threshold"] == threshold
    given = create(client, ops, labels=labels, gold_accuracy_threshold=0.7).get_json()
    assert given["gold_accuracy_threshold"] == 0.7


def test_money_round_trips_as_exact_strings(client, ops):
    project = create(client, ops, reward="0.015", budget="1234.5").get_json()
    assert project["reward"] == "0.015"
    assert project["budget"] == "1234.50"


@pytest.mark.parametrize(
    ("overrides", "field", "fragment"),
    [
        ({"name": ""}, "name", "Length"),
        ({"labels": []}, "labels", "Length"),
        ({"labels": ["a", "a"]}, "labels", "unique"),
        ({"labels": ["a", ""]}, "labels", "Length"),
        ({"overlap": 0}, "overlap", "greater than or equal to 1"),
        ({"overlap": 3, "max_overlap": 2}, "max_overlap", ">= overlap"),
        ({"gold_rate": 1.0}, "gold_rate", "less than 1"),
        ({"gold_rate": -0.1}, "gold_rate", "greater than or equal to 0"),
        ({"confidence_target": 0}, "confidence_target", "greater than 0"),
        ({"gold_accuracy_threshold": 1.5}, "gold_accuracy_threshold", "less than or equal"),
        ({"gold_min_answers": 0}, "gold_min_answers", "greater than or equal to 1"),
        ({"aggregation_method": "magic"}, "aggregation_method", "Must be one of"),
        ({"reward": 0.05}, "reward", "not a number"),
        ({"reward": "-1"}, "reward", "non-negative decimal"),
        ({"reward": "0.0000001"}, "reward", "at most 6 decimals"),
        ({"budget": "ten"}, "budget", "decimal string"),
        ({"currency": "usd"}, "currency", "ISO 4217"),
        ({"lease_seconds": 1}, "lease_seconds", "greater than or equal to 10"),
        ({"surprise": 1}, "surprise", "Unknown field"),
    ],
)
def test_each_bad_field_is_named(client, ops, overrides, field, fragment):
    response = create(client, ops, **overrides)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "validation_error"
    assert field in error["details"], error
    assert fragment in str(error["details"][field])


def test_missing_required_fields_are_named(client, ops):
    response = client.post("/api/v1/projects", json={}, headers=ops)
    assert response.status_code == 422
    assert set(response.get_json()["error"]["details"]) == {"name", "labels"}


def test_get_update_list_and_archive(client, ops):
    project_id = create(client, ops).get_json()["id"]
    assert (
        client.get(f"/api/v1/projects/{project_id}", headers=ops).get_json()["name"] == "Sentiment"
    )

    changed = client.patch(
        f"/api/v1/projects/{project_id}", json={"overlap": 4, "reward": "0.02"}, headers=ops
    )
    assert changed.status_code == 200
    assert (changed.get_json()["overlap"], changed.get_json()["reward"]) == (4, "0.02")

    listing = client.get("/api/v1/projects?limit=1", headers=ops).get_json()
    assert listing["limit"] == 1 and len(listing["data"]) == 1 and listing["total"] >= 1

    archived = client.post(f"/api/v1/projects/{project_id}/archive", headers=ops)
    assert archived.get_json()["status"] == "archived"
    refused = client.patch(f"/api/v1/projects/{project_id}", json={"overlap": 2}, headers=ops)
    assert refused.status_code == 409
    assert refused.get_json()["error"]["code"] == "conflict"
    active = client.get("/api/v1/projects?status=active", headers=ops).get_json()["data"]
    assert project_id not in [p["id"] for p in active]


def test_update_checks_max_overlap_against_stored_overlap(client, ops):
    project_id = create(client, ops, overlap=3, max_overlap=5).get_json()["id"]
    response = client.patch(f"/api/v1/projects/{project_id}", json={"max_overlap": 2}, headers=ops)
    assert response.status_code == 422
    assert "max_overlap" in response.get_json()["error"]["details"]


def test_labels_in_use_by_gold_cannot_be_removed(client, ops):
    project_id = create(client, ops).get_json()["id"]
    client.post(
        f"/api/v1/projects/{project_id}/items",
        json=[{"external_id": "g1", "data": {}, "gold_label": "neg"}],
        headers=ops,
    )
    response = client.patch(f"/api/v1/projects/{project_id}", json={"labels": ["pos"]}, headers=ops)
    assert response.status_code == 409
    assert "neg" in str(response.get_json()["error"]["details"]["labels"])
    added = client.patch(
        f"/api/v1/projects/{project_id}", json={"labels": ["pos", "neg", "mixed"]}, headers=ops
    )
    assert added.status_code == 200


def test_unknown_project_is_404_envelope(client, ops):
    response = client.get("/api/v1/projects/999999", headers=ops)
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"
