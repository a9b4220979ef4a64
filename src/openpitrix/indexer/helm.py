"""Fetch a Helm repository's index.yaml over HTTP(S) and parse it into normalized chart versions."""

from __future__ import annotations

import asyncio
import gc
import re
import ssl
import threading
import time
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final, TypeVar
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import orjson
import yaml_rs

from openpitrix.netguard import ADDRESS_NOT_ALLOWED, AddressNotAllowed

REPO_UNREACHABLE: Final = "repo_unreachable"
REPO_TIMEOUT: Final = "repo_timeout"
REPO_TLS_ERROR: Final = "repo_tls_error"
REPO_HTTP_ERROR: Final = "repo_http_error"
INDEX_TOO_LARGE: Final = "index_too_large"
INDEX_TRUNCATED: Final = "index_truncated"
INDEX_PARSE_ERROR: Final = "index_parse_error"
INDEX_NOT_HELM: Final = "index_not_helm"
INDEX_EMPTY: Final = "index_empty"

_INDEX_SUFFIXES: Final = (".yaml", ".yml", ".json")
_MESSAGE_LIMIT: Final = 200

# Helm itself never writes anchors, so real indexes replay few or no alias events; these bounds
# only bite on "billion laughs" documents, which they refuse in well under a second.
_ALIAS_LIMITS: Final = yaml_rs.AliasLimits(
    max_total_replayed_events=500_000,
    max_replay_stack_depth=32,
)


class IndexFetchError(Exception):
    """A repository index could not be fetched or is unusable; `code` is stable, `message` safe."""

    code: str
    message: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"IndexFetchError({self.code!r}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class FetchResult:
    not_modified: bool
    body: bytes
    etag: str | None
    last_modified: str | None
    url: str
    elapsed_seconds: float


@dataclass(frozen=True, slots=True)
class ChartVersion:
    name: str
    version: str
    app_version: str
    description: str
    home: str
    icon: str
    keywords: list[str]
    maintainers: list[dict[str, str]]
    sources: list[str]
    digest: str
    package_url: str
    created: datetime | None


@dataclass(frozen=True, slots=True)
class ParsedIndex:
    charts: dict[str, list[ChartVersion]]
    version_count: int
    skipped: list[str]


def index_url(repo_url: str) -> str:
    """The repository's index URL: `<repo>/index.yaml`, or the URL itself if it names a file."""
    parts = urlsplit(repo_url)
    if parts.path.lower().endswith(_INDEX_SUFFIXES):
        return repo_url
    return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/index.yaml"))


# --------------------------------------------------------------------------------------- fetch


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


async def fetch_index(
    client: httpx.AsyncClient,
    repo_url: str,
    *,
    credential: dict[str, str] | None = None,
    etag: str | None = None,
    last_modified: str | None = None,
    max_bytes: int,
    timeout: float,
) -> FetchResult:
    """GET the repository index (conditionally when validators are given), bounded in size and time.

    Every network, TLS, HTTP and size problem surfaces as an `IndexFetchError`.
    """
    try:
        url = index_url(repo_url)
        shown = _without_userinfo(url)
        secrets = _secrets_of(credential, url)
    except ValueError:
        # Not echoed: a malformed URL may still carry credentials we cannot reliably cut out.
        raise IndexFetchError(REPO_UNREACHABLE, "repository URL is not a valid URL") from None
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
        raise IndexFetchError(REPO_HTTP_ERROR, str(exc)) from None
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
        raise IndexFetchError(
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
                )
            if not 200 <= status < 300:
                raise IndexFetchError(REPO_HTTP_ERROR, f"GET {req.shown} answered HTTP {status}")
            declared = _content_length(response)
            if declared is not None and declared > _wire_limit(response, req.max_bytes):
                raise IndexFetchError(
                    INDEX_TOO_LARGE,
                    f"GET {req.shown} declares {declared} bytes, over the {req.max_bytes} limit",
                )
            in_body = True
            body = await _read_body(response, req)
            if declared is not None and response.num_bytes_downloaded < declared:
                raise IndexFetchError(
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
            )
    except IndexFetchError:
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
            raise IndexFetchError(
                INDEX_PARSE_ERROR, f"GET {self._shown} sent a corrupt gzip body: {exc}"
            ) from exc

    def finish(self) -> bytes:
        if self._member_open:
            raise IndexFetchError(
                INDEX_TRUNCATED, f"GET {self._shown} sent a gzip body that ends mid-stream"
            )
        return bytes(self._out)


