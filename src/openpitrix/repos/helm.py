"""Fetch a Helm repository's index.yaml over HTTP(S) and parse it into normalized chart versions."""

from __future__ import annotations

import gc
import re
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Final
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx
import orjson
import yaml_rs

from openpitrix.fetch import (
    INDEX_PARSE_ERROR,
    REPO_UNREACHABLE,
    FetchError,
    FetchResult,
    clip_message,
    error_reason,
    fetch,
)
from openpitrix.repos.index_chunks import SplitIndex, split_index

INDEX_NOT_HELM: Final = "index_not_helm"
INDEX_EMPTY: Final = "index_empty"
# What an index entry's package is: a Helm chart, or an OpenPitrix VM package (see package_kind).
HELM: Final = "helm"
VM: Final = "vm"
# An index entry (a chart's Chart.yaml annotations, or a hand-written entry) may say its kind.
PACKAGE_KIND_ANNOTATION: Final = "openpitrix.io/package-kind"

_INDEX_SUFFIXES: Final = (".yaml", ".yml", ".json")
_MESSAGE_LIMIT: Final = 200

# Helm itself never writes anchors, so real indexes replay few or no alias events; these bounds
# only bite on "billion laughs" documents, which they refuse in well under a second.
_ALIAS_EVENTS: Final = 500_000
_ALIAS_DEPTH: Final = 32
_ALIAS_LIMITS: Final = yaml_rs.AliasLimits(
    max_total_replayed_events=_ALIAS_EVENTS, max_replay_stack_depth=_ALIAS_DEPTH
)


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
    package_kind: str = HELM


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

    Every network, TLS, HTTP and size problem surfaces as a `FetchError`.
    """
    try:
        url = index_url(repo_url)
    except ValueError:
        # Not echoed: a malformed URL may still carry credentials we cannot reliably cut out.
        raise FetchError(REPO_UNREACHABLE, "repository URL is not a valid URL") from None
    return await fetch(
        client,
        url,
        credential=credential,
        etag=etag,
        last_modified=last_modified,
        max_bytes=max_bytes,
        timeout=timeout,
    )


# --------------------------------------------------------------------------------------- parse


def parse_index(body: bytes, repo_url: str, *, allow_empty: bool = False) -> ParsedIndex:
    """Parse a Helm index (YAML or JSON) into chart versions, newest first. Run it in a thread.

    A large index in Helm's own block layout is parsed a few charts at a time, so only one
    piece's tree is alive at once; the result is the one the whole document would give, and
    any other layout (or a piece that will not parse alone) is parsed whole.
    """
    base = _package_base(repo_url)
    with _gc_paused():
        start = len(_BOM) if body.startswith(_BOM) else 0
        split = split_index(body, start, f"openpitrix-entries-{uuid.uuid4().hex}")
        if split is not None:
            parsed = _parse_pieces(split, base, allow_empty=allow_empty)
            if parsed is not None:
                return parsed
        document = _load(body)
        entries = _entries_of(document)
        assert isinstance(document, dict)
        normalizer = _Normalizer(base, _index_kind(document))
        for key, raw_versions in entries.items():
            normalizer.add(key, raw_versions)
        return normalizer.result(allow_empty=allow_empty)


_BOM: Final = b"\xef\xbb\xbf"
_LEADING_SPACE: Final = re.compile(rb"[ \t\r\n]*")


def _loads_yaml(text: str, limits: yaml_rs.AliasLimits) -> object:
    return yaml_rs.loads(
        text,
        parse_datetime=False,
        alias_limits=limits,
        duplicate_key_policy=yaml_rs.DuplicateKeyPolicy.LastWins,
    )


def _load(body: bytes) -> object:
    start = len(_BOM) if body.startswith(_BOM) else 0
    first = _LEADING_SPACE.match(body, start)
    is_json = first is not None and body[first.end() : first.end() + 1] == b"{"
    try:
        if is_json:
            return orjson.loads(memoryview(body)[start:])
        return _loads_yaml(body[start:].decode("utf-8"), _ALIAS_LIMITS)
    except UnicodeDecodeError as exc:
        raise FetchError(
            INDEX_PARSE_ERROR, f"index is not UTF-8 text (bad byte at offset {exc.start + start})"
        ) from None
    except MemoryError:
        raise
    except Exception as exc:
        # Parsers report many failure kinds (syntax, depth, alias limits); all mean "unreadable".
        kind = "JSON" if is_json else "YAML"
        raise FetchError(
            INDEX_PARSE_ERROR, f"index is not valid {kind}: {error_reason(exc, ())}"
        ) from None


def _parse_pieces(split: SplitIndex, base: str, *, allow_empty: bool) -> ParsedIndex | None:
    """The index parsed piece by piece, or None when the whole document must be parsed: an
    outline or piece that will not parse alone, or a chart name repeated across pieces."""
    # The pieces share one alias budget (half the outline's, half theirs), so a document that
    # ends up parsed whole after all costs at most twice the whole-document bound.
    pieces = len(split.cuts) - 1
    outline_limits = yaml_rs.AliasLimits(
        max_total_replayed_events=_ALIAS_EVENTS // 2, max_replay_stack_depth=_ALIAS_DEPTH
    )
    piece_limits = yaml_rs.AliasLimits(
        max_total_replayed_events=max(1, _ALIAS_EVENTS // 2 // pieces),
        max_replay_stack_depth=_ALIAS_DEPTH,
    )
    try:
        document = _loads_yaml(split.outline.decode("utf-8"), outline_limits)
    except MemoryError:
        raise
    except Exception:
        return None
    if not isinstance(document, dict) or document.get("entries") != split.marker:
        return None
    normalizer = _Normalizer(base, _index_kind(document))
    del document
    any_list = False
    for piece in split.pieces():
        try:
            loaded = _loads_yaml(piece.decode("utf-8"), piece_limits)
        except MemoryError:
            raise
        except Exception:
            return None
        entries = loaded.get("entries") if isinstance(loaded, dict) else None
        if not isinstance(entries, dict) or len(loaded) != 1:  # type: ignore[arg-type]
            return None
        for key, raw_versions in entries.items():
            if not normalizer.add_new(key, raw_versions):
                return None
            any_list = any_list or isinstance(raw_versions, list)
    if not any_list:
        raise FetchError(
            INDEX_NOT_HELM, "index `entries` holds no lists of chart versions: not a Helm index"
        )
    return normalizer.result(allow_empty=allow_empty)


def _entries_of(document: object) -> dict[Any, Any]:
    if not isinstance(document, dict):
        kind = "empty" if document is None else f"a {type(document).__name__}"
        raise FetchError(
            INDEX_NOT_HELM, f"index is {kind}, not a Helm index (a mapping with `entries`)"
        )
    if "entries" not in document:
        raise FetchError(INDEX_NOT_HELM, "index has no `entries`: not a Helm index")
    entries = document["entries"]
    if entries is None:
        # `entries:` with nothing under it is how an empty repository can look.
        return {}
    if not isinstance(entries, dict):
        raise FetchError(
            INDEX_NOT_HELM,
            f"index `entries` is a {type(entries).__name__}, not a mapping of chart names",
        )
    if entries and not any(isinstance(versions, list) for versions in entries.values()):
        raise FetchError(
            INDEX_NOT_HELM, "index `entries` holds no lists of chart versions: not a Helm index"
        )
    return entries


def _index_kind(document: dict[Any, Any]) -> str:
    """OpenPitrix's `op index` wrote VM indexes with its snake-case `api_version`; Helm writes
    `apiVersion`. This is the kind of entries that do not tell their own."""
    return VM if "api_version" in document and "apiVersion" not in document else HELM


def package_kind(raw: dict[Any, Any], index_kind: str = HELM) -> str:
    """The kind of package an index entry points at: the entry's annotation when it has one;
    else helm if it carries Chart.yaml's `apiVersion`, vm if it carries package.json's
    snake-case `api_version` or `app_version`; else the index's own kind."""
    annotations = raw.get("annotations")
    if isinstance(annotations, dict):
        declared = annotations.get(PACKAGE_KIND_ANNOTATION)
        if declared in (HELM, VM):
            return str(declared)
    if "apiVersion" in raw or "appVersion" in raw:
        return HELM
    if "api_version" in raw or "app_version" in raw:
        return VM
    return index_kind


