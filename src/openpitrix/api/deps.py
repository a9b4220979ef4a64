"""Request dependencies: the process platform, a unit-of-work session, list parameters.

They are `async def` though none awaits: FastAPI runs a plain `def` dependency in the thread
pool, a thread hop per dependency per request for what is an attribute read.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Annotated

from fastapi import Depends, Query, Request
from pydantic import BaseModel, Field, StringConstraints
from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix.db.listing import MAX_LIMIT, MAX_OFFSET, ListQuery
from openpitrix.db.reads import Reads
from openpitrix.platform import Platform
from openpitrix.settings import Settings


async def get_platform(request: Request) -> Platform:
    platform: Platform = request.app.state.platform
    return platform


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_session(
    platform: Annotated[Platform, Depends(get_platform)],
) -> AsyncIterator[AsyncSession]:
    """One transaction per request, committed before the response is sent."""
    async with platform.db.transaction() as session:
        yield session


async def get_read_session(
    platform: Annotated[Platform, Depends(get_platform)],
) -> AsyncIterator[AsyncSession]:
    """For GET routes: never waits behind (nor blocks) a writer, even on SQLite."""
    async with platform.db.read_session() as session:
        yield session


async def get_reads(request: Request) -> Reads:
    """For the hot lists: reads without a session (db.reads)."""
    reads: Reads = request.app.state.platform.db.reads
    return reads


_LIMIT = "Page size."
_OFFSET = "Rows to skip."
_SORT_KEY = "Field to sort by."
_REVERSE = "Descending (newest first)."
_SEARCH_WORD = "Exact id, or substring of text fields (any case)."


async def list_query(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description=_LIMIT)] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description=_OFFSET)] = 0,
    sort_key: Annotated[str | None, Query(max_length=50, description=_SORT_KEY)] = None,
    reverse: Annotated[bool, Query(description=_REVERSE)] = True,
    search_word: Annotated[str | None, Query(max_length=200, description=_SEARCH_WORD)] = None,
) -> ListQuery:
    return ListQuery(
        limit=limit, offset=offset, sort_key=sort_key, reverse=reverse, search_word=search_word
    )


PlatformDep = Annotated[Platform, Depends(get_platform)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
ReadSessionDep = Annotated[AsyncSession, Depends(get_read_session, scope="function")]
ListDep = Annotated[ListQuery, Depends(list_query)]
ReadsDep = Annotated[Reads, Depends(get_reads)]
# A repeatable exact filter (`?owner=a&owner=b`): bounded, so one request cannot send the
# database an unbounded IN list.
MAX_FILTER_VALUES = 100
FilterValue = Annotated[str, StringConstraints(max_length=200)]
Filter = Annotated[list[FilterValue] | None, Query(max_length=MAX_FILTER_VALUES)]
# The same filter as a field of a query model (api.params.QueryModel).
FilterField = Annotated[list[FilterValue] | None, Field(max_length=MAX_FILTER_VALUES)]


class ListParams(BaseModel):
    """`list_query`'s parameters as a query model's fields: a hot list's model adds its
    filters to these and is read with api.params.QueryModel."""

    limit: int = Field(20, ge=1, le=MAX_LIMIT, description=_LIMIT)
    offset: int = Field(0, ge=0, le=MAX_OFFSET, description=_OFFSET)
    sort_key: str | None = Field(None, max_length=50, description=_SORT_KEY)
    reverse: bool = Field(True, description=_REVERSE)
    search_word: str | None = Field(None, max_length=200, description=_SEARCH_WORD)

    def list_query(self) -> ListQuery:
        return ListQuery(
            limit=self.limit,
            offset=self.offset,
            sort_key=self.sort_key,
            reverse=self.reverse,
            search_word=self.search_word,
        )

    def filters(self) -> dict[str, Sequence[str]]:
        """The subclass's filters by name, each its values or none: the list service's
        keyword arguments."""
        return {
            name: getattr(self, name) or ()
            for name in type(self).model_fields
            if name not in ListParams.model_fields
        }


# `key=value` label filters, repeatable the same way.
LabelFilter = Annotated[
    list[FilterValue] | None,
    Query(max_length=MAX_FILTER_VALUES, description="key=value; repeat it."),
]
