"""Request dependencies of identity: the token signer, the caller, and per-route authorization."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import Response
from fastapi.routing import APIRoute
from fastapi.security import OAuth2PasswordBearer

from openpitrix.errors import AppError
from openpitrix.iam.access import Access, Caller, Op
from openpitrix.iam.authcache import AuthCache
from openpitrix.iam.schemas import ApiClientStatus, Role, UserStatus
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
        # RFC 6750 §3: a 401 carries the challenge, naming a token that was sent but failed.
        challenge = 'Bearer error="invalid_token"' if bad_token else "Bearer"
        super().__init__(message, headers={"WWW-Authenticate": challenge})


async def get_access_tokens(request: Request) -> AccessTokens:  # async: no thread hop
    signer: AccessTokens = request.app.state.access_tokens
    return signer


AccessTokensDep = Annotated[AccessTokens, Depends(get_access_tokens)]


async def authenticate(
    request: Request,
    token: Annotated[str | None, Depends(oauth2_scheme)],
    signer: AccessTokensDep,
) -> Caller:
    """The caller behind the bearer token. The user row, not the token, decides: a deleted
    user's or revoked client's token stops working at once (on every gateway within
    `auth.check_cache_seconds` at worst), a role change applies to tokens already issued, and
    a password change voids the access tokens issued before it."""
    cached = request.scope.get(_CALLER_KEY)
    if isinstance(cached, Caller):
        return cached  # AuthenticatedRoute already checked it, before reading the body
    caller = await _caller(token, signer, request.app.state.auth_cache)
    request.scope[_CALLER_KEY] = caller
    return caller


async def _caller(token: str | None, signer: AccessTokens, cache: AuthCache) -> Caller:
    if not token:
        raise Unauthorized("a bearer token is required")
    try:
        claims = signer.decode(token)
    except InvalidToken:
        # One message for every reason: a client cannot act differently on them, and telling
        # an attacker which check failed helps nobody else.
        raise Unauthorized(INVALID, bad_token=True) from None
    # The user's and client's current facts, read at most `auth.check_cache_seconds` ago and
    # dropped as soon as a change to them commits (see iam.authcache).
    user, client = await cache.facts(claims.user_id, claims.client_id)
    if user is None or user.status != UserStatus.ACTIVE:
        raise Unauthorized(INVALID, bad_token=True)
    if user.tokens_valid_after is not None and claims.issued_at < user.tokens_valid_after:
        raise Unauthorized(INVALID, bad_token=True)
    if claims.client_id is not None and (
        client is None
        or client.status != ApiClientStatus.ACTIVE
        or client.user_id != claims.user_id
    ):
        raise Unauthorized(INVALID, bad_token=True)
    return Caller(
        user_id=claims.user_id,
        role=Role(user.role),
        group_path=user.group_path,
        client_id=claims.client_id,
    )


_CALLER_KEY = "openpitrix.caller"


def _needs_caller(dependant: Dependant) -> bool:
    return any(d.call is authenticate or _needs_caller(d) for d in dependant.dependencies)


class AuthenticatedRoute(APIRoute):
    """A route that checks the bearer token before it reads the request body.

    FastAPI reads and parses a body before it solves any dependency, so without this a caller
    with no token could make the gateway take in a whole body (up to the size limit) only to
    be told 401. Routes without a body, or without authentication, are left as they are."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None or not _needs_caller(self.dependant):
            return handler

        async def authenticate_first(request: Request) -> Response:
            token = await oauth2_scheme(request)
            state = request.app.state
            request.scope[_CALLER_KEY] = await _caller(token, state.access_tokens, state.auth_cache)
            return await handler(request)

        return authenticate_first


INVALID = "the access token is invalid or expired"


class Authorize:
    """Dependency naming the one operation a route performs; the authorization matrix test
    finds it on every route, so a route without a rule cannot slip in."""

    def __init__(self, op: Op) -> None:
        self.op = op

    async def __call__(self, caller: Annotated[Caller, Depends(authenticate)]) -> Access:
        return caller.access(self.op)


def _can(op: Op) -> Any:
    return Depends(Authorize(op))


CanReadRepos = Annotated[Access, _can(Op.REPO_READ)]
CanWriteRepos = Annotated[Access, _can(Op.REPO_WRITE)]
CanReadApps = Annotated[Access, _can(Op.APP_READ)]
CanReadJobs = Annotated[Access, _can(Op.JOB_READ)]
CanReadEvents = Annotated[Access, _can(Op.EVENT_READ)]
CanActAsSelf = Annotated[Access, _can(Op.SELF)]
CanManageApiClients = Annotated[Access, _can(Op.API_CLIENT)]
CanManageUsers = Annotated[Access, _can(Op.USER_ADMIN)]
CanWriteJobs = Annotated[Access, _can(Op.JOB_WRITE)]
CanReadClusters = Annotated[Access, _can(Op.CLUSTER_READ)]
CanWriteClusters = Annotated[Access, _can(Op.CLUSTER_WRITE)]
CanReadRuntimes = Annotated[Access, _can(Op.RUNTIME_READ)]
CanWriteRuntimes = Annotated[Access, _can(Op.RUNTIME_WRITE)]
