"""Helm index fetching (against a real local HTTP(S) repo) and parsing."""

from __future__ import annotations

import base64
import gzip
import hashlib
import socket
import ssl
import tarfile
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import formatdate
from pathlib import Path

import httpx
import orjson
import pytest
import trustme
import yaml

from openpitrix.fetch import (
    INDEX_PARSE_ERROR,
    INDEX_TOO_LARGE,
    INDEX_TRUNCATED,
    REPO_HTTP_ERROR,
    REPO_TIMEOUT,
    REPO_TLS_ERROR,
    REPO_UNREACHABLE,
)
from openpitrix.fetch import FetchError as IndexFetchError
from openpitrix.repos.helm import (
    INDEX_EMPTY,
    INDEX_NOT_HELM,
    ChartVersion,
    fetch_index,
    index_url,
    parse_index,
    version_sort_key,
)
from tests.support.charts import ChartSpec, chart_metadata, created_at, make_specs, write_index
from tests.support.http_repo import RepoServer

MB = 1024 * 1024
LIMIT = 8 * MB


@pytest.fixture
def repo_root(tmp_path: Path) -> Path:
    write_index(tmp_path, make_specs(3, 2))
    return tmp_path


@pytest.fixture
def repo(repo_root: Path) -> Iterator[RepoServer]:
    with RepoServer(repo_root) as running:
        yield running


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def fetch_error(
    http: httpx.AsyncClient,
    url: str,
    *,
    credential: dict[str, str] | None = None,
    max_bytes: int = LIMIT,
    timeout: float = 5.0,
) -> IndexFetchError:
    with pytest.raises(IndexFetchError) as caught:
        await fetch_index(http, url, credential=credential, max_bytes=max_bytes, timeout=timeout)
    return caught.value


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def helm_yaml(entries: str) -> bytes:
    return ("apiVersion: v1\nentries:\n" + entries).encode()


# ----------------------------------------------------------------------------------- index_url


@pytest.mark.parametrize(
    ("repo_url", "expected"),
    [
        ("http://h/charts", "http://h/charts/index.yaml"),
        ("http://h/charts/", "http://h/charts/index.yaml"),
        ("http://h", "http://h/index.yaml"),
        ("https://h/charts?sig=abc", "https://h/charts/index.yaml?sig=abc"),
        ("https://h/repo/stable.yaml", "https://h/repo/stable.yaml"),
        ("https://h/repo/index.yml", "https://h/repo/index.yml"),
        ("https://h/repo/index.json", "https://h/repo/index.json"),
    ],
)
def test_index_url_appends_index_yaml_unless_url_names_a_file(repo_url: str, expected: str) -> None:
    assert index_url(repo_url) == expected


# --------------------------------------------------------------------------------------- fetch


async def test_fetch_returns_body_and_validators(
    repo: RepoServer, repo_root: Path, http: httpx.AsyncClient
) -> None:
    index = repo_root / "index.yaml"
    data = index.read_bytes()

    result = await fetch_index(http, repo.url + "/", max_bytes=LIMIT, timeout=5.0)

    assert result.not_modified is False
    assert result.body == data
    assert result.etag == '"' + hashlib.sha256(data).hexdigest()[:32] + '"'
    assert result.last_modified == formatdate(index.stat().st_mtime, usegmt=True)
    assert result.url == repo.url + "/index.yaml"
    assert result.elapsed_seconds > 0
    assert repo.requests == [("GET", "/index.yaml", 200)]


async def test_conditional_get_with_etag_reports_not_modified(
    repo: RepoServer, http: httpx.AsyncClient
) -> None:
    first = await fetch_index(http, repo.url, max_bytes=LIMIT, timeout=5.0)

    second = await fetch_index(
        http,
        repo.url,
        etag=first.etag,
        last_modified=first.last_modified,
        max_bytes=LIMIT,
        timeout=5.0,
    )

    assert second.not_modified is True
    assert second.body == b""
    assert second.etag == first.etag
    assert second.last_modified == first.last_modified
    assert repo.count("/index.yaml", 304) == 1
    assert repo.headers[-1]["if-none-match"] == first.etag


async def test_conditional_get_with_only_last_modified_reports_not_modified(
    repo: RepoServer, http: httpx.AsyncClient
) -> None:
    first = await fetch_index(http, repo.url, max_bytes=LIMIT, timeout=5.0)

    second = await fetch_index(
        http, repo.url, last_modified=first.last_modified, max_bytes=LIMIT, timeout=5.0
    )

    assert second.not_modified is True
    assert repo.count("/index.yaml", 304) == 1


