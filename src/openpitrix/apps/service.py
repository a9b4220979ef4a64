"""Catalog reads: apps and their versions."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.apps.models import App, AppVersion
from openpitrix.apps.schemas import AppRead, AppVersionRead
from openpitrix.db.listing import ListQuery, ListSpec, paginate
from openpitrix.errors import NotFound

DELETED = "deleted"

APP_LIST = ListSpec(
    sort_keys={
        "create_time": col(App.create_time),
        "update_time": col(App.update_time),
        "status_time": col(App.status_time),
        "name": col(App.name),
    },
    default_sort="create_time",
    id_columns=[col(App.app_id)],
    text_columns=[col(App.name), col(App.description)],
)
VERSION_LIST = ListSpec(
    sort_keys={
        "create_time": col(AppVersion.create_time),
        "update_time": col(AppVersion.update_time),
        "created": col(AppVersion.created),
        "version": col(AppVersion.version),
        "name": col(AppVersion.name),
    },
    default_sort="created",
    id_columns=[col(AppVersion.version_id)],
    text_columns=[
        col(AppVersion.version),
        col(AppVersion.description),
        col(AppVersion.app_version),
    ],
)


async def list_apps(
    session: AsyncSession,
    query: ListQuery,
    *,
    repo_id: Sequence[str] = (),
    app_id: Sequence[str] = (),
    name: Sequence[str] = (),
    status: Sequence[str] = (),
) -> tuple[int, list[AppRead]]:
    stmt = select(App)
    for column, values in (
        (col(App.repo_id), repo_id),
        (col(App.app_id), app_id),
        (col(App.name), name),
    ):
        if values:
            stmt = stmt.where(column.in_(values))
    stmt = (
        stmt.where(col(App.status).in_(status))
        if status
        else stmt.where(col(App.status) != DELETED)
    )
    total, rows = await paginate(session, stmt, APP_LIST, query)
    return total, [AppRead.model_validate(r) for r in rows]


async def get_app(session: AsyncSession, app_id: str) -> AppRead:
    app = await session.get(App, app_id)
    if app is None:
        raise NotFound("app", app_id)
    return AppRead.model_validate(app)


async def list_versions(
    session: AsyncSession,
    app_id: str,
    query: ListQuery,
    *,
    status: Sequence[str] = (),
    version: Sequence[str] = (),
) -> tuple[int, list[AppVersionRead]]:
    await get_app(session, app_id)
    stmt = select(AppVersion).where(col(AppVersion.app_id) == app_id)
    if version:
        stmt = stmt.where(col(AppVersion.version).in_(version))
    stmt = (
        stmt.where(col(AppVersion.status).in_(status))
        if status
        else stmt.where(col(AppVersion.status) != DELETED)
    )
    total, rows = await paginate(session, stmt, VERSION_LIST, query)
    return total, [AppVersionRead.model_validate(r) for r in rows]


async def get_version(session: AsyncSession, version_id: str) -> AppVersionRead:
    row = await session.get(AppVersion, version_id)
    if row is None:
        raise NotFound("app version", version_id)
    return AppVersionRead.model_validate(row)
