"""INSERTs of many catalog rows at once: the statement compiled once per dialect, each distinct
value bound once, the rows handed to the driver's executemany.

An index of 15,000 versions spent 0.5 CPU-seconds of its sync in SQLAlchemy's per-row work
(building a parameter dict per row and running every bind processor on every value: the same
`now` timestamp 45,000 times, a chart's shared keyword lists once per version). Here a row is a
tuple of plain values; the column types' own bind processors (the ones SQLAlchemy would run)
convert each distinct value once, and the SQL is the one SQLAlchemy compiles for the dialect,
so SQLite and PostgreSQL store exactly what `session.execute(insert(table), rows)` stores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

Processor = Callable[[Any], Any]


class _Memo:
    """One column's bind processor, run once per distinct value: hashable values by type and
    value (1, 1.0 and True are equal keys), others (JSON lists, shared between a chart's
    versions) by identity."""

    __slots__ = ("by_id", "by_value", "process")

    def __init__(self, process: Processor) -> None:
        self.process = process
        self.by_value: dict[Any, Any] = {}
        # The value itself is kept beside its result, so its id cannot be reused meanwhile.
        self.by_id: dict[int, tuple[Any, Any]] = {}

    def __call__(self, value: Any) -> Any:
        if value is None or isinstance(value, list | dict):
            if value is None:
                return self.process(value)
            hit = self.by_id.get(id(value))
            if hit is None:
                hit = self.by_id[id(value)] = (value, self.process(value))
            return hit[1]
        key = (type(value), value)
        try:
            return self.by_value[key]
        except KeyError:
            result = self.by_value[key] = self.process(value)
            return result


class BulkInsert:
    """INSERT INTO `table` of every one of its columns, rows given as tuples in `columns`
    order. Every column must be given: the driver runs no Python-side column defaults."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        missing = set(table.columns.keys()) - set(columns)
        if missing or len(set(columns)) != len(columns):
            raise ValueError(f"{table.name}: give every column once (missing {sorted(missing)})")
        self.table = table
        self.columns = tuple(columns)
        self._compiled: dict[str, tuple[str, list[int]]] = {}

    def _compile(self, dialect: Dialect) -> tuple[str, list[int]]:
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            statement = insert(self.table).compile(dialect=dialect, column_keys=list(self.columns))
            if not statement.positional or statement.positiontup is None:
                raise ValueError(f"{dialect.name}: a positional paramstyle is expected")
            order = [self.columns.index(name) for name in statement.positiontup]
            compiled = self._compiled[dialect.name] = (statement.string, order)
        return compiled

    def processors(self, dialect: Dialect) -> list[Processor | None]:
        """Per column, the bind processor SQLAlchemy would run (None: the value goes as is)."""
        result: list[Processor | None] = []
        for name in self.columns:
            type_ = self.table.c[name].type
            process = type_.dialect_impl(dialect).bind_processor(dialect)
            result.append(None if process is None else _Memo(process))
        return result

    async def run(
        self, session: AsyncSession, rows: list[tuple[Any, ...]], chunk: int = 2000
    ) -> None:
        """Insert `rows` (plain values; this binds them) in executemany calls of `chunk`."""
        if not rows:
            return
        connection = await session.connection()
        dialect = connection.dialect
        sql, order = self._compile(dialect)
        processors = self.processors(dialect)
        converters = [(i, processors[i]) for i in order]
        for start in range(0, len(rows), chunk):
            bound = [
                tuple(row[i] if process is None else process(row[i]) for i, process in converters)
                for row in rows[start : start + chunk]
            ]
            await connection.exec_driver_sql(sql, bound)
