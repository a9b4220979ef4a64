"""User and token routes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Response, status
from fastapi.responses import JSONResponse

from openpitrix.api.deps import (
    Filter,
    ListDep,
    PlatformDep,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
)
from openpitrix.api.errors import ERROR_RESPONSES, ErrorBody
from openpitrix.iam import grants, service
from openpitrix.iam.deps import AccessTokensDep, AdminUser, CurrentUser
from openpitrix.iam.schemas import (
    OAuthErrorBody,
    PasswordChange,
    Role,
    TokenResponse,
    UserCreate,
    UserPage,
    UserRead,
    UserStatus,
    UserUpdate,
)

AUTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "No token, or an invalid or expired one"},
    403: {"model": ErrorBody, "description": "The caller's role does not allow this"},
}

router = APIRouter(tags=["users"])
users = APIRouter(prefix="/v1/users", responses={**ERROR_RESPONSES, **AUTH_RESPONSES})

# RFC 6749 §5.1: token answers must not be cached by browsers or proxies.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(error: str, description: str) -> JSONResponse:
    body = OAuthErrorBody.model_validate({"error": error, "error_description": description})
    return JSONResponse(status_code=400, content=body.model_dump(), headers=NO_STORE)


@router.post(
    "/v1/oauth2/token",
    operation_id="issue_token",
    response_model=TokenResponse,
    responses={400: {"model": OAuthErrorBody, "description": "RFC 6749 §5.2 error"}},
)
async def issue_token(
    platform: PlatformDep,
    settings: SettingsDep,
    signer: AccessTokensDep,
    grant_type: Annotated[str | None, Form(description="`password` or `refresh_token`.")] = None,
    username: Annotated[str | None, Form(description="The user's email (password grant).")] = None,
    password: Annotated[str | None, Form(description="Password grant.")] = None,
    refresh_token: Annotated[str | None, Form(description="Refresh grant.")] = None,
    scope: Annotated[str | None, Form(description="Ignored for now.")] = None,
    client_id: Annotated[str | None, Form(description="Reserved for API clients.")] = None,
    client_secret: Annotated[str | None, Form(description="Reserved for API clients.")] = None,
) -> Response:
    """OAuth2 token endpoint (form-encoded, RFC 6749).

    `grant_type=password` with `username` (the email) and `password` logs in;
    `grant_type=refresh_token` spends a refresh token for a new pair (the old one is revoked;
    presenting an already-spent one revokes every token of that login).

    Errors here use OAuth2's shape, not the API's usual one, because OAuth2 clients (Swagger
    UI included) expect it: HTTP 400 with `{"error": "invalid_request" | "invalid_grant" |
    "unsupported_grant_type", "error_description": "..."}`.
    """
    del scope, client_id, client_secret  # accepted so standard clients work; unused yet
    if not grant_type:
        return _oauth_error("invalid_request", "grant_type is required")
    result: TokenResponse | grants.GrantRefused
    if grant_type == "password":
        if not username or not password:
            return _oauth_error("invalid_request", "username and password are required")
        result = await grants.password_grant(platform.db, signer, settings, username, password)
    elif grant_type == "refresh_token":
        if not refresh_token:
            return _oauth_error("invalid_request", "refresh_token is required")
        result = await grants.refresh_grant(platform.db, signer, settings, refresh_token)
    else:
        # client_credentials arrives with API clients in a later slice.
        return _oauth_error("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    if isinstance(result, grants.GrantRefused):
        return _oauth_error(result.error, result.description)
    return JSONResponse(content=result.model_dump(), headers=NO_STORE)


@users.get("/me", operation_id="get_me")
async def get_me(user: CurrentUser) -> UserRead:
    """The user the bearer token belongs to."""
    return service.user_read(user)


@users.post(
    "/me/password", status_code=status.HTTP_204_NO_CONTENT, operation_id="change_my_password"
)
async def change_my_password(
    data: PasswordChange, user: CurrentUser, session: SessionDep
) -> Response:
    """Change your password. Every refresh token you hold is revoked: log in again."""
    await service.change_password(
        session,
        user.user_id,
        data.old_password.get_secret_value(),
        data.new_password.get_secret_value(),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@users.get("", operation_id="list_users")
async def list_users(
    _: AdminUser,
    session: ReadSessionDep,
    query: ListDep,
    email: Filter = None,
    role: Annotated[list[Role] | None, Query()] = None,
    status: Annotated[list[UserStatus] | None, Query()] = None,
) -> UserPage:
    """List users (admin). Deleted users show only when asked for with `status=deleted`."""
    filters = service.UserFilters(email=email or (), role=role or (), status=status or ())
    total, items = await service.list_users(session, query, filters)
    return UserPage(total_count=total, items=items)


@users.post("", status_code=status.HTTP_201_CREATED, operation_id="create_user")
async def create_user(
    data: UserCreate, _: AdminUser, session: SessionDep, response: Response
) -> UserRead:
    """Create a user (admin). The email is stored lower-cased and must be unused."""
    user = await service.create_user(
        session,
        email=data.email,
        name=data.name,
        role=data.role,
        password=data.password.get_secret_value(),
    )
    response.headers["Location"] = f"/v1/users/{user.user_id}"
    return service.user_read(user)


@users.get("/{user_id}", operation_id="get_user")
async def get_user(user_id: str, _: AdminUser, session: ReadSessionDep) -> UserRead:
    return service.user_read(await service.get_user(session, user_id))


@users.patch("/{user_id}", operation_id="update_user")
async def update_user(
    user_id: str, data: UserUpdate, _: AdminUser, session: SessionDep
) -> UserRead:
    """Change name, role or status (admin). The last active admin cannot lose the role or be
    deleted (409 `last_admin`)."""
    return service.user_read(await service.update_user(session, user_id, data))


@users.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, operation_id="delete_user")
async def delete_user(user_id: str, _: AdminUser, session: SessionDep) -> Response:
    """Soft-delete a user (admin): their tokens stop working at once."""
    await service.delete_user(session, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


router.include_router(users)
