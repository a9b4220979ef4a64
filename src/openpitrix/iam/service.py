"""User use cases: create, read, list, update, soft-delete, change password."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import exists
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from openpitrix import ids
from openpitrix.db.listing import ListQuery, ListSpec, paginate
from openpitrix.db.types import utcnow
from openpitrix.errors import BadRequest, Conflict, NotFound
from openpitrix.iam import passwords, tokens
from openpitrix.iam.authcache import note_auth_change
from openpitrix.iam.models import User
from openpitrix.iam.schemas import Role, UserRead, UserStatus, UserUpdate

USER_LIST = ListSpec(
    sort_keys={
        "create_time": col(User.create_time),
        "update_time": col(User.update_time),
        "status_time": col(User.status_time),
        "email": col(User.email),
        "name": col(User.name),
        "role": col(User.role),
    },
    default_sort="create_time",
    id_columns=[col(User.user_id)],
    text_columns=[col(User.email), col(User.name)],
)


@dataclass(frozen=True)
class UserFilters:
    email: Sequence[str] = ()
    role: Sequence[str] = ()
    status: Sequence[str] = ()


def user_read(user: User) -> UserRead:
    # Built field by field so password_hash can never slip into an answer.
    return UserRead(
        user_id=user.user_id,
        email=user.email,
        name=user.name,
        role=Role(user.role),
        status=UserStatus(user.status),
        group_path=user.group_path,
        create_time=user.create_time,
        update_time=user.update_time,
        status_time=user.status_time,
    )


def normalize_email(email: str) -> str:
    return email.strip().lower()


async def get_user(session: AsyncSession, user_id: str) -> User:
    user = await session.get(User, user_id)
    if user is None:
        raise NotFound("user", user_id)
    return user


async def find_live_user(session: AsyncSession, email: str) -> User | None:
    stmt = select(User).where(
        col(User.email) == normalize_email(email), col(User.status) != UserStatus.DELETED
    )
    return (await session.execute(stmt)).scalar_one_or_none()


async def any_user_exists(session: AsyncSession) -> bool:
    return bool((await session.execute(select(exists().select_from(User)))).scalar())


def _email_taken(email: str) -> Conflict:
    return Conflict(f"a user with email {email!r} already exists", code="user_email_taken")


async def _ensure_email_free(session: AsyncSession, email: str) -> None:
    if await find_live_user(session, email) is not None:
        raise _email_taken(email)


async def create_user(
    session: AsyncSession,
    *,
    email: str,
    name: str,
    role: Role,
    password: str,
    group_path: str = "",
) -> User:
    try:
        passwords.check_policy(password)
    except passwords.PasswordPolicyError as exc:
        raise BadRequest(str(exc), code="invalid_password") from exc
    email = normalize_email(email)
    await _ensure_email_free(session, email)
    now = utcnow()
    user = User(
        user_id=ids.new_id(ids.USER),
        email=email,
        name=name,
        role=role,
        group_path=group_path,
        status=UserStatus.ACTIVE,
        password_hash=await passwords.hash_password_async(password),
        create_time=now,
        update_time=now,
        status_time=now,
    )
    session.add(user)
    try:
        await session.flush()
    except IntegrityError as exc:
        # A concurrent create of the same email won the partial unique index.
        raise _email_taken(email) from exc
    return user


async def list_users(
    session: AsyncSession, query: ListQuery, filters: UserFilters
) -> tuple[int, list[UserRead]]:
    stmt = select(User)
    if filters.email:
        stmt = stmt.where(col(User.email).in_([normalize_email(e) for e in filters.email]))
    if filters.role:
        stmt = stmt.where(col(User.role).in_(filters.role))
    if filters.status:
        stmt = stmt.where(col(User.status).in_(filters.status))
    else:
        stmt = stmt.where(col(User.status) != UserStatus.DELETED)
    total, rows = await paginate(session, stmt, USER_LIST, query)
    return total, [user_read(u) for u in rows]


async def _ensure_not_last_admin(session: AsyncSession, user: User) -> None:
    """Refuse to leave the system without an active admin (nobody could manage users)."""
    if user.role != Role.ADMIN or user.status != UserStatus.ACTIVE:
        return
    # FOR UPDATE on PostgreSQL (ignored by SQLite, whose writers are serialized anyway): two
    # admins demoting each other at once queue here, and the second sees the first's change.
    stmt = (
        select(col(User.user_id))
        .where(col(User.role) == Role.ADMIN, col(User.status) == UserStatus.ACTIVE)
        .order_by(col(User.user_id))
        .with_for_update()
    )
    admins = (await session.execute(stmt)).scalars().all()
    if not [a for a in admins if a != user.user_id]:
        raise Conflict("this is the last active admin; make another admin first", code="last_admin")


async def update_user(session: AsyncSession, user_id: str, data: UserUpdate) -> User:
    user = await get_user(session, user_id)
    demoted = data.role is not None and data.role != Role.ADMIN
    deleting = data.status == UserStatus.DELETED and user.status != UserStatus.DELETED
    if demoted or deleting:
        await _ensure_not_last_admin(session, user)
    now = utcnow()
    if data.status is not None and data.status != user.status:
        if data.status == UserStatus.ACTIVE:
            # Restoring: the email may have been taken by a new user meanwhile.
            await _ensure_email_free(session, user.email)
        user.status = data.status
        user.status_time = now
        if deleting:
            await tokens.revoke_user_tokens(session, user.user_id)
    if data.name is not None:
        user.name = data.name
    if data.role is not None:
        user.role = data.role
    if data.group_path is not None:
        user.group_path = data.group_path
    user.update_time = now
    note_auth_change(session, user_id=user.user_id)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise _email_taken(user.email) from exc
    return user


async def delete_user(session: AsyncSession, user_id: str) -> None:
    """Soft delete: the row stays (audit, ownership), its refresh tokens stop working, and
    its access tokens are refused because the current-user check reads the status."""
    user = await get_user(session, user_id)
    if user.status == UserStatus.DELETED:
        return
    await _ensure_not_last_admin(session, user)
    now = utcnow()
    user.status = UserStatus.DELETED
    user.status_time = now
    user.update_time = now
    note_auth_change(session, user_id=user.user_id)
    await tokens.revoke_user_tokens(session, user.user_id)


async def change_password(
    session: AsyncSession, user_id: str, old_password: str, new_password: str
) -> None:
    user = await get_user(session, user_id)
    if not await passwords.verify_password_async(user.password_hash, old_password):
        raise BadRequest("the old password is wrong", code="wrong_password")
    try:
        passwords.check_policy(new_password)
    except passwords.PasswordPolicyError as exc:
        raise BadRequest(str(exc), code="invalid_password") from exc
    user.password_hash = await passwords.hash_password_async(new_password)
    now = utcnow()
    user.update_time = now
    # Access tokens carry whole seconds, so the cut is at the current second: a token issued
    # earlier in this same second survives, one issued in an earlier second does not.
    user.tokens_valid_after = now.replace(microsecond=0)
    note_auth_change(session, user_id=user.user_id)
    # Every session started with the old password ends: a stolen refresh token dies with it.
    await tokens.revoke_user_tokens(session, user.user_id)
