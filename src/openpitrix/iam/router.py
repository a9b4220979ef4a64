"""User and token routes."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated
from urllib.parse import unquote_plus

from fastapi import APIRouter, Form, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse

from openpitrix.api.deps import (
    Filter,
    ListDep,
    PlatformDep,
    ReadSessionDep,
    SessionDep,
    SettingsDep,
)
from openpitrix.api.errors import ERROR_RESPONSES
from openpitrix.api.routing import DomainRouter
from openpitrix.iam import clients, grants, service
from openpitrix.iam.deps import (
    AccessTokensDep,
    AuthenticatedRoute,
    CanActAsSelf,
    CanManageApiClients,
    CanManageUsers,
)
from openpitrix.iam.ratelimit import LoginLimited, LoginLimiter
from openpitrix.iam.schemas import (
    ApiClientCreate,
    ApiClientCreated,
    ApiClientPage,
    ApiClientRead,
    ApiClientStatus,
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

router = DomainRouter(tags=["users"], route_class=AuthenticatedRoute)
users = APIRouter(prefix="/v1/users", responses=ERROR_RESPONSES, route_class=AuthenticatedRoute)
api_clients = APIRouter(
    prefix="/v1/api-clients",
    tags=["api clients"],
    responses=ERROR_RESPONSES,
    route_class=AuthenticatedRoute,
)

# RFC 6749 §5.1: token answers must not be cached by browsers or proxies.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _oauth_error(error: str, description: str) -> JSONResponse:
    body = OAuthErrorBody.model_validate({"error": error, "error_description": description})
    # RFC 6749 §5.2: a failed client authentication is a 401 with a challenge.
    if error == "invalid_client":
        headers = {**NO_STORE, "WWW-Authenticate": 'Basic realm="openpitrix"'}
        return JSONResponse(status_code=401, content=body.model_dump(), headers=headers)
    return JSONResponse(status_code=400, content=body.model_dump(), headers=NO_STORE)


def _basic_credentials(header: str | None) -> tuple[str, str] | None:
    """Client id and secret from `Authorization: Basic` (RFC 6749 §2.3.1: each part
    form-urlencoded before base64)."""
    if not header or header[:6].lower() != "basic ":
        return None
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        return None
    return unquote_plus(client_id), unquote_plus(secret)


@router.post(
    "/v1/oauth2/token",
    operation_id="issue_token",
    response_model=TokenResponse,
    responses={
        400: {"model": OAuthErrorBody, "description": "RFC 6749 §5.2 error"},
        401: {"model": OAuthErrorBody, "description": "`invalid_client`"},
        429: {"model": OAuthErrorBody, "description": "`slow_down`: too many password logins"},
    },
)
async def issue_token(
    request: Request,
    platform: PlatformDep,
    settings: SettingsDep,
    signer: AccessTokensDep,
    grant_type: Annotated[
        str | None,
        Form(description="`password`, `refresh_token` or `client_credentials`."),
    ] = None,
    username: Annotated[str | None, Form(description="The user's email (password grant).")] = None,
    password: Annotated[str | None, Form(description="Password grant.")] = None,
    refresh_token: Annotated[str | None, Form(description="Refresh grant.")] = None,
    scope: Annotated[str | None, Form(description="Ignored for now.")] = None,
    client_id: Annotated[
        str | None, Form(description="API client id (client_credentials; or HTTP Basic).")
    ] = None,
    client_secret: Annotated[
        str | None, Form(description="API client secret (client_credentials; or HTTP Basic).")
    ] = None,
    authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> Response:
    """OAuth2 token endpoint (form-encoded, RFC 6749).

    `grant_type=password` with `username` (the email) and `password` logs in;
    `grant_type=refresh_token` spends a refresh token for a new pair (the old one is revoked;
    presenting an already-spent one revokes every token of that login);
    `grant_type=client_credentials` logs an API client in (`client_id` and `client_secret` in
    the form or as HTTP Basic): an access token acting as the client's user, no refresh token.

    Errors here use OAuth2's shape, not the API's usual one, because OAuth2 clients (Swagger
    UI included) expect it: HTTP 400 with `{"error": "invalid_request" | "invalid_grant" |
    "unsupported_grant_type", "error_description": "..."}`, and 401 `invalid_client` when
    client authentication fails.

    Password logins are limited per account (failures) and per client address (all
    attempts). Past a limit the answer is 429 `slow_down` with `Retry-After` (seconds until
    the window frees), the same for every account, known or not, and the password is not
    checked. `slow_down` is the registered token-endpoint error for "retry later, more
    slowly" (RFC 8628 §3.5); `invalid_grant` would wrongly say the credentials are bad.
    """
    del scope  # accepted so standard clients work; tokens carry the user's role instead
    if not grant_type:
        return _oauth_error("invalid_request", "grant_type is required")
    result: TokenResponse | grants.GrantRefused
    if grant_type == "password":
        if not username or not password:
            return _oauth_error("invalid_request", "username and password are required")
        # Counted before the password is checked: a limited caller costs no argon2 work.
        limiter: LoginLimiter = request.app.state.login_limiter
        admitted = await limiter.admit(username, request.client.host if request.client else None)
        if isinstance(admitted, LoginLimited):
            body = OAuthErrorBody(error="slow_down", error_description="too many login attempts")
            headers = {**NO_STORE, "Retry-After": str(admitted.retry_after)}
            return JSONResponse(status_code=429, content=body.model_dump(), headers=headers)
        result = await grants.password_grant(platform.db, signer, settings, username, password)
        if isinstance(result, TokenResponse):
            await limiter.forgive(admitted)
    elif grant_type == "refresh_token":
        if not refresh_token:
            return _oauth_error("invalid_request", "refresh_token is required")
        result = await grants.refresh_grant(platform.db, signer, settings, refresh_token)
    elif grant_type == "client_credentials":
        basic = _basic_credentials(authorization)
        if basic is not None:
            client_id, client_secret = basic
        if not client_id or not client_secret:
            return _oauth_error("invalid_client", "client_id and client_secret are required")
        result = await grants.client_credentials_grant(
            platform.db, signer, client_id, client_secret
        )
    else:
        return _oauth_error("unsupported_grant_type", f"grant_type {grant_type!r} is not supported")
    if isinstance(result, grants.GrantRefused):
        return _oauth_error(result.error, result.description)
    return JSONResponse(content=result.model_dump(exclude_none=True), headers=NO_STORE)


@router.post(
    "/v1/oauth2/revoke",
    operation_id="revoke_token",
    # RFC 7009 §2.2: 200, and the client ignores any body; none is sent, and the document
    # says so (no content type), instead of promising JSON.
    response_class=Response,
    responses={
        200: {"description": "Revoked, or not a live token: the same empty answer."},
        400: {"model": OAuthErrorBody, "description": "`invalid_request`"},
    },
)
async def revoke_token(
    platform: PlatformDep,
    token: Annotated[str, Form(max_length=500, description="The refresh token to revoke.")],
    token_type_hint: Annotated[str | None, Form(description="Ignored (RFC 7009).")] = None,
) -> Response:
    """Log out (RFC 7009): revoke a refresh token and every token of its login. Always 200,
    also for unknown tokens, so the answer tells nothing about a token."""
    del token_type_hint
    await grants.revoke_token(platform.db, token)
    return Response(status_code=status.HTTP_200_OK, headers=NO_STORE)


@users.get("/me", operation_id="get_me")
async def get_me(me: CanActAsSelf, session: ReadSessionDep) -> UserRead:
    """The user the bearer token belongs to."""
    return service.user_read(await service.get_user(session, me.owner))


@users.post(
    "/me/password", status_code=status.HTTP_204_NO_CONTENT, operation_id="change_my_password"
)
async def change_my_password(
    data: PasswordChange, me: CanActAsSelf, session: SessionDep
) -> Response:
    """Change your password. Every token you hold stops working: log in again."""
    await service.change_password(
        session,
        me.owner,
        data.old_password.get_secret_value(),
        data.new_password.get_secret_value(),
    )
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@users.get("", operation_id="list_users")
async def list_users(
    _: CanManageUsers,
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
    data: UserCreate, _: CanManageUsers, session: SessionDep, response: Response
) -> UserRead:
    """Create a user (admin). The email is stored lower-cased and must be unused."""
    user = await service.create_user(
        session,
        email=data.email,
        name=data.name,
        role=data.role,
        group_path=data.group_path,
        password=data.password.get_secret_value(),
    )
    response.headers["Location"] = f"/v1/users/{user.user_id}"
    return service.user_read(user)


@users.get("/{user_id}", operation_id="get_user")
async def get_user(user_id: str, _: CanManageUsers, session: ReadSessionDep) -> UserRead:
    return service.user_read(await service.get_user(session, user_id))


@users.patch("/{user_id}", operation_id="update_user")
async def update_user(
    user_id: str, data: UserUpdate, _: CanManageUsers, session: SessionDep
) -> UserRead:
    """Change name, role or status (admin). The last active admin cannot lose the role or be
    deleted (409 `last_admin`)."""
    return service.user_read(await service.update_user(session, user_id, data))


@users.delete("/{user_id}", status_code=status.HTTP_204_NO_CONTENT, operation_id="delete_user")
async def delete_user(user_id: str, _: CanManageUsers, session: SessionDep) -> Response:
    """Soft-delete a user (admin): their tokens stop working at once."""
    await service.delete_user(session, user_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@api_clients.post("", status_code=status.HTTP_201_CREATED, operation_id="create_api_client")
async def create_api_client(
    data: ApiClientCreate, access: CanManageApiClients, session: SessionDep, response: Response
) -> ApiClientCreated:
    """Make credentials for automation. The client acts as you, with your role; its secret is
    in this answer only. Log in with `grant_type=client_credentials`."""
    created = await clients.create_client(session, access, data.name)
    response.headers["Location"] = f"/v1/api-clients/{created.client_id}"
    response.headers["Cache-Control"] = "no-store"
    return created


@api_clients.get("", operation_id="list_api_clients")
async def list_api_clients(
    access: CanManageApiClients,
    session: ReadSessionDep,
    query: ListDep,
    status: Annotated[list[ApiClientStatus] | None, Query()] = None,
    user_id: Filter = None,
) -> ApiClientPage:
    """Your API clients (an admin sees everyone's). Deleted ones show only with
    `status=deleted`."""
    total, items = await clients.list_clients(
        session, access, query, status=status or (), user_id=user_id or ()
    )
    return ApiClientPage(total_count=total, items=items)


@api_clients.get("/{client_id}", operation_id="get_api_client")
async def get_api_client(
    client_id: str, access: CanManageApiClients, session: ReadSessionDep
) -> ApiClientRead:
    return clients.client_read(await clients.get_client(session, access, client_id))


@api_clients.delete(
    "/{client_id}", status_code=status.HTTP_204_NO_CONTENT, operation_id="delete_api_client"
)
async def delete_api_client(
    client_id: str, access: CanManageApiClients, session: SessionDep
) -> Response:
    """Delete a client: its access tokens stop working at once."""
    await clients.delete_client(session, access, client_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


router.include_router(users)
router.include_router(api_clients)
