"""A field for the rows of a bulk request, checked quickly when they are well formed.

marshmallow spends tens of microseconds on each row of a nested list, which is most
of a bulk submission's time in Python. `BulkRows` first checks each row against a
plan drawn from the row schema (keys, types, lengths, ranges, storable text); when
every row passes, the rows are taken as loaded. A single row that does not pass
sends the whole list through the schema, so every error is reported exactly as the
schema reports it. Only flat schemas of strings and integers get a plan; any other
schema always goes through marshmallow. A string with a NUL character or an unpaired
surrogate always goes through the schema too (`Text` refuses it; a plain String may
accept it).
"""

from dataclasses import dataclass
from typing import Any

from marshmallow import Schema, fields, missing, validate

from orchestrator.api.common import Text
from orchestrator.db import is_storable_text


@dataclass(frozen=True)
class _Check:
    name: str
    key: str
    kind: type
    required: bool
    allow_none: bool
    default: Any
    low: int | None
    high: int | None


def _bounds(field: fields.Field) -> tuple[int | None, int | None] | None:
    """The inclusive bounds of a field's Length or Range validators; None if it has others."""
    low: int | None = None
    high: int | None = None
    for validator in field.validators:
        if isinstance(validator, validate.Length) and validator.equal is None:
            low, high = validator.min, validator.max
        elif (
            isinstance(validator, validate.Range)
            and validator.min_inclusive
            and validator.max_inclusive
        ):
            low, high = validator.min, validator.max
        else:
            return None
    return low, high


def _plan(schema: Schema) -> list[_Check] | None:
    """The checks that stand for `schema` on a well-formed row, or None if it has no plan."""
    if any(schema._hooks.values()):  # noqa: SLF001 - pre/post hooks need marshmallow
        return None
    checks = []
    for name, field in schema.load_fields.items():
        if type(field) is fields.Integer and not field.strict:
            kind: type = int
        elif type(field) in (fields.String, Text):
            kind = str
        else:
            return None
        bounds = _bounds(field)
        if bounds is None or callable(field.load_default):
            return None
        checks.append(
            _Check(
                name=field.attribute or name,
                key=field.data_key or name,
                kind=kind,
                required=field.required,
                allow_none=field.allow_none,
                default=field.load_default,
                low=bounds[0],
                high=bounds[1],
            )
        )
    return checks


class BulkRows(fields.List):
    """A list of `schema` rows; well-formed rows skip marshmallow (see the module)."""

    def __init__(self, schema: type[Schema], **kwargs: Any) -> None:
        super().__init__(fields.Nested(schema), **kwargs)
        self._plan = _plan(schema())
        self._keys = None if self._plan is None else {check.key for check in self._plan}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> Any:
        if self._plan is not None and type(value) is list:
            loaded = []
            for row in value:
                fast = self._load_fast(row)
                if fast is None:
                    break
                loaded.append(fast)
            else:
                return loaded
        return super()._deserialize(value, attr, data, **kwargs)

    def _load_fast(self, row: Any) -> dict[str, Any] | None:
        """The loaded row, or None if it needs the schema (it may well be invalid)."""
        assert self._plan is not None and self._keys is not None
        if type(row) is not dict or not row.keys() <= self._keys:
            return None
        loaded: dict[str, Any] = {}
        for check in self._plan:
            value = row.get(check.key, missing)
            if value is missing:
                if check.required:
                    return None
                if check.default is not missing:
                    loaded[check.name] = check.default
                continue
            if value is None:
                if not check.allow_none:
                    return None
                loaded[check.name] = None
                continue
            if type(value) is not check.kind:
                return None
            size = value
            if check.kind is str:
                if not is_storable_text(value):
                    return None
                size = len(value)
            if (check.low is not None and size < check.low) or (
                check.high is not None and size > check.high
            ):
                return None
            loaded[check.name] = value
        return loaded
