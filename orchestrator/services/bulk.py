"""Multi-row writes: one statement for any number of rows, on both backends.

On PostgreSQL the rows travel as one array per column, spread out again by
`unnest`: the statement text stays short (psycopg parses and caches it once, where
a VALUES list of thousands of rows costs more to parse than to run) and the server
runs one statement. SQLite runs in-process, where plain executemany is as fast.

Callers write the statement once against a `source` whose columns are the rows'
fields: the unnest's columns on PostgreSQL, bind parameters on SQLite.
"""

from collections.abc import Callable, Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session


def _is_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _unnest(types: Mapping[str, Any], rows: Sequence[Mapping[str, Any]]) -> Any:
    arrays = [
        sa.bindparam(f"rows_{name}", [row[name] for row in rows], type_=postgresql.ARRAY(type_))
        for name, type_ in types.items()
    ]
    return sa.func.unnest(*arrays).table_valued(*types).render_derived(name="source")


def among(session: Session, column: Any, values: Iterable[Any]) -> sa.ColumnElement[bool]:
    """`column IN (values)`; on PostgreSQL as `= ANY` of one array parameter.

    One array keeps the statement short and the same whatever the count, so the
    driver caches it and the server parses it once, where thousands of separate
    parameters would make a new statement text every time.
    """
    values = list(values)
    if _is_postgresql(session):
        array = sa.bindparam(None, values, type_=postgresql.ARRAY(column.type))
        return cast(sa.ColumnElement[bool], column == sa.any_(array))
    return cast(sa.ColumnElement[bool], column.in_(values))


def insert_rows(
    session: Session,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    finish: Callable[[Any], Any] = lambda statement: statement,
) -> sa.Result[Any]:
    """Insert `rows` (dicts with the same keys) into `table` in one statement.

    `finish` gets the dialect's insert (`on_conflict_do_nothing`, `returning`...) and
    returns the statement to run. Returned rows come in no particular order: return a
    unique column to match them with the rows.
    """
    names = list(rows[0])
    if _is_postgresql(session):
        # A field with one value in every row (a project id, a timestamp) is sent once.
        first = rows[0]
        same = {name for name in names[1:] if all(row[name] == first[name] for row in rows)}
        source = _unnest({name: table.c[name].type for name in names if name not in same}, rows)
        columns = [
            sa.bindparam(f"one_{name}", first[name], type_=table.c[name].type)
            if name in same
            else source.c[name]
            for name in names
        ]
        insert = postgresql.insert(table).from_select(names, sa.select(*columns))
        return session.execute(finish(insert))
    return session.execute(finish(sqlite.insert(table)), list(rows))


def update_rows(
    session: Session,
    table: sa.Table,
    rows: Sequence[Mapping[str, Any]],
    *,
    types: Mapping[str, Any],
    where: Callable[[Any], sa.ColumnElement[bool]],
    values: Callable[[Any], Mapping[str, Any]],
) -> None:
    """Update `table` once per row in one statement.

    Args:
        session: The unit of work.
        table: The table updated.
        rows: Dicts with the keys of `types`.
        types: Each row field's SQL type.
        where: Given the source's columns (by field name), the condition picking a row's target.
        values: Given the source's columns, the SET clause.
    """
    if not rows:
        return
    if _is_postgresql(session):
        source = _unnest(types, rows).c
        session.execute(sa.update(table).where(where(source)).values(values(source)))
        return
    params = SimpleNamespace(
        **{name: sa.bindparam(f"row_{name}", type_=type_) for name, type_ in types.items()}
    )
    session.execute(
        sa.update(table).where(where(params)).values(values(params)),
        [{f"row_{name}": row[name] for name in types} for row in rows],
    )
