"""The list conventions in SQL: whitelisted sort keys, search_word, limit/offset, total count."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    RowMapping,
    Select,
    String,
    bindparam,
    func,
    or_,
    select,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped

from openpitrix.db.reads import Prepared, Reads, Row
from openpitrix.errors import BadRequest

T = TypeVar("T")

MAX_LIMIT = 200
# Offsets beyond this are refused (400) before they reach SQL: SQLite and PostgreSQL take a
# signed 64-bit offset and overflow past it; 2**53 - 1 is also the largest integer a
# JavaScript client can send exactly.
MAX_OFFSET = 2**53 - 1


@dataclass(frozen=True)
class ListQuery:
    limit: int = 20
    offset: int = 0
    sort_key: str | None = None
    reverse: bool = True
    search_word: str | None = None


@dataclass(frozen=True)
class ListSpec:
    """What one resource's list may sort and search by."""

    sort_keys: Mapping[str, Mapped[Any]]
    default_sort: str
    id_columns: Sequence[Mapped[Any]]
    text_columns: Sequence[Mapped[Any]]


def search_clause(spec: ListSpec, word: str) -> ColumnElement[bool]:
    word = word.strip()
    clauses: list[ColumnElement[bool]] = [col == word for col in spec.id_columns]
    # Both sides are lowered by the database: lowering the word in Python while SQLite's
    # lower() only folds ASCII made non-ASCII text unfindable even when typed exactly.
    clauses += [col.icontains(word, autoescape=True) for col in spec.text_columns]
    return or_(*clauses)


def _sort_column(spec: ListSpec, query: ListQuery) -> tuple[str, Mapped[Any]]:
    sort_name = query.sort_key or spec.default_sort
    sort_col = spec.sort_keys.get(sort_name)
    if sort_col is None:
        raise BadRequest(
            f"unknown sort_key {sort_name!r}",
            code="invalid_sort_key",
            details={"allowed": sorted(spec.sort_keys)},
        )
    return sort_name, sort_col


def _page_statements(
    stmt: Select[Any],
    spec: ListSpec,
    query: ListQuery,
    *,
    search: ColumnElement[bool] | None = None,
    limit: Any = None,
    offset: Any = None,
) -> tuple[Select[Any], Select[Any]]:
    """The count of every matching row, and the page."""
    _, sort_col = _sort_column(spec, query)
    if search is not None:
        stmt = stmt.where(search)
    elif query.search_word and query.search_word.strip():
        stmt = stmt.where(search_clause(spec, query.search_word))
    count = select(func.count()).select_from(stmt.subquery())
    order = sort_col.desc() if query.reverse else sort_col.asc()
    if getattr(getattr(sort_col, "expression", None), "nullable", False):
        # Rows without a value (a chart version with no `created`) go last either way; left
        # to the database, PostgreSQL and SQLite would put them at opposite ends.
        order = order.nulls_last()
    # A unique tie-breaker keeps pages stable when many rows share the sort value.
    tie = spec.id_columns[0]
    tie_order = tie.desc() if query.reverse else tie.asc()
    return count, stmt.order_by(order, tie_order).limit(
        query.limit if limit is None else limit
    ).offset(query.offset if offset is None else offset)


async def paginate(
    session: AsyncSession, stmt: Select[T], spec: ListSpec, query: ListQuery
) -> tuple[int, Sequence[T]]:
    """A page of the entities `stmt` selects, and the count of all of them."""
    count, page = _page_statements(stmt, spec, query)
    total = (await session.execute(count)).scalar_one()
    rows = (await session.execute(page)).scalars().all()
    return int(total), rows


async def paginate_rows(
    session: AsyncSession, stmt: Select[Any], spec: ListSpec, query: ListQuery
) -> tuple[int, Sequence[RowMapping]]:
    """`paginate` for a select of columns: the page as row mappings, no ORM objects (what hot
    lists use: loading entities cost more than the SQL)."""
    count, page = _page_statements(stmt, spec, query)
    total = (await session.execute(count)).scalar_one()
    rows = (await session.execute(page)).mappings().all()
    return int(total), rows


TOTAL = "openpitrix_total_count"


def _with_total(
    stmt: Select[Any], spec: ListSpec, query: ListQuery, **bound: Any
) -> tuple[Select[Any], Select[Any]]:
    count, page = _page_statements(stmt, spec, query, **bound)
    return count, page.add_columns(count.correlate(None).scalar_subquery().label(TOTAL))


async def _total_and_rows(
    rows: list[Row], query: ListQuery, read_count: Callable[[], Awaitable[list[list[Row]]]]
) -> tuple[int, list[Row]]:
    """The total from the page's first row (its column dropped from every row); only a page
    past the last row has none, and then `read_count` reads it, unless the page is the first."""
    if rows:
        total = rows[0][TOTAL]
        for row in rows:
            del row[TOTAL]
        return int(total), rows
    if query.offset == 0:
        return 0, rows
    ((counted,),) = await read_count()
    return int(next(iter(counted.values()))), rows


