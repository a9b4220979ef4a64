"""Apply a parsed index to the catalog: incremental upsert by digest, soft-delete what left.

Everything happens in the caller's transaction, so a crash leaves the catalog as it was and a
redelivered job simply runs again; unique keys (repo, name) and (app, version) make duplicates
impossible even if two workers ever raced.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix import ids
from openpitrix.apps.models import App, AppVersion
from openpitrix.db.types import utcnow
from openpitrix.indexer.bulk import BulkInsert
from openpitrix.repos.helm import ChartVersion, ParsedIndex, version_sort_key

DELETED = "deleted"
CHUNK = 2000

apps_t = App.__table__  # type: ignore[attr-defined]
versions_t = AppVersion.__table__  # type: ignore[attr-defined]

APP_META = ("description", "home", "icon", "keywords", "maintainers", "sources")

# Column orders of the new rows `sync_catalog` builds as tuples (the cold path: every row).
# Both tables end with the row's status, ownership and times, in this order.
_OWNED = ("status", "owner", "owner_path", "create_time", "update_time", "status_time")
INSERT_APP = BulkInsert(
    apps_t,
    (
        "app_id",
        "repo_id",
        "name",
        *APP_META,
        "latest_version",
        "latest_app_version",
        *_OWNED,
    ),
)
INSERT_VERSION = BulkInsert(
    versions_t,
    (
        "version_id",
        "app_id",
        "repo_id",
        "version",
        "version_sort",
        "name",
        "app_version",
        *APP_META,
        "digest",
        "package_url",
        "created",
        "package_kind",
        *_OWNED,
    ),
)


@dataclass
class SyncCounts:
    apps_added: int = 0
    apps_updated: int = 0
    apps_deleted: int = 0
    apps_unchanged: int = 0
    versions_added: int = 0
    versions_updated: int = 0
    versions_deleted: int = 0
    versions_unchanged: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)

    @property
    def catalog_changed(self) -> bool:
        return any(
            (
                self.apps_added,
                self.apps_updated,
                self.apps_deleted,
                self.versions_added,
                self.versions_updated,
                self.versions_deleted,
            )
        )


# PostgreSQL refuses a value longer than its bounded column and any NUL in text; either would
# fail the whole sync on every retry, so such versions are skipped like unparseable entries.
_BOUNDED = {
    name: int(versions_t.c[name].type.length)
    for name in ("name", "version", "app_version", "digest")
}
_TEXT = ("name", "version", "app_version", "description", "home", "icon", "digest", "package_url")


def _unstorable(v: ChartVersion) -> str | None:
    for field, limit in _BOUNDED.items():
        if len(getattr(v, field)) > limit:
            return f"{field} is longer than {limit} characters"
    for field in _TEXT:
        if "\x00" in getattr(v, field):
            return f"{field} contains a NUL character"
    return None


def storable(index: ParsedIndex) -> ParsedIndex:
    """The index without the versions the catalog cannot hold; those join `skipped`."""
    charts: dict[str, list[ChartVersion]] = {}
    skipped = list(index.skipped)
    for name, versions in index.charts.items():
        kept: list[ChartVersion] = []
        for v in versions:
            reason = _unstorable(v)
            if reason is None:
                kept.append(v)
            else:
                skipped.append(f"{name[:100]!r} version {v.version[:40]!r}: {reason}")
        if kept:
            charts[name] = kept
    if len(skipped) == len(index.skipped):
        return index
    count = sum(len(versions) for versions in charts.values())
    return ParsedIndex(charts=charts, version_count=count, skipped=skipped)


def _sortable_number(number: int) -> str:
    # Length first, so "10" follows "9" in plain text order.
    digits = str(number)
    return f"{len(digits):02d}{digits}"


@lru_cache(maxsize=8192)
def version_sort(version: str) -> str:
    """`version`'s semantic-version order as text, for `app_versions.version_sort`: byte order
    of these strings (PostgreSQL compares the column under the "C" collation) is
    `helm.version_sort_key` order, so 1.9 < 1.10.0-rc.1 < 1.10.0 < 1.15.3 in SQL.

    Non-semver strings sort below every semver one, by text. A pre-release sorts below its
    release; its dot-separated identifiers compare one by one (numbers numerically and below
    words), each closed by "!", which sorts below every identifier character, so a shorter
    run of identifiers sorts first.
    """
    semver, numbers, release, identifiers, text = version_sort_key(version)
    if not semver:
        return "0" + text
    core = "".join(_sortable_number(n) for n in numbers)
    if release:
        return f"1{core}1"
    pre = "".join(
        ("0" + _sortable_number(number) if kind == 0 else "1" + word) + "!"
        for kind, number, word in identifiers
    )
    return f"1{core}0{pre}"


def _app_meta(newest: ChartVersion) -> dict[str, Any]:
    return {
        "description": newest.description,
        "home": newest.home,
        "icon": newest.icon,
        "keywords": newest.keywords,
        "maintainers": newest.maintainers,
        "sources": newest.sources,
        "latest_version": newest.version,
        "latest_app_version": newest.app_version,
    }


def _version_row(v: ChartVersion) -> dict[str, Any]:
    return {
        "name": v.name,
        "app_version": v.app_version,
        "description": v.description,
        "home": v.home,
        "icon": v.icon,
        "keywords": v.keywords,
        "maintainers": v.maintainers,
        "sources": v.sources,
        "digest": v.digest,
        "package_url": v.package_url,
        "created": v.created,
        "package_kind": v.package_kind,
    }


async def _executemany(session: AsyncSession, stmt: Any, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        await session.execute(stmt, rows[start : start + CHUNK])


async def sync_catalog(
    session: AsyncSession,
    *,
    repo_id: str,
    owner: str,
    owner_path: str,
    default_status: str,
    index: ParsedIndex,
) -> SyncCounts:
    now = utcnow()
    counts = SyncCounts()
    app_cols = [apps_t.c.app_id, apps_t.c.name, apps_t.c.status, apps_t.c.latest_version]
    app_cols += [apps_t.c[name] for name in (*APP_META, "latest_app_version")]
    existing_apps = {
        row.name: row
        for row in (await session.execute(select(*app_cols).where(apps_t.c.repo_id == repo_id)))
    }
    existing_versions: dict[tuple[str, str], Any] = {
        (row.app_id, row.version): row
        for row in await session.execute(
            select(
                versions_t.c.version_id,
                versions_t.c.app_id,
                versions_t.c.version,
                versions_t.c.digest,
                versions_t.c.package_kind,
                versions_t.c.status,
            ).where(versions_t.c.repo_id == repo_id)
        )
    }

    app_inserts: list[tuple[Any, ...]] = []
    app_updates: list[dict[str, Any]] = []
    version_inserts: list[tuple[Any, ...]] = []
    version_updates: list[dict[str, Any]] = []
    seen_versions: set[tuple[str, str]] = set()
    update_app = update(apps_t).where(apps_t.c.app_id == bindparam("b_app_id"))
    update_version = update(versions_t).where(versions_t.c.version_id == bindparam("b_version_id"))

    # What every new row shares, in the INSERT_APP / INSERT_VERSION layouts.
    row_tail = (default_status, owner, owner_path, now, now, now)
    for name, versions in index.charts.items():
        newest = versions[0]
        current = existing_apps.get(name)
        if current is None:
            app_id = ids.new_id(ids.APP)
            app_inserts.append(
                (
                    app_id,
                    repo_id,
                    name,
                    newest.description,
                    newest.home,
                    newest.icon,
                    newest.keywords,
                    newest.maintainers,
                    newest.sources,
                    newest.version,
                    newest.app_version,
                    *row_tail,
                )
            )
            counts.apps_added += 1
        else:
            meta = _app_meta(newest)
            app_id = current.app_id
            revived = current.status == DELETED
            if revived or any(getattr(current, k) != v for k, v in meta.items()):
                update_row = {"b_app_id": app_id, **meta, "update_time": now}
                update_row["status"] = default_status if revived else current.status
                update_row["status_time"] = now
                app_updates.append(update_row)
                counts.apps_updated += 1
            else:
                counts.apps_unchanged += 1
        for v in versions:
            key = (app_id, v.version)
            seen_versions.add(key)
            known = existing_versions.get(key)
            if known is None:
                version_inserts.append(
                    (
                        ids.new_id(ids.APP_VERSION),
                        app_id,
                        repo_id,
                        v.version,
                        version_sort(v.version),
                        v.name,
                        v.app_version,
                        v.description,
                        v.home,
                        v.icon,
                        v.keywords,
                        v.maintainers,
                        v.sources,
                        v.digest,
                        v.package_url,
                        v.created,
                        v.package_kind,
                        *row_tail,
                    )
                )
                counts.versions_added += 1
            elif (
                known.digest != v.digest
                or known.package_kind != v.package_kind
                or known.status == DELETED
            ):
                row = {"b_version_id": known.version_id, **_version_row(v), "update_time": now}
                row["status"] = default_status if known.status == DELETED else known.status
                row["status_time"] = now
                version_updates.append(row)
                counts.versions_updated += 1
            else:
                counts.versions_unchanged += 1
        # Rows go out a batch at a time rather than all at the end, so a large index never
        # holds a row per version in memory; the apps pending go first: versions reference
        # apps by foreign key.
        if len(version_inserts) >= CHUNK:
            await INSERT_APP.run(session, app_inserts)
            await INSERT_VERSION.run(session, version_inserts)
            app_inserts.clear()
            version_inserts.clear()
        if len(version_updates) >= CHUNK:
            await _executemany(session, update_version, version_updates)
            version_updates.clear()

    gone_versions = [
        {"b_version_id": row.version_id, "status": DELETED, "status_time": now, "update_time": now}
        for key, row in existing_versions.items()
        if key not in seen_versions and row.status != DELETED
    ]
    counts.versions_deleted = len(gone_versions)
    gone_apps = [
        {"b_app_id": row.app_id, "status": DELETED, "status_time": now, "update_time": now}
        for name, row in existing_apps.items()
        if name not in index.charts and row.status != DELETED
    ]
    counts.apps_deleted = len(gone_apps)

    # Apps before versions: versions reference apps by foreign key.
    await INSERT_APP.run(session, app_inserts)
    # executemany needs one key set per call: full updates and soft deletes go separately.
    await _executemany(session, update_app, app_updates)
    await _executemany(session, update_app, gone_apps)
    await INSERT_VERSION.run(session, version_inserts)
    await _executemany(session, update_version, version_updates)
    await _executemany(session, update_version, gone_versions)
    return counts


async def delete_catalog(session: AsyncSession, repo_id: str) -> tuple[int, int]:
    """Mark every app and version of a repo deleted; returns (apps, versions) changed."""
    now = utcnow()
    values = {"status": DELETED, "status_time": now, "update_time": now}
    versions = await session.execute(
        update(versions_t)
        .where(versions_t.c.repo_id == repo_id, versions_t.c.status != DELETED)
        .values(**values)
    )
    apps = await session.execute(
        update(apps_t)
        .where(apps_t.c.repo_id == repo_id, apps_t.c.status != DELETED)
        .values(**values)
    )
    return int(apps.rowcount), int(versions.rowcount)  # type: ignore[attr-defined]