def _too_large(shown: str, limit: int) -> IndexFetchError:
    return IndexFetchError(INDEX_TOO_LARGE, f"GET {shown} body exceeds the {limit} byte limit")


def _classify(exc: BaseException, req: _Request, *, in_body: bool) -> IndexFetchError:
    shown = req.shown
    reason = _reason(exc, req.secrets)
    refused = _cause(exc, AddressNotAllowed)
    if refused is not None:
        # Raised before any connection was opened, on the first hop or on a redirect.
        return IndexFetchError(
            ADDRESS_NOT_ALLOWED,
            f"GET {shown} refused: {_reason(refused, req.secrets)}, "
            "which repo fetches may not reach",
        )
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return IndexFetchError(REPO_TIMEOUT, f"GET {shown} timed out: {reason}")
    tls = _cause(exc, ssl.SSLError)
    if tls is not None and not (in_body and isinstance(tls, ssl.SSLEOFError)):
        return IndexFetchError(
            REPO_TLS_ERROR, f"GET {shown} failed TLS: {_reason(tls, req.secrets)}"
        )
    if in_body and isinstance(exc, (httpx.ReadError, httpx.RemoteProtocolError, ssl.SSLError)):
        return IndexFetchError(INDEX_TRUNCATED, f"GET {shown} body was cut short: {reason}")
    if isinstance(exc, httpx.TooManyRedirects):
        return IndexFetchError(REPO_HTTP_ERROR, f"GET {shown} redirected too many times")
    if isinstance(exc, httpx.DecodingError):
        return IndexFetchError(INDEX_PARSE_ERROR, f"GET {shown} body could not be decoded")
    if isinstance(exc, httpx.LocalProtocolError):
        # Its message quotes the offending header, which may hold a credential.
        return IndexFetchError(REPO_UNREACHABLE, f"GET {shown} could not be sent (bad header)")
    if isinstance(exc, (httpx.InvalidURL, httpx.UnsupportedProtocol)):
        return IndexFetchError(REPO_UNREACHABLE, f"{shown} is not a usable http(s) URL: {reason}")
    return IndexFetchError(REPO_UNREACHABLE, f"GET {shown} failed: {reason}")


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


def _reason(exc: BaseException, secrets: tuple[str, ...]) -> str:
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    for secret in secrets:
        text = text.replace(secret, "***")
    return _clip(text)


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


def _clip(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 3] + "..."


# --------------------------------------------------------------------------------------- parse


def parse_index(body: bytes, repo_url: str, *, allow_empty: bool = False) -> ParsedIndex:
    """Parse a Helm index (YAML or JSON) into chart versions, newest first. Run it in a thread."""
    with _gc_paused():
        document = _load(body)
        entries = _entries_of(document)
        return _normalize(entries, _package_base(repo_url), allow_empty=allow_empty)


_BOM: Final = b"\xef\xbb\xbf"
_LEADING_SPACE: Final = re.compile(rb"[ \t\r\n]*")


