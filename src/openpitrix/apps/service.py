"""Catalog reads: apps and their versions, as far as the caller may see them.

A caller sees the apps its scope covers, plus the published (active) apps and versions of
public repos.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, Select, String, and_, bindparam, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix.apps.models import App, AppVersion
from openpitrix.apps.schemas import AppRead, AppVersionRead
from openpitrix.db.listing import ListQuery, ListSpec, read_prepared_page
from openpitrix.db.reads import Reads, Row
from openpitrix.errors import NotFound
from openpitrix.iam.access import Access, Scope, scope_clause
from openpitrix.repos.models import Repo
from openpitrix.repos.service import is_public, public_repo_clause

DELETED = "deleted"
PUBLISHED = "active"


def _public_repo_ids() -> Select[str]:
    return select(col(Repo.repo_id)).where(public_repo_clause())


def _published_in_public_repo(model: type[App] | type[AppVersion]) -> ColumnElement[bool]:
    return and_(col(model.status) == PUBLISHED, col(model.repo_id).in_(_public_repo_ids()))


# SQL expressions are immutable: the parts that do not depend on the caller are built once,
# not on every request (building them was a fifth of a list request's Python time).
_PUBLIC: dict[type[App] | type[AppVersion], ColumnElement[bool]] = {
    App: _published_in_public_repo(App),
    AppVersion: _published_in_public_repo(AppVersion),
}
_NOT_DELETED = {App: col(App.status) != DELETED, AppVersion: col(AppVersion.status) != DELETED}


def _visible(scope: Scope, model: type[App] | type[AppVersion]) -> ColumnElement[bool]:
    """What a caller of this scope sees, its own values bound (Access.clause_params)."""
    return or_(scope_clause(scope, col(model.owner), col(model.owner_path)), _PUBLIC[model])


def _in(column: Any, name: str, count: int) -> ColumnElement[bool]:
    """`column IN (:name_0, ...)`: one bind parameter per value (their count is part of a
    prepared statement's shape), as `_bound` names them."""
    return col(column).in_([bindparam(f"{name}_{i}", type_=String) for i in range(count)])


def _bound(values: dict[str, object], name: str, given: Sequence[str]) -> None:
    for i, value in enumerate(given):
        values[f"{name}_{i}"] = str(value)  # plain str: a StrEnum is not every driver's str


async def _check_visible(
    session: AsyncSession, access: Access, row: App | AppVersion, kind: str, ident: str
) -> None:
    if access.covers(row.owner, row.owner_path):
        return
    public = False
    if row.status == PUBLISHED:
        repo = await session.get(Repo, row.repo_id)
        public = repo is not None and is_public(repo)
    access.check_visible(kind, ident, row.owner, row.owner_path, public=public)


# Lists select the columns their read model shows, not ORM objects (see db.listing.paginate_rows).
_APP_COLUMNS = [App.__table__.c[name] for name in AppRead.model_fields]  # type: ignore[attr-defined]
_VERSION_COLUMNS = [AppVersion.__table__.c[name] for name in AppVersionRead.model_fields]  # type: ignore[attr-defined]

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
        "version": col(AppVersion.version_sort),  # semantic order: 1.9 < 1.10.0-rc.1 < 1.10.0
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
    reads: Reads,
    query: ListQuery,
    access: Access,
    *,
    repo_id: Sequence[str] = (),
    app_id: Sequence[str] = (),
    name: Sequence[str] = (),
    status: Sequence[str] = (),
    package_kind: Sequence[str] = (),
) -> tuple[int, list[Row]]:
    """The page's rows hold AppRead's fields, in its order (see api.responses.page_response).

    The statement is prepared once per shape (db.reads.prepare): the caller's scope and how
    many values each filter has; the values themselves are bound."""
    filters = (repo_id, app_id, name, status, package_kind)
    shape = ("apps", access.scope, *(len(values) for values in filters))
    values: dict[str, object] = access.clause_params()
    for label, given in zip(_APP_FILTERS, filters, strict=True):
        _bound(values, label, given)

    def build() -> Select[Any]:
        stmt = select(*_APP_COLUMNS).where(_visible(access.scope, App))
        if package_kind:
            stmt = stmt.where(
                select(AppVersion.version_id)  # type: ignore[call-overload]
                .where(
                    col(AppVersion.app_id) == col(App.app_id),
                    _in(AppVersion.package_kind, "package_kind", len(package_kind)),
                    col(AppVersion.status) != DELETED,
                )
                .exists()
            )
        for column, label, given in (
            (App.repo_id, "repo_id", repo_id),
            (App.app_id, "app_id", app_id),
            (App.name, "name", name),
        ):
            if given:
                stmt = stmt.where(_in(column, label, len(given)))
        if status:
            return stmt.where(_in(App.status, "status", len(status)))
        return stmt.where(_NOT_DELETED[App])

    _, page = await read_prepared_page(reads, shape, build, values, APP_LIST, query)
    return page


