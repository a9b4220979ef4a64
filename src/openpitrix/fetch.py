"""One HTTP GET for what repos serve (indexes, chart packages): a repo credential, a size cap
that holds through gzip, one overall deadline, and errors with stable codes and no secrets."""

from __future__ import annotations

import asyncio
import ssl
import time
import zlib
from dataclasses import dataclass
from typing import Final, TypeVar
from urllib.parse import urlsplit, urlunsplit

import httpx

from openpitrix.netguard import ADDRESS_NOT_ALLOWED, AddressNotAllowed

# The codes name a repo and its index, the first thing fetched this way; a caller fetching
# something else (a chart package) maps them to its own.
REPO_UNREACHABLE: Final = "repo_unreachable"
REPO_TIMEOUT: Final = "repo_timeout"
REPO_TLS_ERROR: Final = "repo_tls_error"
REPO_HTTP_ERROR: Final = "repo_http_error"
INDEX_TOO_LARGE: Final = "index_too_large"
INDEX_TRUNCATED: Final = "index_truncated"
INDEX_PARSE_ERROR: Final = "index_parse_error"

_MESSAGE_LIMIT: Final = 200


class FetchError(Exception):
    """A GET that failed or whose body is unusable; `code` is stable, `message` safe (no secret),
    `status` the HTTP status when the server answered with an error."""

    code: str
    message: str
    status: int | None

    def __init__(self, code: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status

    def __repr__(self) -> str:
        return f"FetchError({self.code!r}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class FetchResult:
    not_modified: bool
    body: bytes
    etag: str | None
    last_modified: str | None
    url: str
    elapsed_seconds: float
    status: int


def credential_auth(
    credential: dict[str, str] | None,
) -> tuple[dict[str, str], httpx.Auth | None]:
    """The headers and auth a repo credential adds to its requests (index and packages).

    Raises ValueError for a token an HTTP header cannot carry: checked here because httpx's own
    error for a bad header value quotes the value.
    """
    if not credential:
        return {}, None
    token = credential.get("token")
    if token:
        if not (token.isascii() and token.isprintable()) or token != token.strip():
            raise ValueError("bearer token has characters an HTTP header cannot carry")
        return {"Authorization": f"Bearer {token}"}, None
    if credential.get("username") or credential.get("password"):
        auth = httpx.BasicAuth(credential.get("username", ""), credential.get("password", ""))
        return {}, auth
    return {}, None


async def fetch(
    client: httpx.AsyncClient,
    url: str,
    *,
    credential: dict[str, str] | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    max_bytes: int,
    timeout: float,
) -> FetchResult:
    """GET `url` with a repo credential (conditionally when validators are given), bounded in
    size and time. Every network, TLS, HTTP and size problem surfaces as a `FetchError`."""
    try:
        shown = _without_userinfo(url)
        secrets = _secrets_of(credential, url)
    except ValueError:
        # Not echoed: a malformed URL may still carry credentials we cannot reliably cut out.
        raise FetchError(REPO_UNREACHABLE, "repository URL is not a valid URL") from None
    # Asking for gzip only (not httpx's default list) lets us inflate with a hard output cap,
    # so a compression bomb is stopped at max_bytes instead of after a 1000x expansion per read.
    headers = {"Accept-Encoding": "gzip"}
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    try:
        auth_headers, auth = credential_auth(credential)
    except ValueError as exc:
        raise FetchError(REPO_HTTP_ERROR, str(exc)) from None
    headers.update(auth_headers)

    request = _Request(
        url=url,
        shown=shown,
        secrets=secrets,
        headers=headers,
        auth=auth,
        etag=etag,
        last_modified=last_modified,
        max_bytes=max_bytes,
        timeout=timeout,
        started=time.perf_counter(),
    )
    try:
        # httpx's timeout bounds each connect/read separately; a server trickling bytes slowly
        # could stretch those forever, so the whole fetch also gets one overall deadline.
        async with asyncio.timeout(timeout):
            return await _fetch(client, request)
    except TimeoutError:
        raise FetchError(
            REPO_TIMEOUT, f"GET {shown} did not complete within {timeout:g} s"
        ) from None


@dataclass(frozen=True, slots=True)
class _Request:
    url: str
    shown: str
    secrets: tuple[str, ...]
    headers: dict[str, str]
    auth: httpx.Auth | None
    etag: str | None
    last_modified: str | None
    max_bytes: int
    timeout: float
    started: float


async def _fetch(client: httpx.AsyncClient, req: _Request) -> FetchResult:
    in_body = False
    try:
        async with client.stream(
            "GET",
            req.url,
            headers=req.headers,
            auth=req.auth if req.auth is not None else httpx.USE_CLIENT_DEFAULT,
            follow_redirects=True,
            timeout=httpx.Timeout(req.timeout),
        ) as response:
            status = response.status_code
            if status == 304:
                # A 304 may omit validators; the ones we sent still describe the cached body.
                return FetchResult(
                    not_modified=True,
                    body=b"",
                    etag=response.headers.get("etag") or req.etag,
                    last_modified=response.headers.get("last-modified") or req.last_modified,
                    url=req.url,
                    elapsed_seconds=time.perf_counter() - req.started,
                    status=status,
                )
            if not 200 <= status < 300:
                raise FetchError(
                    REPO_HTTP_ERROR, f"GET {req.shown} answered HTTP {status}", status=status
                )
            declared = _content_length(response)
            if declared is not None and declared > _wire_limit(response, req.max_bytes):
                raise FetchError(
                    INDEX_TOO_LARGE,
                    f"GET {req.shown} declares {declared} bytes, over the {req.max_bytes} limit",
                )
            in_body = True
            body = await _read_body(response, req)
            if declared is not None and response.num_bytes_downloaded < declared:
                raise FetchError(
                    INDEX_TRUNCATED,
                    f"GET {req.shown} ended after {response.num_bytes_downloaded} of "
                    f"{declared} bytes",
                )
            return FetchResult(
                not_modified=False,
                body=body,
                etag=response.headers.get("etag"),
                last_modified=response.headers.get("last-modified"),
                url=req.url,
                elapsed_seconds=time.perf_counter() - req.started,
                status=status,
            )
    except FetchError:
        raise
    except (httpx.HTTPError, httpx.InvalidURL, ssl.SSLError, OSError) as exc:
        raise _classify(exc, req, in_body=in_body) from exc


def _wire_limit(response: httpx.Response, max_bytes: int) -> int:
    """The largest Content-Length that could still decode to at most `max_bytes`."""
    if response.headers.get("content-encoding", "identity").strip().lower() == "identity":
        return max_bytes
    # Compression can enlarge small or incompressible bodies: gzip adds a header and trailer
    # (~20 bytes, more with a file name) and 5 bytes per stored block of up to 64 KiB.
    return max_bytes + max_bytes // 1000 + 1024


def _content_length(response: httpx.Response) -> int | None:
    raw = response.headers.get("content-length")
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        return None
    return value if value >= 0 else None


async def _read_body(response: httpx.Response, req: _Request) -> bytes:
    encoding = response.headers.get("content-encoding", "").strip().lower()
    if encoding in ("gzip", "x-gzip"):
        inflater = _BoundedGunzip(req.max_bytes, req.shown)
        async for raw in response.aiter_raw():
            inflater.feed(raw)
        return inflater.finish()

    # Identity bodies are counted as they arrive; any other coding the server forced on us is
    # left to httpx's decoder, still counted per decoded chunk.
    chunks = response.aiter_raw() if encoding in ("", "identity") else response.aiter_bytes()
    buffer = bytearray()
    async for chunk in chunks:
        buffer += chunk
        if len(buffer) > req.max_bytes:
            raise _too_large(req.shown, req.max_bytes)
    return bytes(buffer)


class _BoundedGunzip:
    """Inflate a gzip stream (possibly several members) without ever exceeding `limit` bytes."""

    def __init__(self, limit: int, shown: str) -> None:
        self._limit = limit
        self._shown = shown
        self._out = bytearray()
        self._inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
        self._member_open = False

    def feed(self, data: bytes) -> None:
        try:
            while data:
                self._member_open = True
                # One byte over the limit is enough to prove the body too large.
                room = self._limit - len(self._out) + 1
                self._out += self._inflater.decompress(data, room)
                if len(self._out) > self._limit:
                    raise _too_large(self._shown, self._limit)
                if self._inflater.eof:
                    # RFC 1952 allows concatenated members; start a fresh inflater for the next.
                    data = self._inflater.unused_data
                    self._inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
                    self._member_open = False
                else:
                    data = self._inflater.unconsumed_tail
        except zlib.error as exc:
            raise FetchError(
                INDEX_PARSE_ERROR, f"GET {self._shown} sent a corrupt gzip body: {exc}"
            ) from exc

    def finish(self) -> bytes:
        if self._member_open:
            raise FetchError(
                INDEX_TRUNCATED, f"GET {self._shown} sent a gzip body that ends mid-stream"
            )
        return bytes(self._out)


def _too_large(shown: str, limit: int) -> FetchError:
    return FetchError(INDEX_TOO_LARGE, f"GET {shown} body exceeds the {limit} byte limit")


def _classify(exc: BaseException, req: _Request, *, in_body: bool) -> FetchError:
    shown = req.shown
    reason = error_reason(exc, req.secrets)
    refused = _cause(exc, AddressNotAllowed)
    if refused is not None:
        # Raised before any connection was opened, on the first hop or on a redirect.
        return FetchError(
            ADDRESS_NOT_ALLOWED,
            f"GET {shown} refused: {error_reason(refused, req.secrets)}, "
            "which repo fetches may not reach",
        )
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return FetchError(REPO_TIMEOUT, f"GET {shown} timed out: {reason}")
    tls = _cause(exc, ssl.SSLError)
    if tls is not None and not (in_body and isinstance(tls, ssl.SSLEOFError)):
        return FetchError(
            REPO_TLS_ERROR, f"GET {shown} failed TLS: {error_reason(tls, req.secrets)}"
        )
    if in_body and isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)):
        return FetchError(INDEX_TRUNCATED, f"GET {shown} body was cut short: {reason}")
    if isinstance(exc, httpx.TooManyRedirects):
        return FetchError(REPO_HTTP_ERROR, f"GET {shown} redirected too many times")
    if isinstance(exc, httpx.DecodingError):
        return FetchError(INDEX_PARSE_ERROR, f"GET {shown} body could not be decoded")
    if isinstance(exc, httpx.LocalProtocolError):
        # Its message quotes the offending header, which may hold a credential.
        return FetchError(REPO_UNREACHABLE, f"GET {shown} could not be sent (bad header)")
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return FetchError(REPO_UNREACHABLE, f"{shown} is not a usable http(s) URL: {reason}")
    return FetchError(REPO_UNREACHABLE, f"GET {shown} failed: {reason}")


_E = TypeVar("_E", bound=BaseException)


def _cause(exc: BaseException, kind: type[_E]) -> _E | None:
    # httpx wraps httpcore's error, which wraps the original one; follow both explicit and
    # implicit chaining, guarding against cycles.
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        current = current.__cause__ or current.__context__
    return None


def error_reason(exc: BaseException, secrets: tuple[str, ...]) -> str:
    """The first line of an error's text, with the given secrets masked, clipped."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    for secret in secrets:
        text = text.replace(secret, "***")
    return clip_message(text)


def _secrets_of(credential: dict[str, str] | None, url: str) -> tuple[str, ...]:
    values = [v for k, v in (credential or {}).items() if k in ("password", "token") and v]
    password = urlsplit(url).password
    if password:
        values.append(password)
    return tuple(values)


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def clip_message(text: str) -> str:
    """Bounded, so one odd answer cannot make a huge error message."""
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."