def _load(body: bytes) -> object:
    start = len(_BOM) if body.startswith(_BOM) else 0
    first = _LEADING_SPACE.match(body, start)
    is_json = first is not None and body[first.end() : first.end() + 1] == b"{"
    try:
        if is_json:
            return orjson.loads(memoryview(body)[start:])
        text = body[start:].decode("utf-8")
        return yaml_rs.loads(
            text,
            parse_datetime=False,
            alias_limits=_ALIAS_LIMITS,
            duplicate_key_policy=yaml_rs.DuplicateKeyPolicy.LastWins,
        )
    except UnicodeDecodeError as exc:
        raise IndexFetchError(
            INDEX_PARSE_ERROR, f"index is not UTF-8 text (bad byte at offset {exc.start + start})"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:
        # Parsers report many failure kinds (syntax, depth, alias limits); all mean "unreadable".
        kind = "JSON" if is_json else "YAML"
        raise IndexFetchError(
            INDEX_PARSE_ERROR, f"index is not valid {kind}: {_reason(exc, ())}"
        ) from None


def _entries_of(document: object) -> dict[Any, Any]:
    if not isinstance(document, dict):
        kind = "empty" if document is None else f"a {type(document).__name__}"
        raise IndexFetchError(
            INDEX_NOT_HELM, f"index is {kind}, not a Helm index (a mapping with `entries`)"
        )
    if "entries" not in document:
        raise IndexFetchError(INDEX_NOT_HELM, "index has no `entries`: not a Helm index")
    entries = document["entries"]
    if entries is None:
        # `entries:` with nothing under it is how an empty repository can look.
        return {}
    if not isinstance(entries, dict):
        raise IndexFetchError(
            INDEX_NOT_HELM,
            f"index `entries` is a {type(entries).__name__}, not a mapping of chart names",
        )
    if entries and not any(isinstance(versions, list) for versions in entries.values()):
        raise IndexFetchError(
            INDEX_NOT_HELM, "index `entries` holds no lists of chart versions: not a Helm index"
        )
    return entries


def _normalize(entries: dict[Any, Any], package_base: str, *, allow_empty: bool) -> ParsedIndex:
    charts: dict[str, list[ChartVersion]] = {}
    skipped: list[str] = []
    count = 0
    for key, raw_versions in entries.items():
        chart = _text(key)
        if not chart:
            skipped.append(f"chart {key!r}: not a usable chart name")
            continue
        if not isinstance(raw_versions, list):
            skipped.append(f"chart {chart!r}: versions are a {type(raw_versions).__name__}")
            continue
        seen: set[str] = set()
        versions: list[ChartVersion] = []
        for position, raw in enumerate(raw_versions):
            if not isinstance(raw, dict):
                skipped.append(f"{chart}[{position}]: entry is not a mapping")
                continue
            version = _text(raw.get("version"))
            if not _text(raw.get("name")):
                skipped.append(f"{chart}[{position}]: missing name")
                continue
            if not version:
                skipped.append(f"{chart}[{position}]: missing version")
                continue
            if version in seen:
                skipped.append(f"{chart}[{position}]: duplicate version {version!r}")
                continue
            chart_version = _chart_version(chart, version, raw, package_base)
            if chart_version.package_url and not _is_web_url(chart_version.package_url):
                # Deploys fetch packages over http(s) only; another scheme (file:, oci:, ...)
                # would only fail there, or reach what it should not.
                skipped.append(
                    f"{chart}[{position}]: package URL "
                    f"{_clip(repr(chart_version.package_url))} is not http(s)"
                )
                continue
            seen.add(version)
            versions.append(chart_version)
        if versions:
            versions.sort(key=_sort_key_of, reverse=True)
            charts[chart] = versions
            count += len(versions)
    if count == 0 and not allow_empty:
        detail = f" ({len(skipped)} entries skipped, first: {skipped[0]})" if skipped else ""
        raise IndexFetchError(INDEX_EMPTY, _clip(f"index lists no valid chart versions{detail}"))
    return ParsedIndex(charts=charts, version_count=count, skipped=skipped)


def _chart_version(
    chart: str, version: str, raw: dict[Any, Any], package_base: str
) -> ChartVersion:
    get = raw.get
    urls = get("urls")
    first_url = _text(urls[0]) if isinstance(urls, list) and urls else ""
    return ChartVersion(
        name=chart,
        version=version,
        app_version=_text(get("appVersion")),
        description=_text(get("description")),
        home=_web_url(get("home")),
        icon=_web_url(get("icon")),
        keywords=_text_list(get("keywords")),
        maintainers=_maintainers(get("maintainers")),
        sources=[url for url in _text_list(get("sources")) if _is_web_url(url)],
        digest=_text(get("digest")),
        package_url=_resolve(first_url, package_base),
        created=_parse_created(get("created")),
    )


def _sort_key_of(chart_version: ChartVersion) -> _VersionKey:
    return version_sort_key(chart_version.version)


def _text(value: object) -> str:
    # YAML hands unquoted scalars back typed (`version: 1.10` is the float 1.1); keep their text.
    if isinstance(value, str):
        return value
    if isinstance(value, int | float):
        return str(value)
    return ""


def _is_web_url(value: str) -> bool:
    # Catalog links are shown to people and followed by browsers: a `javascript:` or `data:`
    # one would run in the console's origin.
    return value[:8].lower().startswith(("https://", "http://"))


def _web_url(value: object) -> str:
    text = _text(value)
    return text if _is_web_url(text) else ""


def _text_list(value: object) -> list[str]:
    if not isinstance(value, list):
        return []
    return [item if isinstance(item, str) else str(item) for item in value if _is_scalar(item)]


def _is_scalar(value: object) -> bool:
    return isinstance(value, str | int | float)


def _maintainers(value: object) -> list[dict[str, str]]:
    if not isinstance(value, list):
        return []
    result: list[dict[str, str]] = []
    for item in value:
        if not isinstance(item, dict):
            continue
        person = {k: v for k in ("name", "email") if isinstance(v := item.get(k), str)}
        if isinstance(url := item.get("url"), str) and _is_web_url(url):
            person["url"] = url
        if person:
            result.append(person)
    return result


# Go's RFC 3339 output carries nanoseconds; older fromisoformat implementations take at most 6.
_EXTRA_FRACTION: Final = re.compile(r"(\.\d{6})\d+")


def _parse_created(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = datetime.fromisoformat(_EXTRA_FRACTION.sub(r"\1", value, count=1))
        except ValueError:
            return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC)


def _package_base(repo_url: str) -> str:
    """The directory package URLs are relative to, with any credentials in the URL dropped."""
    parts = urlsplit(repo_url)
    path = parts.path
    if not path.lower().endswith(_INDEX_SUFFIXES):
        path = path.rstrip("/") + "/"
    directory = path[: path.rfind("/") + 1] or "/"
    # Package URLs end up stored and shown; userinfo from the repo URL must not ride along.
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, directory, "", ""))