async def test_changed_index_is_downloaded_again_despite_old_etag(
    repo: RepoServer, repo_root: Path, http: httpx.AsyncClient
) -> None:
    first = await fetch_index(http, repo.url, max_bytes=LIMIT, timeout=5.0)
    write_index(repo_root, make_specs(4, 2), packages=False)

    second = await fetch_index(http, repo.url, etag=first.etag, max_bytes=LIMIT, timeout=5.0)

    assert second.not_modified is False
    assert second.body == (repo_root / "index.yaml").read_bytes()
    assert second.etag != first.etag


async def test_gzip_response_is_decoded(
    repo: RepoServer, repo_root: Path, http: httpx.AsyncClient
) -> None:
    encodings: list[str] = []

    async def record(response: httpx.Response) -> None:
        encodings.append(response.headers.get("content-encoding", ""))

    http.event_hooks["response"] = [record]
    result = await fetch_index(http, repo.url, max_bytes=LIMIT, timeout=5.0)

    assert encodings == ["gzip"]
    assert "gzip" in repo.headers[-1]["accept-encoding"]
    assert result.body == (repo_root / "index.yaml").read_bytes()


async def test_concatenated_gzip_members_are_all_decoded(
    repo: RepoServer, http: httpx.AsyncClient
) -> None:
    payload = gzip.compress(b"apiVersion: v1\n") + gzip.compress(b"entries: {}\n")
    repo.set_body("/index.yaml", payload, headers={"Content-Encoding": "gzip"})

    result = await fetch_index(http, repo.url, max_bytes=LIMIT, timeout=5.0)

    assert result.body == b"apiVersion: v1\nentries: {}\n"


async def test_redirects_are_followed(repo: RepoServer, http: httpx.AsyncClient) -> None:
    repo.set_status("/old/index.yaml", 301, headers={"Location": "/index.yaml"})

    result = await fetch_index(http, repo.url + "/old", max_bytes=LIMIT, timeout=5.0)

    assert result.body.startswith(b"apiVersion: v1")
    assert repo.count("/old/index.yaml", 301) == 1
    assert repo.count("/index.yaml", 200) == 1


async def test_basic_auth_credential_reaches_server(
    repo: RepoServer, http: httpx.AsyncClient
) -> None:
    await fetch_index(
        http,
        repo.url,
        credential={"username": "alice", "password": "s3cret"},
        max_bytes=LIMIT,
        timeout=5.0,
    )

    expected = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert repo.headers[-1]["authorization"] == expected


async def test_bearer_token_credential_reaches_server(
    repo: RepoServer, http: httpx.AsyncClient
) -> None:
    await fetch_index(http, repo.url, credential={"token": "tok-123"}, max_bytes=LIMIT, timeout=5.0)

    assert repo.headers[-1]["authorization"] == "Bearer tok-123"


async def test_no_credential_sends_no_authorization(
    repo: RepoServer, http: httpx.AsyncClient
) -> None:
    await fetch_index(http, repo.url, max_bytes=LIMIT, timeout=5.0)

    assert "authorization" not in repo.headers[-1]


async def test_closed_port_is_unreachable(http: httpx.AsyncClient) -> None:
    url = f"http://127.0.0.1:{closed_port()}/charts"

    error = await fetch_error(http, url)

    assert error.code == REPO_UNREACHABLE
    assert f"{url}/index.yaml" in error.message


@pytest.mark.parametrize("status", [404, 500, 403])
async def test_error_status_is_http_error_naming_the_status(
    repo: RepoServer, http: httpx.AsyncClient, status: int
) -> None:
    repo.set_status("/index.yaml", status, b"nope")

    error = await fetch_error(http, repo.url)

    assert error.code == REPO_HTTP_ERROR
    assert f"HTTP {status}" in error.message
    assert f"{repo.url}/index.yaml" in error.message


async def test_missing_index_file_is_http_404(repo: RepoServer, http: httpx.AsyncClient) -> None:
    error = await fetch_error(http, repo.url + "/no-such-repo")

    assert error.code == REPO_HTTP_ERROR
    assert "HTTP 404" in error.message


