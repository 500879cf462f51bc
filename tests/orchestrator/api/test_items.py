"""Item import: three formats, idempotency on external id, row problems with line numbers."""

import json

import pytest
import sqlalchemy as sa

from orchestrator.models import Item


@pytest.fixture
def project_id(client, ops):
    response = client.post(
        "/api/v1/projects", json={"name": "P", "labels": ["cat", "dog"]}, headers=ops
    )
    return response.get_json()["id"]


def upload(client, headers, project_id, body, content_type, query=""):
    return client.post(
        f"/api/v1/projects/{project_id}/items{query}",
        data=body,
        headers={**headers, "Content-Type": content_type},
    )


def ndjson(rows):
    return "".join(json.dumps(row) + "\n" for row in rows)


def stored(session, project_id):
    return {
        item.external_id: item
        for item in session.scalars(sa.select(Item).where(Item.project_id == project_id))
    }


ROWS = [
    {"external_id": "a", "data": {"url": "http://x/1.jpg"}},
    {"external_id": "b", "data": {"url": "http://x/2.jpg"}, "gold_label": "dog"},
    {"external_id": "c", "data": {"url": "http://x/3.jpg"}, "gold_label": None},
]


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", json.dumps(ROWS)),
        ("application/x-ndjson", ndjson(ROWS)),
        (
            "text/csv",
            "external_id,url,gold_label\na,http://x/1.jpg,\nb,http://x/2.jpg,dog\nc,http://x/3.jpg,\n",
        ),
    ],
)
def test_each_format_imports_and_reimport_adds_nothing(
    client, ops, session, project_id, content_type, body
):
    first = upload(client, ops, project_id, body, content_type)
    assert first.status_code == 201
    assert first.get_json()["created"] == 3 and first.get_json()["unchanged"] == 0
    again = upload(client, ops, project_id, body, content_type)
    assert again.status_code == 200
    assert (again.get_json()["created"], again.get_json()["unchanged"]) == (0, 3)
    items = stored(session, project_id)
    assert set(items) == {"a", "b", "c"}
    assert items["b"].gold_label == "dog" and items["a"].gold_label is None
    assert items["a"].data == {"url": "http://x/1.jpg"}


def test_bad_rows_refuse_whole_file_and_list_every_problem(client, ops, session, project_id):
    body = (
        '{"external_id": "ok1", "data": {}}\n'
        '{"data": {"x": 1}}\n'
        "{not json\n"
        '{"external_id": "g", "data": {}, "gold_label": "horse"}\n'
        '{"external_id": "d", "data": "text"}\n'
        '{"external_id": "ok2", "data": {}}\n'
        '{"external_id": "s", "data": {"text": "\\ud800"}}\n'
    )
    response = upload(client, ops, project_id, body, "application/x-ndjson")
    assert response.status_code == 422
    error = response.get_json()["error"]
    problems = {(row["line"], row["field"]) for row in error["details"]["rows"]}
    assert problems == {
        (2, "external_id"),
        (3, "_line"),
        (4, "gold_label"),
        (5, "data"),
        (7, "data"),  # valid JSON, but an unpaired surrogate no database stores
    }
    assert error["details"]["rejected"] == 5
    assert stored(session, project_id) == {}


def test_partial_mode_stores_good_rows_and_reports_bad(client, ops, session, project_id):
    body = ndjson(
        [
            {"external_id": "x", "data": {}},
            {
                "external_id": "y",
                "data": [],
            },
        ]
    )
    response = upload(client, ops, project_id, body, "application/x-ndjson", "?mode=partial")
    report = response.get_json()
    assert response.status_code == 201
    assert (report["created"], report["rejected"]) == (1, 1)
    assert report["errors"] == [{"line": 2, "field": "data", "message": "must be an object"}]
    assert set(stored(session, project_id)) == {"x"}


def test_dry_run_validates_without_storing(client, ops, session, project_id):
    response = upload(
        client, ops, project_id, json.dumps(ROWS), "application/json", "?dry_run=true"
    )
    assert response.status_code == 200
    assert response.get_json()["created"] == 3
    assert stored(session, project_id) == {}


def test_changed_content_for_known_id_is_refused(client, ops, session, project_id):
    upload(client, ops, project_id, ndjson(ROWS[:1]), "application/x-ndjson")
    changed = [{"external_id": "a", "data": {"url": "other"}}]
    response = upload(client, ops, project_id, ndjson(changed), "application/x-ndjson")
    assert response.status_code == 422
    assert response.get_json()["error"]["details"]["rows"][0]["field"] == "external_id"
    assert stored(session, project_id)["a"].data == {"url": "http://x/1.jpg"}


def test_repeat_within_file(client, ops, project_id):
    same = upload(client, ops, project_id, ndjson([ROWS[0], ROWS[0]]), "application/x-ndjson")
    assert (same.get_json()["created"], same.get_json()["unchanged"]) == (1, 1)
    clash = upload(
        client,
        ops,
        project_id,
        ndjson([{"external_id": "z", "data": {}}, {"external_id": "z", "data": {"v": 1}}]),
        "application/x-ndjson",
    )
    assert clash.status_code == 422
    assert "repeats line 1" in clash.get_json()["error"]["details"]["rows"][0]["message"]


def test_json_body_must_be_an_array_of_objects(client, ops, project_id):
    not_array = upload(client, ops, project_id, json.dumps(ROWS[0]), "application/json")
    assert not_array.status_code == 422
    assert not_array.get_json()["error"]["details"]["rows"][0]["field"] == "_body"
    scalars = upload(client, ops, project_id, "[1, 2]", "application/json")
    assert [r["line"] for r in scalars.get_json()["error"]["details"]["rows"]] == [1, 2]


def test_csv_without_external_id_column(client, ops, project_id):
    response = upload(client, ops, project_id, "id,text\n1,hi\n", "text/csv")
    assert response.status_code == 422
    assert response.get_json()["error"]["details"]["rows"][0]["field"] == "external_id"


def test_unsupported_content_type_is_415(client, ops, project_id):
    response = upload(client, ops, project_id, "<items/>", "application/xml")
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"


def test_import_into_unknown_or_archived_project(client, ops, project_id):
    assert upload(client, ops, 987654, "[]", "application/json").status_code == 404
    client.post(f"/api/v1/projects/{project_id}/archive", headers=ops)
    assert upload(client, ops, project_id, ndjson(ROWS), "application/x-ndjson").status_code == 409


def test_large_import_in_chunks(client, ops, session, project_id):
    rows = [{"external_id": str(i), "data": {"n": i}} for i in range(5_500)]
    response = upload(client, ops, project_id, ndjson(rows), "application/x-ndjson")
    assert response.get_json()["created"] == 5_500
    rows.append({"external_id": "new", "data": {}})
    again = upload(client, ops, project_id, ndjson(rows), "application/x-ndjson").get_json()
    assert (again["created"], again["unchanged"]) == (1, 5_500)


def test_list_items_pages(client, ops, project_id):
    upload(client, ops, project_id, json.dumps(ROWS), "application/json")
    page = client.get(
        f"/api/v1/projects/{project_id}/items?limit=2&offset=1", headers=ops
    ).get_json()
    assert [item["external_id"] for item in page["data"]] == ["b", "c"]
    assert page["total"] == 3