# A bare file name ("mychart-1.0.0.tgz") joins by concatenation; urljoin costs ~6 us a call,
# which adds up over tens of thousands of versions.
_PLAIN_NAME: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+~-]*")


def _resolve(ref: str, base: str) -> str:
    if not ref:
        return ""
    if ref.startswith(("https://", "http://")):
        return ref
    if _PLAIN_NAME.fullmatch(ref):
        return base + ref
    return urljoin(base, ref)


@contextmanager
def _gc_paused() -> Iterator[None]:
    # Loading a large index creates ~1M containers that all survive until we return; the cyclic
    # collector rescanning them repeatedly doubles parse time. They hold no cycles, so pausing
    # the collector is safe. Counted so concurrent parses in other threads don't re-enable it early.
    with _gc_state.lock:
        if _gc_state.pausers == 0:
            _gc_state.was_enabled = gc.isenabled()
            gc.disable()
        _gc_state.pausers += 1
    try:
        yield
    finally:
        with _gc_state.lock:
            _gc_state.pausers -= 1
            if _gc_state.pausers == 0 and _gc_state.was_enabled:
                gc.enable()


class _GcState:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.pausers = 0
        self.was_enabled = False


_gc_state: Final = _GcState()


# ------------------------------------------------------------------------------------- versions

_VersionKey = tuple[int, tuple[int, ...], int, tuple[tuple[int, int, str], ...], str]

_SEMVER: Final = re.compile(
    r"v?(?P<core>[0-9]+(?:\.[0-9]+){0,2})"
    r"(?:-(?P<pre>[0-9A-Za-z.-]+))?"
    r"(?:\+[0-9A-Za-z.-]+)?"
)


@lru_cache(maxsize=8192)
def version_sort_key(version: str) -> _VersionKey:
    """Sort key in semantic-version order; non-semver strings sort below all semver, by text.

    Tolerant like Helm: a leading "v" and missing minor/patch ("1.8") are accepted, build
    metadata is ignored, and numeric pre-release identifiers rank below alphanumeric ones.
    """
    match = _SEMVER.fullmatch(version.strip())
    if match is None:
        return (0, (), 0, (), version)
    numbers = [int(part) for part in match["core"].split(".")]
    numbers += [0] * (3 - len(numbers))
    pre = match["pre"]
    if pre is None:
        # A release outranks every pre-release of the same core version.
        return (1, tuple(numbers), 1, (), version)
    identifiers = tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part) for part in pre.split(".")
    )
    return (1, tuple(numbers), 0, identifiers, version)