async def read_page(
    reads: Reads, stmt: Select[Any], spec: ListSpec, query: ListQuery
) -> tuple[int, list[Row]]:
    """`paginate_rows` for the hot lists, on `db.reads` (no session): the page as dicts of the
    selected columns. The count rides along with the page as an uncorrelated scalar subquery
    (computed once, in the same statement: one round trip and one snapshot); only a page past
    the last row needs a second statement for it."""
    count, paged = _with_total(stmt, spec, query)
    (rows,) = await reads.fetch(paged)
    return await _total_and_rows(rows, query, lambda: reads.fetch(count))


async def read_rows(
    reads: Reads, first: Select[Any], stmt: Select[Any], spec: ListSpec, query: ListQuery
) -> tuple[list[Row], tuple[int, list[Row]]]:
    """`first`'s rows and `read_page`'s page, in one read (a check the page depends on)."""
    count, paged = _with_total(stmt, spec, query)
    first_rows, rows = await reads.fetch(first, paged)
    return first_rows, await _total_and_rows(rows, query, lambda: reads.fetch(count))


# --- prepared pages (db.reads.prepare) -------------------------------------------------------


def _searched(query: ListQuery) -> str:
    return query.search_word.strip() if query.search_word else ""


def _like_escaped(word: str) -> str:
    """What SQLAlchemy's `autoescape=True` binds: `/` escapes itself, `%` and `_`."""
    return word.replace("/", "//").replace("%", "/%").replace("_", "/_")


def _bound_search_clause(spec: ListSpec, dialect: str) -> ColumnElement[bool]:
    """`search_clause` with the word as bind parameters: the same matches.

    On SQLite without `lower()` on either side: SQLite's LIKE already ignores case exactly as
    far as its lower() folds it (ASCII letters), so the matches are the same, and a search
    scans every visible row, where two lower() calls a row were a third of its time."""
    word = bindparam("search_word", type_=String)
    like = bindparam("search_like", type_=String)
    clauses: list[ColumnElement[bool]] = [col == word for col in spec.id_columns]
    if dialect == "sqlite":
        clauses += [col.contains(like, escape="/") for col in spec.text_columns]
    else:
        clauses += [col.icontains(like, escape="/") for col in spec.text_columns]
    return or_(*clauses)


def page_shape(spec: ListSpec, query: ListQuery) -> tuple[str, bool, bool]:
    """What of a list's parameters changes its statement (sort, order, searched or not); 400
    for an unknown sort key."""
    sort_name, _ = _sort_column(spec, query)
    return sort_name, query.reverse, bool(_searched(query))


def page_values(query: ListQuery) -> dict[str, Any]:
    """The list parameters' bind values of a prepared page."""
    word = _searched(query)
    values: dict[str, Any] = {"limit": query.limit, "offset": query.offset}
    if word:
        values["search_word"] = word
        values["search_like"] = _like_escaped(word)
    return values


def _prepared_page(
    reads: Reads,
    key: Hashable,
    build: Callable[[], Select[Any]],
    spec: ListSpec,
    query: ListQuery,
) -> tuple[Prepared, Callable[[], Prepared]]:
    """The page statement of this shape (with the total), and a getter of its count's. The
    page's rows go straight into a JSON body (`Reads.prepare(json_body=True)`)."""
    searched = bool(_searched(query))

    def statements() -> tuple[Select[Any], Select[Any]]:
        # Built only when the shape is not prepared yet: most requests only look it up.
        return _with_total(
            build(),
            spec,
            query,
            search=_bound_search_clause(spec, reads.dialect_name) if searched else None,
            limit=bindparam("limit", type_=BigInteger),
            offset=bindparam("offset", type_=BigInteger),
        )

    page = reads.prepare(("page", key), lambda: statements()[1], slow=searched, json_body=True)

    def count() -> Prepared:
        return reads.prepare(("count", key), lambda: statements()[0], slow=searched)

    return page, count


async def read_prepared_page(
    reads: Reads,
    key: Hashable,
    build: Callable[[], Select[Any]],
    values: Mapping[str, Any],
    spec: ListSpec,
    query: ListQuery,
    *,
    first: tuple[Prepared, Mapping[str, Any]] | None = None,
) -> tuple[list[Row], tuple[int, list[Row]]]:
    """`read_page` (or, with `first`, `read_rows`) of a statement prepared once per shape.

    `key` names the shape of `build`'s statement: everything of it that is not a bind
    parameter (the caller's scope, which filters, how many values each); `values` are the
    request's own (the caller's scope values, the filters'). The list parameters' shape and
    values are added here."""
    shape = (key, page_shape(spec, query))
    page, count = _prepared_page(reads, shape, build, spec, query)
    values = {**values, **page_values(query)}
    if first is None:
        (rows,) = await reads.run((page, values))
        first_rows: list[Row] = []
    else:
        first_rows, rows = await reads.run(first, (page, values))
    return first_rows, await _total_and_rows(rows, query, lambda: reads.run((count(), values)))
