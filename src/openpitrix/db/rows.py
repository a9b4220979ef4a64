"""Row lookups and inserts shared by the domain services."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

from pydantic_core import PydanticUndefined
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import SQLModel

from openpitrix.db.engine import insert_at_commit
from openpitrix.errors import NotFound

T = TypeVar("T")


async def get_or_404(session: AsyncSession, model: type[T], ident: Any, kind: str) -> T:
    """The row with this primary key, or a NotFound naming `kind` (as the API shows it)."""
    row = await session.get(model, ident)
    if row is None:
        raise NotFound(kind, str(ident))
    return row


def add_row(session: AsyncSession, model: type[SQLModel], **values: Any) -> None:
    """Add a row of `model` (a table model) that no later statement of the transaction reads
    back: the model's defaults filled in as its constructor would, and inserted with the
    transaction's other rows of its table in one statement as it commits
    (`db.engine.insert_at_commit`), where an ORM object per row cost ~60-80 us to build and
    more to flush. Rows of tables with foreign keys between them must be added parent first:
    the tables' statements run in the order their first rows were added, and before the
    commit's own flush, so a parent added as an ORM object must have been flushed already.
    Where the session cannot (not one of a `Database`) the row is added as an ORM object."""
    row = {**values}
    for name, default, factory in _defaults(model):
        if name not in row:
            row[name] = factory() if factory is not None else default
    table: Table = model.__table__  # type: ignore[attr-defined]
    if not insert_at_commit(session, table, row):
        session.add(model(**row))


@cache
def _defaults(model: type[SQLModel]) -> tuple[tuple[str, Any, Callable[[], Any] | None], ...]:
    defaults: list[tuple[str, Any, Callable[[], Any] | None]] = []
    for name, field in model.model_fields.items():
        if field.default_factory is not None:
            if field.default_factory_takes_validated_data:
                raise TypeError(f"{model.__name__}.{name}: a default made from the row's data")
            factory: Callable[[], Any] = field.default_factory  # type: ignore[assignment]
            defaults.append((name, None, factory))
        elif field.default is not PydanticUndefined:
            defaults.append((name, field.default, None))
    return tuple(defaults)