async def test_error_messages_never_show_credentials(
    repo: RepoServer, http: httpx.AsyncClient
) -> None:
    repo.set_status("/index.yaml", 401)
    url_with_password = repo.url.replace("http://", "http://bob:pw-in-url@")

    error = await fetch_error(
        http, url_with_password, credential={"username": "alice", "password": "hunter2"}
    )

    assert error.code == REPO_HTTP_ERROR
    assert "pw-in-url" not in error.message
    assert "hunter2" not in error.message


async def test_unsendable_bearer_token_is_refused_without_echoing_it(
    repo: RepoServer, http: httpx.AsyncClient
) -> None:
    error = await fetch_error(http, repo.url, credential={"token": "line1\nsecret-part"})

    assert error.code == REPO_HTTP_ERROR
    assert "secret-part" not in error.message
    assert repo.requests == []


async def test_untrusted_certificate_is_tls_error(tmp_path: Path) -> None:
    write_index(tmp_path, make_specs(1, 1), packages=False)
    with RepoServer(tmp_path, tls=trustme.CA()) as tls_server:
        async with httpx.AsyncClient() as default_trust:
            error = await fetch_error(default_trust, tls_server.url)

    assert error.code == REPO_TLS_ERROR
    assert "certificate" in error.message.lower()


async def test_certificate_from_trusted_ca_is_accepted(tmp_path: Path) -> None:
    index = write_index(tmp_path, make_specs(1, 1), packages=False)
    ca = trustme.CA()
    context = ssl.create_default_context()
    ca.configure_trust(context)
    with RepoServer(tmp_path, tls=ca) as tls_server:
        async with httpx.AsyncClient(verify=context) as trusting:
            result = await fetch_index(trusting, tls_server.url, max_bytes=LIMIT, timeout=5.0)

    assert tls_server.url.startswith("https://localhost:")
    assert result.body == index.read_bytes()


async def test_slow_server_times_out(repo: RepoServer, http: httpx.AsyncClient) -> None:
    repo.set_delay("/index.yaml", 3.0)

    started = time.monotonic()
    error = await fetch_error(http, repo.url, timeout=0.3)

    assert error.code == REPO_TIMEOUT
    assert time.monotonic() - started < 2.0


async def test_declared_length_over_limit_is_too_large(
    repo: RepoServer, http: httpx.AsyncClient
) -> None:
    body = b"apiVersion: v1\nentries: {}\n" + b"#" * 4096
    repo.set_body("/index.yaml", body, headers={"Content-Encoding": "identity"})

    error = await fetch_error(http, repo.url, max_bytes=1024)

    assert error.code == INDEX_TOO_LARGE
    assert "1024" in error.message


@pytest.mark.parametrize("encoding", ["gzip", "identity"])
async def test_body_exactly_at_limit_is_accepted(
    repo: RepoServer, http: httpx.AsyncClient, encoding: str
) -> None:
    # A body this small grows when gzipped: the limit applies to the decoded size.
    body = b"apiVersion: v1\nentries: {}\n"
    payload = gzip.compress(body) if encoding == "gzip" else body
    repo.set_body("/index.yaml", payload, headers={"Content-Encoding": encoding})

    result = await fetch_index(http, repo.url, max_bytes=len(body), timeout=5.0)

    assert result.body == body


async def test_decoded_body_one_byte_over_limit_is_too_large(
    repo: RepoServer, http: httpx.AsyncClient
) -> None:
    body = b"apiVersion: v1\nentries: {}\n"
    repo.set_body("/index.yaml", body)

    error = await fetch_error(http, repo.url, max_bytes=len(body) - 1)

    assert error.code == INDEX_TOO_LARGE


async def test_gzip_bomb_is_too_large(repo: RepoServer, http: httpx.AsyncClient) -> None:
    bomb = gzip.compress(b"\n" * (64 * MB), compresslevel=9)
    assert len(bomb) < 1 * MB
    repo.set_body("/index.yaml", bomb, headers={"Content-Encoding": "gzip"})

    error = await fetch_error(http, repo.url, max_bytes=1 * MB)

    assert error.code == INDEX_TOO_LARGE


async def test_body_shorter_than_content_length_is_truncated(
    repo: RepoServer, http: httpx.AsyncClient
) -> None:
    repo.set_truncated("/index.yaml", 4096, b"apiVersion: v1\nentries:\n  a:\n")

    error = await fetch_error(http, repo.url)

    assert error.code == INDEX_TRUNCATED


