"""Row lookups shared by the domain services."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix.errors import NotFound

T = TypeVar("T")


async def get_or_404(session: AsyncSession, model: type[T], ident: Any, kind: str) -> T:
    """The row with this primary key, or a NotFound naming `kind` (as the API shows it)."""
    row = await session.get(model, ident)
    if row is None:
        raise NotFound(kind, str(ident))
    return row
