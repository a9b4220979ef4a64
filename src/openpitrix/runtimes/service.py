"""Runtime and credential use cases.

Calls to a provider (validating a credential, claiming a namespace) happen outside any database
transaction: they take network time, and on SQLite an open write transaction would stall every
other writer meanwhile. So these use cases take the Database and run short transactions around
the provider call, like the password grant does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, delete, exists, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from openpitrix import ids
from openpitrix.apps.service import get_version
from openpitrix.crypto import SecretBox, SecretError
from openpitrix.db.engine import Database
from openpitrix.db.listing import ListQuery, ListSpec, paginate
from openpitrix.db.rows import get_or_404
from openpitrix.db.types import utcnow
from openpitrix.errors import AppError, BadRequest, Conflict, NotFound
from openpitrix.iam.access import Access, Op
from openpitrix.jobs.schemas import ErrorInfo
from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import (
    Credential,
    CredentialInvalid,
    EndpointRefused,
    Provider,
    ProviderError,
    ZoneUnavailable,
)
from openpitrix.providers.registry import Providers
from openpitrix.repos.models import Repo
from openpitrix.repos.schemas import KeyValue, parse_label_filter
from openpitrix.runtimes.models import Runtime, RuntimeCredential, RuntimeLabel
from openpitrix.runtimes.schemas import (
    CredentialCreate,
    CredentialRead,
    CredentialUpdate,
    CredentialValidate,
    CredentialValidation,
    RuntimeCreate,
    RuntimeRead,
    RuntimeStatus,
    RuntimeUpdate,
    Zones,
)

DELETED = RuntimeStatus.DELETED.value

CREDENTIAL_LIST = ListSpec(
    sort_keys={
        "create_time": col(RuntimeCredential.create_time),
        "update_time": col(RuntimeCredential.update_time),
        "name": col(RuntimeCredential.name),
    },
    default_sort="create_time",
    id_columns=[col(RuntimeCredential.credential_id)],
    text_columns=[col(RuntimeCredential.name), col(RuntimeCredential.description)],
)
RUNTIME_LIST = ListSpec(
    sort_keys={
        "create_time": col(Runtime.create_time),
        "update_time": col(Runtime.update_time),
        "status_time": col(Runtime.status_time),
        "name": col(Runtime.name),
        "zone": col(Runtime.zone),
    },
    default_sort="create_time",
    id_columns=[col(Runtime.runtime_id)],
    text_columns=[col(Runtime.name), col(Runtime.description), col(Runtime.zone)],
)


class ProviderFailed(AppError):
    """The provider could not be reached or answered with a server error: try again later."""

    status_code = 502
    code = "provider_unavailable"


def provider_error(exc: ProviderError) -> AppError:
    """A provider refusal as the API shows it."""
    if isinstance(exc, CredentialInvalid | EndpointRefused):
        return BadRequest(exc.message, code=exc.code)
    if isinstance(exc, ZoneUnavailable):
        if exc.code == "zone_not_found":
            return BadRequest(exc.message, code=exc.code)
        return Conflict(exc.message, code=exc.code)
    return ProviderFailed(exc.message, code=exc.code)


# --- credentials -------------------------------------------------------------------------------


def credential_read(row: RuntimeCredential) -> CredentialRead:
    return CredentialRead.model_validate(row, from_attributes=True)


def _parse(provider: Provider, content: str, endpoint_url: str | None) -> Credential:
    try:
        return provider.parse_credential(content, endpoint_url or "")
    except CredentialInvalid as exc:
        raise provider_error(exc) from None


async def _validate(provider: Provider, credential: Credential, policy: AddressPolicy) -> None:
    try:
        await provider.validate_credential(credential, policy)
    except ProviderError as exc:
        raise provider_error(exc) from None


async def validate_credential(
    data: CredentialValidate, policy: AddressPolicy, providers: Providers
) -> CredentialValidation:
    """Check a credential against its provider without storing it."""
    provider = providers.named(data.provider)
    try:
        credential = provider.parse_credential(
            data.content.get_secret_value(), data.endpoint_url or ""
        )
        await provider.validate_credential(credential, policy)
    except ProviderError as exc:
        return CredentialValidation(ok=False, error=ErrorInfo(code=exc.code, message=exc.message))
    return CredentialValidation(ok=True, endpoint_url=credential.endpoint_url)


async def create_credential(
    db: Database,
    data: CredentialCreate,
    access: Access,
    secrets: SecretBox,
    policy: AddressPolicy,
    providers: Providers,
) -> RuntimeCredential:
    provider = providers.named(data.provider)
    credential = _parse(provider, data.content.get_secret_value(), data.endpoint_url)
    await _validate(provider, credential, policy)
    now = utcnow()
    row = RuntimeCredential(
        credential_id=ids.new_id(ids.RUNTIME_CREDENTIAL),
        name=data.name,
        description=data.description,
        provider=provider.name,
        endpoint_url=credential.endpoint_url,
        content_secret=secrets.seal({"content": credential.content}),
        owner=access.owner,
        owner_path=access.owner_path,
        create_time=now,
        update_time=now,
        status_time=now,
    )
    async with db.transaction() as session:
        session.add(row)
    return row


async def get_credential(
    session: AsyncSession, credential_id: str, access: Access
) -> RuntimeCredential:
    row = await get_or_404(session, RuntimeCredential, credential_id, "runtime credential")
    access.check_visible("runtime credential", credential_id, row.owner, row.owner_path)
    return row


async def get_usable_credential(
    session: AsyncSession, credential_id: str, access: Access
) -> RuntimeCredential:
    """A live credential the caller may change or use for a runtime."""
    row = await get_or_404(session, RuntimeCredential, credential_id, "runtime credential")
    access.check_writable("runtime credential", credential_id, row.owner, row.owner_path)
    if row.status == DELETED:
        raise Conflict(
            f"runtime credential {credential_id!r} is deleted", code="credential_deleted"
        )
    return row


def open_credential(row: RuntimeCredential, secrets: SecretBox) -> Credential:
    try:
        content = secrets.open(row.content_secret)["content"]
    except (SecretError, KeyError):
        raise Conflict(
            f"runtime credential {row.credential_id!r} cannot be decrypted with the configured "
            "keys; set its content again",
            code="secret_unreadable",
        ) from None
    return Credential(provider=row.provider, endpoint_url=row.endpoint_url, content=str(content))


async def list_credentials(
    session: AsyncSession,
    query: ListQuery,
    access: Access,
    *,
    provider: Sequence[str] = (),
    status: Sequence[str] = (),
) -> tuple[int, list[CredentialRead]]:
    stmt = select(RuntimeCredential).where(
        access.clause(col(RuntimeCredential.owner), col(RuntimeCredential.owner_path))
    )
    if provider:
        stmt = stmt.where(col(RuntimeCredential.provider).in_(provider))
    stmt = stmt.where(
        col(RuntimeCredential.status).in_(status)
        if status
        else col(RuntimeCredential.status) != DELETED
    )
    total, rows = await paginate(session, stmt, CREDENTIAL_LIST, query)
    return total, [credential_read(r) for r in rows]


async def update_credential(
    db: Database,
    credential_id: str,
    data: CredentialUpdate,
    access: Access,
    secrets: SecretBox,
    policy: AddressPolicy,
    providers: Providers,
) -> RuntimeCredential:
    async with db.read_session() as session:
        row = await get_usable_credential(session, credential_id, access)
    sealed = None
    if data.content is not None:
        provider = providers.named(row.provider)
        credential = _parse(provider, data.content.get_secret_value(), None)
        if credential.endpoint_url != row.endpoint_url:
            # Runtimes' zones were claimed on that endpoint: another cluster is another
            # credential.
            raise BadRequest(
                f"the new content reaches {credential.endpoint_url}, not {row.endpoint_url}; "
                "make a new credential for another endpoint",
                code="endpoint_changed",
            )
        await _validate(provider, credential, policy)
        sealed = secrets.seal({"content": credential.content})
    async with db.transaction() as session:
        row = await get_usable_credential(session, credential_id, access)
        if data.name is not None:
            row.name = data.name
        if data.description is not None:
            row.description = data.description
        if sealed is not None:
            row.content_secret = sealed
        row.update_time = utcnow()
    return row


async def delete_credential(session: AsyncSession, credential_id: str, access: Access) -> None:
    row = await get_usable_credential(session, credential_id, access)
    in_use = await session.execute(
        select(col(Runtime.runtime_id)).where(
            col(Runtime.credential_id) == credential_id, col(Runtime.status) != DELETED
        )
    )
    users = [r for (r,) in in_use.all()]
    if users:
        raise Conflict(
            f"runtime credential {credential_id!r} is used by {len(users)} runtime(s); delete "
            "them first",
            code="credential_in_use",
            details={"runtime_ids": users[:20]},
        )
    now = utcnow()
    row.status = DELETED
    row.status_time = row.update_time = now


async def describe_zones(
    db: Database,
    credential_id: str,
    access: Access,
    secrets: SecretBox,
    policy: AddressPolicy,
    providers: Providers,
) -> Zones:
    async with db.read_session() as session:
        row = await get_credential(session, credential_id, access)
    provider = providers.named(row.provider)
    try:
        zones = await provider.describe_zones(open_credential(row, secrets), policy)
    except ProviderError as exc:
        raise provider_error(exc) from None
    return Zones(zone_kind=provider.capabilities.zone_kind, zones=zones)


# --- runtimes ----------------------------------------------------------------------------------


def runtime_read(row: Runtime) -> RuntimeRead:
    return RuntimeRead.model_validate(
        {**row.model_dump(), "labels": [KeyValue.model_validate(i) for i in row.labels]}
    )


def _label_rows(runtime_id: str, labels: Sequence[KeyValue]) -> list[RuntimeLabel]:
    return [
        RuntimeLabel(runtime_id=runtime_id, position=i, key=kv.key, value=kv.value)
        for i, kv in enumerate(labels)
    ]


async def create_runtime(
    db: Database,
    data: RuntimeCreate,
    access: Access,
    secrets: SecretBox,
    policy: AddressPolicy,
    providers: Providers,
) -> Runtime:
    """Claim the zone through the provider, then record the runtime. A zone already claimed
    by another runtime is a 409."""
    async with db.read_session() as session:
        cred_row = await get_usable_credential(session, data.credential_id, access)
    credential = open_credential(cred_row, secrets)
    provider = providers.named(cred_row.provider)
    runtime_id = ids.new_id(ids.RUNTIME)
    try:
        await provider.claim_zone(
            credential, data.zone, runtime_id=runtime_id, create=data.create_zone, policy=policy
        )
    except ProviderError as exc:
        raise provider_error(exc) from None
    now = utcnow()
    row = Runtime(
        runtime_id=runtime_id,
        name=data.name,
        description=data.description,
        provider=provider.name,
        zone=data.zone,
        zone_claim=data.zone if provider.capabilities.exclusive_zones else None,
        credential_id=cred_row.credential_id,
        endpoint_url=cred_row.endpoint_url,
        labels=[kv.model_dump() for kv in data.labels],
        owner=access.owner,
        owner_path=access.owner_path,
        create_time=now,
        update_time=now,
        status_time=now,
    )
    try:
        async with db.transaction() as session:
            session.add(row)
            await session.flush()
            session.add_all(_label_rows(runtime_id, data.labels))
    except IntegrityError:
        # Another runtime on this endpoint holds the zone (its label may have been removed
        # by hand): give back the claim we just made.
        await _release_quietly(provider, credential, data.zone, runtime_id, policy)
        raise Conflict(
            f"zone {data.zone!r} of {cred_row.endpoint_url} belongs to another runtime",
            code="zone_taken",
        ) from None
    return row


async def _release_quietly(
    provider: Provider, credential: Credential, zone: str, runtime_id: str, policy: AddressPolicy
) -> None:
    # On failure the mark names a runtime id that does not exist; a later claim may take it.
    with contextlib.suppress(ProviderError):
        await provider.release_zone(credential, zone, runtime_id=runtime_id, policy=policy)


async def get_runtime(session: AsyncSession, runtime_id: str, access: Access) -> Runtime:
    row = await get_or_404(session, Runtime, runtime_id, "runtime")
    access.check_visible("runtime", runtime_id, row.owner, row.owner_path)
    return row


async def get_writable_runtime(session: AsyncSession, runtime_id: str, access: Access) -> Runtime:
    row = await get_or_404(session, Runtime, runtime_id, "runtime")
    access.check_writable("runtime", runtime_id, row.owner, row.owner_path)
    if row.status == DELETED:
        raise Conflict(f"runtime {runtime_id!r} is deleted", code="runtime_deleted")
    return row


@dataclass(frozen=True)
class RuntimeFilters:
    provider: Sequence[str] = ()
    zone: Sequence[str] = ()
    credential_id: Sequence[str] = ()
    status: Sequence[str] = ()
    owner: Sequence[str] = ()
    label: Sequence[str] = ()
    eligible_for_version: str | None = None


def _has_label(key: str, values: Sequence[str]) -> ColumnElement[bool]:
    return exists().where(
        col(RuntimeLabel.runtime_id) == col(Runtime.runtime_id),
        col(RuntimeLabel.key) == key,
        col(RuntimeLabel.value).in_(values),
    )


def selector_groups(repo: Repo) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for item in repo.selectors:
        groups.setdefault(item["key"], []).append(item["value"])
    return groups


def eligibility_clause(repo: Repo) -> ColumnElement[bool]:
    """The matching rule as SQL: the runtime's provider is one of the repo's, and for every
    selector key the runtime has that label with one of the selector's values."""
    return and_(
        col(Runtime.provider).in_(repo.providers),
        *(_has_label(key, values) for key, values in selector_groups(repo).items()),
    )


