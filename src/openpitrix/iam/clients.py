"""API clients: credentials for automation that act as the user who made them."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from openpitrix import ids
from openpitrix.db.listing import ListQuery, ListSpec, paginate
from openpitrix.db.types import utcnow
from openpitrix.errors import NotFound
from openpitrix.iam.access import Access, Scope
from openpitrix.iam.authcache import note_auth_change
from openpitrix.iam.models import ApiClient, User
from openpitrix.iam.schemas import ApiClientCreated, ApiClientRead, ApiClientStatus, UserStatus

SECRET_PREFIX = "ops_"  # noqa: S105 (a marker that lets secret scanners spot leaked secrets)

CLIENT_LIST = ListSpec(
    sort_keys={
        "create_time": col(ApiClient.create_time),
        "status_time": col(ApiClient.status_time),
        "name": col(ApiClient.name),
    },
    default_sort="create_time",
    id_columns=[col(ApiClient.client_id)],
    text_columns=[col(ApiClient.name)],
)


def hash_secret(secret: str) -> str:
    """SHA-256, not argon2: the secret is 256 random bits, so no dictionary can reach it."""
    return hashlib.sha256(secret.encode()).hexdigest()


def client_read(client: ApiClient) -> ApiClientRead:
    return ApiClientRead(
        client_id=client.client_id,
        user_id=client.user_id,
        name=client.name,
        status=ApiClientStatus(client.status),
        create_time=client.create_time,
        status_time=client.status_time,
    )


async def create_client(session: AsyncSession, access: Access, name: str) -> ApiClientCreated:
    """A new client for the caller; its secret exists in clear only in this answer."""
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    client = ApiClient(
        client_id=ids.new_id(ids.API_CLIENT),
        user_id=access.owner,
        name=name,
        secret_hash=hash_secret(secret),
        status=ApiClientStatus.ACTIVE,
        create_time=now,
        update_time=now,
        status_time=now,
    )
    session.add(client)
    await session.flush()
    return ApiClientCreated(**client_read(client).model_dump(), client_secret=secret)


def _visible(access: Access, client: ApiClient) -> bool:
    # Clients have no owner_path of their own: "all" sees every client, anything narrower only
    # the caller's (a group may share repos, not each other's credentials).
    return access.scope == Scope.ALL or client.user_id == access.owner


async def get_client(session: AsyncSession, access: Access, client_id: str) -> ApiClient:
    client = await session.get(ApiClient, client_id)
    if client is None or not _visible(access, client):
        raise NotFound("api client", client_id)
    return client


async def list_clients(
    session: AsyncSession,
    access: Access,
    query: ListQuery,
    *,
    status: Sequence[str] = (),
    user_id: Sequence[str] = (),
) -> tuple[int, list[ApiClientRead]]:
    stmt = select(ApiClient)
    if access.scope != Scope.ALL:
        stmt = stmt.where(col(ApiClient.user_id) == access.owner)
    if user_id:
        stmt = stmt.where(col(ApiClient.user_id).in_(user_id))
    if status:
        stmt = stmt.where(col(ApiClient.status).in_(status))
    else:
        stmt = stmt.where(col(ApiClient.status) != ApiClientStatus.DELETED)
    total, rows = await paginate(session, stmt, CLIENT_LIST, query)
    return total, [client_read(c) for c in rows]


async def delete_client(session: AsyncSession, access: Access, client_id: str) -> None:
    """Soft delete: its access tokens stop working at once (the caller check reads the row)."""
    client = await get_client(session, access, client_id)
    if client.status == ApiClientStatus.DELETED:
        return
    now = utcnow()
    client.status = ApiClientStatus.DELETED
    client.status_time = client.update_time = now
    note_auth_change(session, client_id=client.client_id)


async def authenticate_client(
    session: AsyncSession, client_id: str, secret: str
) -> tuple[ApiClient, User] | None:
    """The live client and its live user, if the secret matches."""
    client = await session.get(ApiClient, client_id)
    if client is None or client.status != ApiClientStatus.ACTIVE:
        # Compare anyway so a wrong id and a wrong secret take the same time.
        hmac.compare_digest(hash_secret(secret), hash_secret(""))
        return None
    if not hmac.compare_digest(client.secret_hash, hash_secret(secret)):
        return None
    user = await session.get(User, client.user_id)
    if user is None or user.status != UserStatus.ACTIVE:
        return None
    return client, user