_APP_FILTERS = ("repo_id", "app_id", "name", "status", "package_kind")


async def get_app(session: AsyncSession, app_id: str, access: Access) -> AppRead:
    app = await session.get(App, app_id)
    if app is None:
        raise NotFound("app", app_id)
    await _check_visible(session, access, app, "app", app_id)
    return AppRead.model_validate(app)


# What `get_app` checks of an app before its versions are listed, in one statement. Whether
# its repo is public is one lookup of that repo (`EXISTS`): `repo_id IN (public repos)` built
# the list of every public repo on each request (20-24 us a check with 10 repos, 8 now).
_APP_CHECK: list[Any] = [
    col(App.owner),
    col(App.owner_path),
    col(App.status),
    select(col(Repo.repo_id))
    .where(col(Repo.repo_id) == col(App.repo_id), public_repo_clause())
    .exists()
    .label("in_public_repo"),
]


async def list_versions(
    reads: Reads,
    app_id: str,
    query: ListQuery,
    access: Access,
    *,
    status: Sequence[str] = (),
    version: Sequence[str] = (),
    package_kind: Sequence[str] = (),
) -> tuple[int, list[Row]]:
    """The page's rows hold AppVersionRead's fields, in its order (prepared per shape, as
    `list_apps`)."""
    filters = (status, version, package_kind)
    shape = ("app_versions", access.scope, *(len(values) for values in filters))
    values: dict[str, object] = {"app_id": app_id, **access.clause_params()}
    for label, given in zip(("status", "version", "package_kind"), filters, strict=True):
        _bound(values, label, given)

    def build() -> Select[Any]:
        stmt = select(*_VERSION_COLUMNS).where(
            col(AppVersion.app_id) == bindparam("app_id", type_=String),
            _visible(access.scope, AppVersion),
        )
        if version:
            stmt = stmt.where(_in(AppVersion.version, "version", len(version)))
        if package_kind:
            stmt = stmt.where(_in(AppVersion.package_kind, "package_kind", len(package_kind)))
        if status:
            return stmt.where(_in(AppVersion.status, "status", len(status)))
        return stmt.where(_NOT_DELETED[AppVersion])

    check = reads.prepare(
        "app_check",
        lambda: select(*_APP_CHECK).where(col(App.app_id) == bindparam("app_id", type_=String)),
    )
    # The app's check and the page in one read: the page shows only rows visible anyway, so
    # reading it before the check is known reveals nothing.
    app_rows, (total, rows) = await read_prepared_page(
        reads, shape, build, values, VERSION_LIST, query, first=(check, {"app_id": app_id})
    )
    if not app_rows:
        raise NotFound("app", app_id)
    app = app_rows[0]
    if not access.covers(app["owner"], app["owner_path"]):
        # As get_app: visible beyond the scope only when published in a public repo.
        public = app["status"] == PUBLISHED and bool(app["in_public_repo"])
        access.check_visible("app", app_id, app["owner"], app["owner_path"], public=public)
    return total, rows


async def get_version(session: AsyncSession, version_id: str, access: Access) -> AppVersionRead:
    row = await session.get(AppVersion, version_id)
    if row is None:
        raise NotFound("app version", version_id)
    await _check_visible(session, access, row, "app version", version_id)
    return AppVersionRead.model_validate(row)