async def test_gzip_stream_cut_mid_member_is_truncated(
    repo: RepoServer, repo_root: Path, http: httpx.AsyncClient
) -> None:
    compressed = gzip.compress((repo_root / "index.yaml").read_bytes())
    repo.set_body(
        "/index.yaml", compressed[: len(compressed) // 2], headers={"Content-Encoding": "gzip"}
    )

    error = await fetch_error(http, repo.url)

    assert error.code == INDEX_TRUNCATED


# --------------------------------------------------------------------------------------- parse


def test_real_index_round_trips_every_field(tmp_path: Path) -> None:
    specs = [
        ChartSpec("web", "1.0.0", app_version="2.4.1", keywords=["http", "proxy"]),
        ChartSpec("web", "1.1.0", app_version="2.5.0", description="Web repo"),
        ChartSpec("db", "0.3.0", keywords=["sql"]),
    ]
    index = write_index(tmp_path, specs)

    parsed = parse_index(index.read_bytes(), "https://charts.example.org/stable")

    assert parsed.version_count == 3
    assert parsed.skipped == []
    assert sorted(parsed.charts) == ["db", "web"]
    assert [v.version for v in parsed.charts["web"]] == ["1.1.0", "1.0.0"]
    got = {(v.name, v.version): v for versions in parsed.charts.values() for v in versions}
    for position, spec in enumerate(specs):
        meta = chart_metadata(spec)
        package = tmp_path / spec.filename
        stamp = created_at(position)
        expected = ChartVersion(
            name=spec.name,
            version=spec.version,
            app_version=spec.app_version,
            description=spec.description,
            home=meta["home"],
            icon=meta["icon"],
            keywords=spec.keywords,
            maintainers=meta["maintainers"],
            sources=meta["sources"],
            digest=hashlib.sha256(package.read_bytes()).hexdigest(),
            package_url=f"https://charts.example.org/stable/{spec.filename}",
            # Helm writes nanoseconds; datetimes keep microseconds.
            created=datetime.strptime(stamp[:26], "%Y-%m-%dT%H:%M:%S.%f").replace(tzinfo=UTC),
        )
        assert got[(spec.name, spec.version)] == expected


def test_built_package_is_a_helm_chart_tarball(tmp_path: Path) -> None:
    spec = ChartSpec("web", "1.0.0", extra_templates={"configmap.yaml": "kind: ConfigMap\n"})
    write_index(tmp_path, [spec])

    with tarfile.open(tmp_path / spec.filename, "r:gz") as tar:
        names = set(tar.getnames())
        chart = tar.extractfile("web/Chart.yaml")
        assert chart is not None
        metadata = yaml.safe_load(chart.read())

    assert {
        "web/Chart.yaml",
        "web/values.yaml",
        "web/templates/deployment.yaml",
        "web/templates/service.yaml",
        "web/templates/configmap.yaml",
    } <= names
    assert metadata["apiVersion"] == "v2"
    assert (metadata["name"], metadata["version"]) == ("web", "1.0.0")


def test_absolute_package_urls_are_kept(tmp_path: Path) -> None:
    index = write_index(
        tmp_path, [ChartSpec("web", "1.0.0")], base_url="https://cdn.example.org/pkgs/"
    )

    parsed = parse_index(index.read_bytes(), "https://charts.example.org/")

    assert parsed.charts["web"][0].package_url == "https://cdn.example.org/pkgs/web-1.0.0.tgz"


@pytest.mark.parametrize(
    ("repo_url", "ref", "expected"),
    [
        ("http://h/charts", "a-1.0.0.tgz", "http://h/charts/a-1.0.0.tgz"),
        ("http://h/charts/", "pkgs/a-1.0.0.tgz", "http://h/charts/pkgs/a-1.0.0.tgz"),
        ("http://h/charts/", "../other/a.tgz", "http://h/other/a.tgz"),
        ("http://h/charts/", "/abs/a.tgz", "http://h/abs/a.tgz"),
        ("http://h/charts/stable.yaml", "a.tgz", "http://h/charts/a.tgz"),
        ("http://u:pw@h/charts", "a.tgz", "http://h/charts/a.tgz"),
        # Scheme-relative: the repo's scheme. (Other schemes are skipped: test_catalog_urls.py.)
        ("https://h/charts", "//cdn.example.org/a.tgz", "https://cdn.example.org/a.tgz"),
    ],
)
def test_package_url_is_resolved_against_repo_url(repo_url: str, ref: str, expected: str) -> None:
    body = helm_yaml(f"  a:\n  - name: a\n    version: 1.0.0\n    urls: ['{ref}']\n")

    assert parse_index(body, repo_url).charts["a"][0].package_url == expected


def test_missing_optional_fields_default_to_empty() -> None:
    body = helm_yaml("  a:\n  - name: a\n    version: 1.0.0\n    keywords: notalist\n")

    version = parse_index(body, "http://h").charts["a"][0]

    assert version == ChartVersion(
        name="a",
        version="1.0.0",
        app_version="",
        description="",
        home="",
        icon="",
        keywords=[],
        maintainers=[],
        sources=[],
        digest="",
        package_url="",
        created=None,
    )


def test_created_with_offset_and_nanoseconds_becomes_utc() -> None:
    body = helm_yaml(
        "  a:\n"
        "  - {name: a, version: 1.0.0, created: '2023-05-04T10:11:12.123456789+02:00'}\n"
        "  - {name: a, version: 2.0.0, created: 2024-01-01T00:00:00Z}\n"
        "  - {name: a, version: 3.0.0, created: yesterday}\n"
    )

    created = {v.version: v.created for v in parse_index(body, "http://h").charts["a"]}

    assert created["1.0.0"] == datetime(2023, 5, 4, 8, 11, 12, 123456, tzinfo=UTC)
    assert created["1.0.0"].utcoffset() == timedelta(0)
    assert created["2.0.0"] == datetime(2024, 1, 1, tzinfo=UTC)
    assert created["3.0.0"] is None


def test_maintainers_keep_only_string_fields() -> None:
    body = helm_yaml(
        "  a:\n  - name: a\n    version: 1.0.0\n    maintainers:\n"
        "    - {name: Ann, email: ann@example.org, url: 5, extra: x}\n"
        "    - just-a-string\n"
    )

    assert parse_index(body, "http://h").charts["a"][0].maintainers == [
        {"name": "Ann", "email": "ann@example.org"}
    ]


def test_json_index_parses() -> None:
    document = {
        "apiVersion": "v1",
        "entries": {"web": [{"name": "web", "version": "1.2.0", "urls": ["web-1.2.0.tgz"]}]},
    }

    parsed = parse_index(b"\n  " + orjson.dumps(document), "http://h/charts")

    assert parsed.charts["web"][0].version == "1.2.0"
    assert parsed.charts["web"][0].package_url == "http://h/charts/web-1.2.0.tgz"


def test_utf8_bom_is_ignored() -> None:
    body = b"\xef\xbb\xbf" + helm_yaml("  a:\n  - {name: a, version: 1.0.0}\n")

    assert list(parse_index(body, "http://h").charts) == ["a"]


@pytest.mark.parametrize(
    "body",
    [
        b"\x00\xff",
        b"key: [unclosed",
        b"entries: {a: [}",
        b'{"entries": ',
        "caf\xe9".encode("latin-1"),
    ],
)
def test_unreadable_body_is_parse_error(body: bytes) -> None:
    with pytest.raises(IndexFetchError) as caught:
        parse_index(body, "http://h")

    assert caught.value.code == INDEX_PARSE_ERROR
    assert "\n" not in caught.value.message
    assert len(caught.value.message) <= 250


@pytest.mark.parametrize(
    "body",
    [
        b"<html><body>Welcome to nginx!</body></html>",
        b"- a\n- b\n",
        b"apiVersion: v1\ngenerated: now\n",
        b"apiVersion: v1\nentries: [web, db]\n",
        b"apiVersion: v1\nentries: {web: 1.0.0}\n",
        b"",
        b'{"apiVersion": "v1"}',
    ],
)
def test_yaml_that_is_not_a_helm_index_is_not_helm(body: bytes) -> None:
    with pytest.raises(IndexFetchError) as caught:
        parse_index(body, "http://h")

    assert caught.value.code == INDEX_NOT_HELM


def test_index_without_versions_is_empty_unless_allowed() -> None:
    body = b"apiVersion: v1\nentries: {}\ngenerated: '2024-01-01T00:00:00Z'\n"

    with pytest.raises(IndexFetchError) as caught:
        parse_index(body, "http://h")
    assert caught.value.code == INDEX_EMPTY

    parsed = parse_index(body, "http://h", allow_empty=True)
    assert (parsed.charts, parsed.version_count) == ({}, 0)


def test_index_whose_entries_are_all_invalid_is_empty() -> None:
    body = helm_yaml("  a:\n  - {name: a}\n")

    with pytest.raises(IndexFetchError) as caught:
        parse_index(body, "http://h")

    assert caught.value.code == INDEX_EMPTY


def test_unquoted_numbers_become_strings() -> None:
    body = helm_yaml(
        "  a:\n  - {name: a, version: 1.10, appVersion: 5, description: 3, keywords: [1, x]}\n"
    )

    version = parse_index(body, "http://h").charts["a"][0]

    # YAML reads 1.10 as the float 1.1: accepted, as Helm users quote versions that matter.
    assert (version.version, version.app_version, version.description) == ("1.1", "5", "3")
    assert version.keywords == ["1", "x"]


def test_invalid_entries_are_skipped_with_reasons() -> None:
    body = helm_yaml(
        "  web:\n"
        "  - {name: web, version: 1.0.0}\n"
        "  - not-a-mapping\n"
        "  - {name: web}\n"
        "  - {version: 2.0.0}\n"
        "  - {name: web, version: 1.0.0, description: again}\n"
        "  - {name: web, version: 1.1.0}\n"
        "  broken: 5\n"
    )

    parsed = parse_index(body, "http://h")

    assert [v.version for v in parsed.charts["web"]] == ["1.1.0", "1.0.0"]
    assert parsed.charts["web"][1].description == ""
    assert parsed.version_count == 2
    assert len(parsed.skipped) == 5
    reasons = " | ".join(parsed.skipped)
    for fragment in ["not a mapping", "missing version", "missing name", "duplicate", "broken"]:
        assert fragment in reasons


def test_entries_key_names_the_chart() -> None:
    body = helm_yaml("  web:\n  - {name: website, version: 1.0.0}\n")

    parsed = parse_index(body, "http://h")

    assert list(parsed.charts) == ["web"]
    assert parsed.charts["web"][0].name == "web"


def test_versions_are_sorted_newest_first() -> None:
    versions = ["1.9.0", "latest", "1.0.0-rc.1", "1.10.0", "1.0.0", "v2.0.0", "1.0.0-rc.2"]
    entries = "".join(f"  - {{name: a, version: '{v}'}}\n" for v in versions)

    parsed = parse_index(helm_yaml("  a:\n" + entries), "http://h")

    assert [v.version for v in parsed.charts["a"]] == [
        "v2.0.0",
        "1.10.0",
        "1.9.0",
        "1.0.0",
        "1.0.0-rc.2",
        "1.0.0-rc.1",
        "latest",
    ]


@pytest.mark.parametrize(
    ("newer", "older"),
    [
        ("1.10.0", "1.9.0"),
        ("1.0.0", "1.0.0-rc.1"),
        ("v1.2.0", "1.1.9"),
        ("1.0.0-alpha.1", "1.0.0-alpha"),
        ("1.0.0-alpha.beta", "1.0.0-alpha.1"),
        ("1.0.0-beta.11", "1.0.0-beta.2"),
        ("1.0.0-rc.1", "1.0.0-beta.11"),
        ("1.8.1", "1.8"),
        ("2", "1.99.99"),
        ("0.0.1", "latest"),
        ("latest", "2023a"),
    ],
)
def test_version_sort_key_follows_semver(newer: str, older: str) -> None:
    assert version_sort_key(newer) > version_sort_key(older)


def test_build_metadata_does_not_change_precedence() -> None:
    assert version_sort_key("1.0.0+build.9")[:4] == version_sort_key("1.0.0")[:4]
    assert version_sort_key("1.0.0+build.9") < version_sort_key("1.0.1")


def test_alias_bomb_is_refused_quickly() -> None:
    lines = ['a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    previous = "a"
    for name in "bcdefghij":
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
        previous = name
    lines.append("entries: {x: *j}")
    body = "\n".join(lines).encode()

    started = time.monotonic()
    with pytest.raises(IndexFetchError) as caught:
        parse_index(body, "http://h")

    assert caught.value.code == INDEX_PARSE_ERROR
    assert time.monotonic() - started < 2.0