def ineligibility(runtime: Runtime, repo: Repo) -> str | None:
    """Why the runtime may not run the repo's apps, or None when it may."""
    if runtime.provider not in repo.providers:
        return (
            f"runtime provider {runtime.provider!r} is not among the repo's providers "
            f"{repo.providers}"
        )
    labels: dict[str, set[str]] = {}
    for item in runtime.labels:
        labels.setdefault(item["key"], set()).add(item["value"])
    for key, values in selector_groups(repo).items():
        if not labels.get(key, set()) & set(values):
            return f"runtime has no label {key} with one of the repo's selector values {values}"
    return None


async def _version_repo(session: AsyncSession, version_id: str, access: Access) -> Repo:
    version = await get_version(session, version_id, access.caller.access(Op.APP_READ))
    repo = await session.get(Repo, version.repo_id)
    if repo is None:  # a version outlives no repo; the row is gone only if hand-deleted
        raise NotFound("app version", version_id)
    return repo


async def list_runtimes(
    session: AsyncSession, query: ListQuery, access: Access, filters: RuntimeFilters
) -> tuple[int, list[RuntimeRead]]:
    try:
        wanted_labels = parse_label_filter(list(filters.label), "label")
    except ValueError as exc:
        raise BadRequest(str(exc), code="invalid_filter") from exc
    stmt = select(Runtime).where(access.clause(col(Runtime.owner), col(Runtime.owner_path)))
    for column, values in (
        (col(Runtime.provider), filters.provider),
        (col(Runtime.zone), filters.zone),
        (col(Runtime.credential_id), filters.credential_id),
        (col(Runtime.owner), filters.owner),
    ):
        if values:
            stmt = stmt.where(column.in_(values))
    stmt = stmt.where(
        col(Runtime.status).in_(filters.status)
        if filters.status
        else col(Runtime.status) != DELETED
    )
    for key, values in wanted_labels.items():
        stmt = stmt.where(_has_label(key, values))
    if filters.eligible_for_version:
        repo = await _version_repo(session, filters.eligible_for_version, access)
        stmt = stmt.where(eligibility_clause(repo))
    total, rows = await paginate(session, stmt, RUNTIME_LIST, query)
    return total, [runtime_read(r) for r in rows]


