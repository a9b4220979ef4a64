"""Request dependencies of identity: the token signer, the caller, and per-route authorization."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.responses import Response
from fastapi.security import OAuth2PasswordBearer

from openpitrix.api.handlers import LeanRoute
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
) -> Caller:
    """The caller behind the bearer token. The user row, not the token, decides: a deleted
    user's or revoked client's token stops working at once (on every gateway within
    `auth.check_cache_seconds` at worst), a role change applies to tokens already issued, and
    a password change voids the access tokens issued before it."""
    return await caller_of(request)


def _bearer(request: Request) -> str | None:
    """The token of `Authorization: Bearer <token>`, as OAuth2PasswordBearer reads it."""
    authorization = request.headers.get("authorization")
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    return token if scheme.lower() == "bearer" else None


async def caller_of(request: Request) -> Caller:
    """`authenticate` without FastAPI's dependency solving: once per request (the result is
    kept in the scope, where AuthenticatedRoute may already have put it)."""
    cached = request.scope.get(_CALLER_KEY)
    if cached is not None:
        return cached  # type: ignore[no-any-return]
    state = request.app.state
    caller = await _caller(_bearer(request), state.access_tokens, state.auth_cache)
    request.scope[_CALLER_KEY] = caller
    return caller


# The Caller made from a token and the facts read for it, reused while the cache hands out
# the very same facts objects (a refresh or a change makes new ones): the checks below are a
# function of those three things only. Bounded like the verified tokens.
_callers: dict[str, tuple[object, object, Caller]] = {}
MAX_CALLERS = 10_000


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
    known = _callers.get(token)
    if known is not None and known[0] is user and known[1] is client:
        return known[2]
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
    caller = Caller(
        user_id=claims.user_id,
        role=Role(user.role),
        group_path=user.group_path,
        client_id=claims.client_id,
    )
    if len(_callers) >= MAX_CALLERS:
        _callers.clear()
    _callers[token] = (user, client, caller)
    return caller


_CALLER_KEY = "openpitrix.caller"


def _needs_caller(dependant: Dependant) -> bool:
    return any(
        d.call is authenticate or isinstance(d.call, Authorize) or _needs_caller(d)
        for d in dependant.dependencies
    )


class AuthenticatedRoute(LeanRoute):
    """A route that checks the bearer token before it reads the request body.

    FastAPI reads and parses a body before it solves any dependency, so without this a caller
    with no token could make the gateway take in a whole body (up to the size limit) only to
    be told 401. Routes without a body, or without authentication, are left as they are."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if self.body_field is None or not _needs_caller(self.dependant):
            return handler

        async def authenticate_first(request: Request) -> Response:
            await caller_of(request)
            return await handler(request)

        return authenticate_first


INVALID = "the access token is invalid or expired"


class Authorize(OAuth2PasswordBearer):
    """Dependency naming the one operation a route performs; the authorization matrix test
    finds it on every route, so a route without a rule cannot slip in.

    It checks the bearer token itself (one dependency, where the token, the signer, the
    caller and the operation were four that FastAPI solved on every request, ~40% of a token
    check's time), and being the OAuth2 password-flow scheme it still puts the scheme on
    the operation in the OpenAPI document, under the same name."""

    def __init__(self, op: Op) -> None:
        super().__init__(
            tokenUrl=TOKEN_URL,
            scheme_name=oauth2_scheme.scheme_name,
            auto_error=False,
            description=oauth2_scheme.model.description,
        )
        self.op = op
        self._access: dict[Caller, Access] = {}

    async def __call__(self, request: Request) -> Access:  # type: ignore[override]
        caller = await caller_of(request)
        access = self._access.get(caller)
        if access is None:
            access = caller.access(self.op)  # Forbidden (403) is raised, never kept
            if len(self._access) >= MAX_CALLERS:
                self._access.clear()
            self._access[caller] = access
        return access


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