class _Normalizer:
    """Chart versions from the raw entries, chart by chart, in the index's order."""

    def __init__(self, package_base: str, kind: str) -> None:
        self.package_base = package_base
        self.kind = kind
        self.charts: dict[str, list[ChartVersion]] = {}
        self.skipped: list[str] = []
        self.count = 0
        self.keys: set[object] = set()

    def add_new(self, key: object, raw_versions: object) -> bool:
        """`add`, unless the key was added before (False): the whole document keeps only the
        last of the repeated keys, at the first one's place."""
        if key in self.keys:
            return False
        self.keys.add(key)
        self.add(key, raw_versions)
        return True

    def add(self, key: object, raw_versions: object) -> None:
        chart = _text(key)
        skipped = self.skipped
        if not chart:
            skipped.append(f"chart {key!r}: not a usable chart name")
            return
        if not isinstance(raw_versions, list):
            skipped.append(f"chart {chart!r}: versions are a {type(raw_versions).__name__}")
            return
        seen: set[str] = set()
        versions: list[ChartVersion] = []
        shared: dict[Any, Any] = {}
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
            chart_version = _chart_version(
                chart, version, raw, self.package_base, self.kind, shared
            )
            if chart_version.package_url and not _is_web_url(chart_version.package_url):
                # Deploys fetch packages over http(s) only; another scheme (file:, oci:, ...)
                # would only fail there, or reach what it should not.
                skipped.append(
                    f"{chart}[{position}]: package URL "
                    f"{clip_message(repr(chart_version.package_url))} is not http(s)"
                )
                continue
            seen.add(version)
            versions.append(chart_version)
        if versions:
            versions.sort(key=_sort_key_of, reverse=True)
            self.charts[chart] = versions
            self.count += len(versions)

    def result(self, *, allow_empty: bool) -> ParsedIndex:
        skipped = self.skipped
        if self.count == 0 and not allow_empty:
            detail = f" ({len(skipped)} entries skipped, first: {skipped[0]})" if skipped else ""
            raise FetchError(
                INDEX_EMPTY, clip_message(f"index lists no valid chart versions{detail}")
            )
        return ParsedIndex(charts=self.charts, version_count=self.count, skipped=skipped)