async def update_runtime(
    session: AsyncSession, runtime_id: str, data: RuntimeUpdate, access: Access
) -> Runtime:
    row = await get_writable_runtime(session, runtime_id, access)
    if data.name is not None:
        row.name = data.name
    if data.description is not None:
        row.description = data.description
    if data.labels is not None:
        row.labels = [kv.model_dump() for kv in data.labels]
        await session.execute(
            delete(RuntimeLabel).where(col(RuntimeLabel.runtime_id) == runtime_id)
        )
        session.add_all(_label_rows(runtime_id, data.labels))
    row.update_time = utcnow()
    await session.flush()
    return row


# What runs on a runtime is for the clusters package to know, and clusters import runtimes, so
# runtimes ask through these two hooks, which the composition root (composition.py) builds and
# the gateway hands in.
LiveClusters = Callable[[AsyncSession, str], Awaitable[list[str]]]
DeleteClusters = Callable[[AsyncSession, list[str], Access], Awaitable[list[str]]]


@dataclass(frozen=True)
class ClusterHooks:
    live: LiveClusters  # the live clusters on a runtime
    delete: DeleteClusters  # start a delete job for each; returns the job ids


async def delete_runtime(
    db: Database,
    runtime_id: str,
    access: Access,
    secrets: SecretBox,
    policy: AddressPolicy,
    providers: Providers,
    *,
    clusters: ClusterHooks,
    before_delete: Callable[[AsyncSession, list[str]], Awaitable[list[str]]] | None = None,
) -> tuple[Runtime, list[str]]:
    """Soft-delete the runtime and drop its mark on the zone. Live clusters on it (asked through
    `clusters`) make this a 409 unless `before_delete` (the force option) takes care of them in
    the same transaction; it returns the ids of the jobs it started."""
    jobs: list[str] = []
    async with db.transaction() as session:
        row = await get_writable_runtime(session, runtime_id, access)
        live = await clusters.live(session, runtime_id)
        if live and before_delete is None:
            raise Conflict(
                f"runtime {runtime_id!r} has {len(live)} live cluster(s); delete them first "
                "or pass force=true to delete them through jobs",
                code="runtime_in_use",
                details={"cluster_ids": live[:20]},
            )
        if live and before_delete is not None:
            jobs = await before_delete(session, live)
        now = utcnow()
        row.status = DELETED
        row.status_time = row.update_time = now
        cred_row = await get_or_404(
            session, RuntimeCredential, row.credential_id, "runtime credential"
        )
    provider = providers.named(row.provider)
    # The runtime is gone either way; a stale mark only makes a later claim of the zone fail
    # until it is removed, which the 409 message explains.
    with contextlib.suppress(ProviderError, AppError):
        await provider.release_zone(
            open_credential(cred_row, secrets), row.zone, runtime_id=runtime_id, policy=policy
        )
    return row, jobs
