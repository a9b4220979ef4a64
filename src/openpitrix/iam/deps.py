"""Request dependencies of identity: the token signer, the current user, role checks."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import OAuth2PasswordBearer

from openpitrix.api.deps import PlatformDep
from openpitrix.api.errors import error_response
from openpitrix.errors import AppError
from openpitrix.iam.models import User
from openpitrix.iam.schemas import Role, UserStatus
from openpitrix.iam.tokens import AccessTokens, InvalidToken

TOKEN_URL = "/v1/oauth2/token"  # noqa: S105 (a path, not a secret)

# auto_error=False: FastAPI's own 401 would not have our error shape. The scheme is what puts
# the password flow into the OpenAPI document, so Swagger UI's "Authorize" button works.
oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl=TOKEN_URL,
    auto_error=False,
    description="Log in with your email as username; send `Authorization: Bearer <token>`.",
)


class Unauthorized(AppError):
    status_code = 401
    code = "unauthorized"

    def __init__(self, message: str, *, bad_token: bool = False) -> None:
        super().__init__(message)
        self.bad_token = bad_token


class Forbidden(AppError):
    status_code = 403
    code = "forbidden"


def install_auth_error_handler(app: FastAPI) -> None:
    """401s carry `WWW-Authenticate` (RFC 6750 §3), which the generic AppError handler lacks."""

    async def _unauthorized(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, Unauthorized)
        resp: JSONResponse = error_response(exc.status_code, exc.code, exc.message, exc.details)
        resp.headers["WWW-Authenticate"] = (
            'Bearer error="invalid_token"' if exc.bad_token else "Bearer"
        )
        return resp

    app.add_exception_handler(Unauthorized, _unauthorized)


def get_access_tokens(request: Request) -> AccessTokens:
    signer: AccessTokens = request.app.state.access_tokens
    return signer


AccessTokensDep = Annotated[AccessTokens, Depends(get_access_tokens)]


async def get_current_user(
    token: Annotated[str | None, Depends(oauth2_scheme)],
    signer: AccessTokensDep,
    platform: PlatformDep,
) -> User:
    if not token:
        raise Unauthorized("a bearer token is required")
    try:
        claims = signer.decode(token)
    except InvalidToken:
        # One message for every reason: a client cannot act differently on them, and telling
        # an attacker which check failed helps nobody else.
        raise Unauthorized("the access token is invalid or expired", bad_token=True) from None
    async with platform.db.read_session() as session:
        user = await session.get(User, claims.user_id)
    # The user row, not the token, decides: a deleted user's token stops working at once, and a
    # role change applies to tokens already issued.
    if user is None or user.status != UserStatus.ACTIVE:
        raise Unauthorized("the access token is invalid or expired", bad_token=True)
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


async def require_admin(user: CurrentUser) -> User:
    if user.role != Role.ADMIN:
        raise Forbidden("this operation needs the admin role")
    return user


AdminUser = Annotated[User, Depends(require_admin)]
