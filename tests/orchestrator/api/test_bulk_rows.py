"""BulkRows loads well-formed rows without marshmallow and reports errors exactly as it does."""

import random
from unittest import mock

import pytest
from marshmallow import Schema, ValidationError, fields, post_load, validate

from orchestrator.api.bulk_rows import BulkRows
from orchestrator.api.vendor import AnswerRowSchema


class FastRequest(Schema):
    answers = BulkRows(AnswerRowSchema, required=True, validate=validate.Length(min=1, max=5))


class SchemaRequest(Schema):
    answers = fields.List(
        fields.Nested(AnswerRowSchema), required=True, validate=validate.Length(min=1, max=5)
    )


def _load(schema: Schema, body: object) -> tuple[str, object]:
    try:
        return "ok", schema.load(body)
    except ValidationError as error:
        return "error", error.messages


GOOD = {"task_ref": "t_1", "worker_id": "w-1", "label": "cat", "time_spent_ms": 1200}
ODD_VALUES = [
    None,
    True,
    0,
    -1,
    86_400_001,
    86_400_000,
    1.5,
    "12",
    "",
    "x" * 64,
    "x" * 65,
    "x" * 256,
    "a\x00b",
    "a\ud800b",
    [],
    {},
]


def _random_row(rng: random.Random) -> object:
    if rng.random() < 0.05:
        return rng.choice(["row", 7, None, []])
    row = dict(GOOD)
    for _ in range(rng.randint(0, 2)):
        action = rng.random()
        key = rng.choice([*GOOD, "extra"])
        if action < 0.3:
            row.pop(key, None)
        else:
            row[key] = rng.choice(ODD_VALUES)
    return row


def test_random_requests_load_the_same_through_both():
    rng = random.Random(7)
    outcomes = set()
    for _ in range(3000):
        rows = [_random_row(rng) for _ in range(rng.randint(0, 6))]
        body = {"answers": rows} if rng.random() < 0.97 else {"answers": "not a list"}
        fast, reference = _load(FastRequest(), body), _load(SchemaRequest(), body)
        assert fast == reference, body
        outcomes.add(fast[0])
    assert outcomes == {"ok", "error"}


def test_well_formed_rows_skip_the_row_schema():
    rows = [GOOD, {"task_ref": "t_2", "worker_id": "w-2", "label": "dog"}]
    with mock.patch.object(AnswerRowSchema, "load", side_effect=AssertionError("slow path")):
        loaded = FastRequest().load({"answers": rows})
    assert loaded["answers"] == [GOOD, {**rows[1], "time_spent_ms": None}]


def test_one_bad_row_reports_like_the_schema():
    rows = [GOOD, {**GOOD, "label": ""}, {**GOOD, "time_spent_ms": -5}]
    with pytest.raises(ValidationError) as error:
        FastRequest().load({"answers": rows})
    assert error.value.messages == {
        "answers": {
            1: {"label": ["Length must be between 1 and 255."]},
            2: {
                "time_spent_ms": [
                    "Must be greater than or equal to 0 and less than or equal to 86400000."
                ]
            },
        }
    }


class WithHook(Schema):
    name = fields.String(required=True)

    @post_load
    def shout(self, data: dict, **kwargs: object) -> dict:
        return {"name": data["name"].upper()}


class WithEmail(Schema):
    email = fields.Email(required=True)


@pytest.mark.parametrize("schema", [WithHook, WithEmail])
def test_schemas_the_plan_cannot_stand_for_always_use_marshmallow(schema):
    field = BulkRows(schema)
    assert field._plan is None
    row = {"name": "ann"} if schema is WithHook else {"email": "not an address"}
    reference = fields.List(fields.Nested(schema))
    try:
        expected = ("ok", reference.deserialize([row]))
    except ValidationError as error:
        expected = ("error", error.messages)
    try:
        got = ("ok", field.deserialize([row]))
    except ValidationError as error:
        got = ("error", error.messages)
    assert got == expected
