"""INSERTs of many catalog rows at once: the statement compiled once per dialect, each distinct
object bound once, the rows handed to the driver's executemany.

An index of 15,000 versions spent 0.5 CPU-seconds of its sync in SQLAlchemy's per-row work
(building a parameter dict per row and running every bind processor on every value: the same
`now` timestamp 45,000 times, a chart's shared keyword lists once per version). Here a row is a
tuple of plain values; the column types' own bind processors (the ones SQLAlchemy would run)
convert each distinct object once, and the SQL is the one SQLAlchemy compiles for the dialect,
so SQLite and PostgreSQL store exactly what `session.execute(insert(table), rows)` stores.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Table, insert
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession

Processor = Callable[[Any], Any]


class BulkInsert:
    """INSERT INTO `table` of every one of its columns, rows given as tuples in `columns`
    order. Every column must be given: the driver runs no Python-side column defaults."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        missing = set(table.columns.keys()) - set(columns)
        if missing or len(set(columns)) != len(columns):
            raise ValueError(f"{table.name}: give every column once (missing {sorted(missing)})")
        self.table = table
        self.columns = tuple(columns)
        self._compiled: dict[tuple[str, str], tuple[str, list[int]]] = {}

    def _compile(self, dialect: Dialect) -> tuple[str, list[int]]:
        key = (dialect.name, dialect.driver)
        compiled = self._compiled.get(key)
        if compiled is None:
            statement = insert(self.table).compile(dialect=dialect, column_keys=list(self.columns))
            if not statement.positional or statement.positiontup is None:
                raise ValueError(f"{dialect.name}: a positional paramstyle is expected")
            order = [self.columns.index(name) for name in statement.positiontup]
            compiled = self._compiled[key] = (statement.string, order)
        return compiled

    def processors(self, dialect: Dialect) -> list[Processor | None]:
        """Per column, the bind processor SQLAlchemy would run (None: the value goes as is)."""
        result: list[Processor | None] = []
        for name in self.columns:
            type_ = self.table.c[name].type
            result.append(type_.dialect_impl(dialect).bind_processor(dialect))
        return result

    def _bind(
        self, rows: list[tuple[Any, ...]], processors: list[Processor | None], order: list[int]
    ) -> list[tuple[Any, ...]]:
        """The rows with their values bound, in the statement's parameter order. Column by
        column, so the loops over rows run in C, and each distinct object of a column is
        bound once: the sync's one `now` for every row, a chart's keyword list shared by its
        versions once per chart."""
        columns: list[tuple[Any, ...]] = list(zip(*rows, strict=True))
        for i, process in enumerate(processors):
            if process is None:
                continue
            column = columns[i]
            keys = list(map(id, column))
            # The objects stay alive in `column` meanwhile, so no two share an id.
            distinct = dict(zip(keys, column, strict=True))
            bound = {key: process(value) for key, value in distinct.items()}
            columns[i] = tuple(map(bound.__getitem__, keys))
        return list(zip(*(columns[i] for i in order), strict=True))

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
        for start in range(0, len(rows), chunk):
            bound = self._bind(rows[start : start + chunk], processors, order)
            await connection.exec_driver_sql(sql, bound)