def _chart_version(
    chart: str,
    version: str,
    raw: dict[Any, Any],
    package_base: str,
    index_kind: str = HELM,
    shared: dict[Any, Any] | None = None,
) -> ChartVersion:
    """One version; `shared` (one per chart) hands back the first of equal values, since a
    chart's versions mostly repeat its links, keywords and maintainers (never mutated after)."""
    get = raw.get
    kind = package_kind(raw, index_kind)
    urls = get("urls")
    first_url = _text(urls[0]) if isinstance(urls, list) and urls else ""
    memo: dict[Any, Any] = {} if shared is None else shared
    keywords = _text_list(get("keywords"))
    maintainers = _maintainers(get("maintainers"))
    sources = [url for url in _text_list(get("sources")) if _is_web_url(url)]
    description, home, icon = (
        _text(get("description")),
        _web_url(get("home")),
        _web_url(get("icon")),
    )
    return ChartVersion(
        name=chart,
        version=version,
        # Chart.yaml names it in camel case, package.json in snake case.
        app_version=_text(get("appVersion")) or _text(get("app_version")),
        description=memo.setdefault(description, description),
        home=memo.setdefault(home, home),
        icon=memo.setdefault(icon, icon),
        keywords=memo.setdefault(("keywords", *keywords), keywords),
        maintainers=memo.setdefault(
            ("maintainers", *(tuple(person.items()) for person in maintainers)), maintainers
        ),
        sources=memo.setdefault(("sources", *sources), sources),
        digest=_text(get("digest")),
        package_url=_resolve(first_url, package_base),
        created=_parse_created(get("created")),
        package_kind=kind,
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
