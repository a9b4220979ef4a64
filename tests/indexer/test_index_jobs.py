"""Index jobs end to end: a local HTTP(S) chart repo, indexed through the API by real workers.

Every fetch or sanity-check failure must end as a failed job with a stable error code and a
readable sentence, leave the catalog as it was, and never turn into a 500 anywhere in the API.
"""

from __future__ import annotations

import base64
import socket
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import trustme
import yaml

from openpitrix.settings import IndexerSettings
from tests.conftest import DEFAULT_CHARTS, LiveServer, make_settings, unique
from tests.helpers import create_repo, read_sse, wait_job
from tests.support.charts import ChartSpec, make_specs, write_index
from tests.support.http_repo import RepoServer

INDEX = "/index.yaml"
ALL_STATUSES = ["active", "draft", "deleted"]
TIGHT_MAX_BYTES = 4000
TIGHT_TIMEOUT = 1.0

Catalog = dict[str, dict[str, Any]]


# ------------------------------------------------------------------------------------ helpers


async def _refuse_5xx(response: httpx.Response) -> None:
    if response.status_code >= 500:
        await response.aread()
        raise AssertionError(
            f"{response.request.method} {response.request.url} answered "
            f"{response.status_code}: {response.text[:500]}"
        )


def guarded(http: httpx.AsyncClient) -> httpx.AsyncClient:
    """Make every API call through `http` fail the test on a 5xx answer."""
    http.event_hooks["response"].append(_refuse_5xx)
    return http


@pytest.fixture
def api(client: httpx.AsyncClient) -> httpx.AsyncClient:
    return guarded(client)


@pytest.fixture
async def tight(
    database_url: str, nats_url: str, tmp_path: Path, admin_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """A server whose indexer has a small size cap and a short fetch timeout."""
    settings = make_settings(
        database_url,
        nats_url,
        tmp_path / "tight-data",
        indexer=IndexerSettings(
            max_index_bytes=TIGHT_MAX_BYTES,
            fetch_timeout_seconds=TIGHT_TIMEOUT,
            scheduler_tick_seconds=0.5,
        ),
    )
    async with (
        LiveServer(settings) as live,
        httpx.AsyncClient(base_url=live.url, timeout=30, headers=admin_headers) as http,
    ):
        yield guarded(http)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def assert_clear_message(message: str, *fragments: str) -> None:
    """A message for people: one short sentence, no traceback or object repr, saying what failed."""
    assert isinstance(message, str), message
    assert message, message
    assert message == message.strip(), message
    assert "\n" not in message, message
    assert len(message) <= 300, message
    assert message[0].isalpha(), message
    assert len(message.split()) >= 4, message
    for junk in ("Traceback", "<class", "object at 0x", "Error(", "Exception("):
        assert junk not in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def assert_failed(job: dict[str, Any], code: str, *fragments: str) -> str:
    assert job["status"] == "failed", job
    assert job["error"] is not None, job
    assert job["error"]["code"] == code, job["error"]
    message: str = job["error"]["message"]
    assert_clear_message(message, *fragments)
    (task,) = job["tasks"]
    assert task["status"] == "failed", task
    assert task["error"] == job["error"], task
    return message


async def assert_repo_failed(api: httpx.AsyncClient, repo_id: str, job: dict[str, Any]) -> None:
    resp = await api.get(f"/v1/repos/{repo_id}")
    assert resp.status_code == 200, resp.text
    repo = resp.json()
    assert repo["last_index_status"] == "failed", repo
    assert repo["last_index_error"] == f"{job['error']['code']}: {job['error']['message']}"
    assert repo["index_job_id"] is None, repo
    assert repo["last_index_time"] is not None


async def reindex(api: httpx.AsyncClient, repo_id: str, *, force: bool = False) -> dict[str, Any]:
    if force:
        resp = await api.post(f"/v1/repos/{repo_id}/index", json={"force": True})
    else:
        resp = await api.post(f"/v1/repos/{repo_id}/index")
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["index_job_id"] == body["job_id"], body
    job = await wait_job(api, body["job_id"])
    assert job["params"]["force"] is force, job["params"]
    return job


async def indexed_repo(
    api: httpx.AsyncClient, url: str, **extra: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Create a repo and wait for its first index job, which must succeed."""
    repo = await create_repo(api, unique(), url, **extra)
    job = await wait_job(api, repo["index_job_id"])
    assert job["status"] == "successful", job
    return repo, job


async def catalog(api: httpx.AsyncClient, repo_id: str) -> Catalog:
    """Every app of the repo by name (deleted ones too), each with its versions by version."""
    resp = await api.get(
        "/v1/apps", params={"repo_id": repo_id, "status": ALL_STATUSES, "limit": 200}
    )
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert page["total_count"] == len(page["items"])
    result: Catalog = {}
    for app in page["items"]:
        resp = await api.get(
            f"/v1/apps/{app['app_id']}/versions", params={"status": ALL_STATUSES, "limit": 200}
        )
        assert resp.status_code == 200, resp.text
        versions = resp.json()
        assert versions["total_count"] == len(versions["items"])
        result[app["name"]] = {
            "app": app,
            "versions": {v["version"]: v for v in versions["items"]},
        }
    return result


def statuses(cat: Catalog) -> dict[str, tuple[str, dict[str, str]]]:
    return {
        name: (entry["app"]["status"], {v: row["status"] for v, row in entry["versions"].items()})
        for name, entry in cat.items()
    }


def version_counts(job: dict[str, Any]) -> dict[str, int]:
    result = job["result"]
    return {k: result[f"versions_{k}"] for k in ("added", "updated", "deleted", "unchanged")}


def app_counts(job: dict[str, Any]) -> dict[str, int]:
    result = job["result"]
    return {k: result[f"apps_{k}"] for k in ("added", "updated", "deleted", "unchanged")}


def write_oldest_first(repo_dir: Path, specs: list[ChartSpec]) -> None:
    """write_index, then list each chart's versions oldest first, so that neither the first entry
    nor the text order of the versions names the newest one."""
    path = write_index(repo_dir, specs)
    index = yaml.safe_load(path.read_text(encoding="utf-8"))
    for entries in index["entries"].values():
        entries.reverse()
    path.write_text(yaml.safe_dump(index, sort_keys=False), encoding="utf-8")


# ----------------------------------------------------------------------------- fetch failures


async def test_unreachable_url_fails_with_repo_unreachable(api: httpx.AsyncClient) -> None:
    port = closed_port()
    repo = await create_repo(api, unique(), f"http://127.0.0.1:{port}/charts")
    job = await wait_job(api, repo["index_job_id"])
    assert_failed(job, "repo_unreachable", f"127.0.0.1:{port}/charts/index.yaml")
    await assert_repo_failed(api, repo["repo_id"], job)
    assert await catalog(api, repo["repo_id"]) == {}


@pytest.mark.parametrize("status", [404, 500])
async def test_http_error_status_fails_with_repo_http_error_and_keeps_catalog(
    api: httpx.AsyncClient, chart_repo: RepoServer, status: int
) -> None:
    repo, _ = await indexed_repo(api, chart_repo.url)
    before = await catalog(api, repo["repo_id"])
    assert len(before) == 2

    chart_repo.set_status(INDEX, status, b"upstream says no\n")
    job = await reindex(api, repo["repo_id"])
    assert_failed(job, "repo_http_error", f"HTTP {status}", f"{chart_repo.url}/index.yaml")
    assert chart_repo.count(INDEX, status) == 1
    await assert_repo_failed(api, repo["repo_id"], job)
    assert await catalog(api, repo["repo_id"]) == before


async def test_untrusted_tls_certificate_fails_with_repo_tls_error(
    api: httpx.AsyncClient, repo_dir: Path
) -> None:
    write_index(repo_dir, DEFAULT_CHARTS)
    with RepoServer(repo_dir, tls=trustme.CA()) as tls_repo:
        assert tls_repo.url.startswith("https://")
        repo = await create_repo(api, unique(), tls_repo.url)
        job = await wait_job(api, repo["index_job_id"])
        assert_failed(job, "repo_tls_error", "TLS", "certificate", tls_repo.url)
        # The handshake failed, so no HTTP request ever reached the server.
        assert tls_repo.count(INDEX) == 0
    await assert_repo_failed(api, repo["repo_id"], job)
    assert await catalog(api, repo["repo_id"]) == {}


async def test_slow_server_fails_with_repo_timeout(
    tight: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    chart_repo.set_delay(INDEX, TIGHT_TIMEOUT + 5)
    repo = await create_repo(tight, unique(), chart_repo.url)
    job = await wait_job(tight, repo["index_job_id"])
    message = assert_failed(job, "repo_timeout", f"{chart_repo.url}/index.yaml")
    assert "timed out" in message or "did not complete within 1 s" in message, message
    # Given up at the timeout, not after the server finally answered.
    took = datetime.fromisoformat(job["end_time"]) - datetime.fromisoformat(job["start_time"])
    assert took.total_seconds() < TIGHT_TIMEOUT + 3, took
    await assert_repo_failed(tight, repo["repo_id"], job)
    assert await catalog(tight, repo["repo_id"]) == {}


# ----------------------------------------------------------------------------- body failures


async def test_non_yaml_body_fails_with_index_parse_error_and_keeps_catalog(
    api: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo, _ = await indexed_repo(api, chart_repo.url)
    before = await catalog(api, repo["repo_id"])

    chart_repo.set_body(INDEX, b"apiVersion: v1\nentries:\n  nginx: [\n")
    job = await reindex(api, repo["repo_id"])
    assert_failed(job, "index_parse_error", "not valid YAML", "line 3")
    await assert_repo_failed(api, repo["repo_id"], job)
    assert await catalog(api, repo["repo_id"]) == before


async def test_yaml_that_is_not_a_helm_index_fails_with_index_not_helm(
    api: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo, _ = await indexed_repo(api, chart_repo.url)
    before = await catalog(api, repo["repo_id"])

    chart_repo.set_body(INDEX, b"apiVersion: v1\nkind: ConfigMap\ndata:\n  key: value\n")
    job = await reindex(api, repo["repo_id"])
    assert_failed(job, "index_not_helm", "entries", "Helm index")
    await assert_repo_failed(api, repo["repo_id"], job)
    assert await catalog(api, repo["repo_id"]) == before


async def test_index_over_the_size_cap_fails_with_index_too_large(
    tight: httpx.AsyncClient, repo_dir: Path, repo_server: RepoServer
) -> None:
    write_index(repo_dir, [ChartSpec("tiny", "1.0.0")])
    assert (repo_dir / "index.yaml").stat().st_size < TIGHT_MAX_BYTES
    repo, _ = await indexed_repo(tight, repo_server.url)
    before = await catalog(tight, repo["repo_id"])
    assert list(before) == ["tiny"]

    write_index(repo_dir, [ChartSpec("tiny", "1.0.0"), *make_specs(4, 4)])
    assert (repo_dir / "index.yaml").stat().st_size > 2 * TIGHT_MAX_BYTES
    job = await reindex(tight, repo["repo_id"])
    assert_failed(job, "index_too_large", str(TIGHT_MAX_BYTES), "limit")
    await assert_repo_failed(tight, repo["repo_id"], job)
    assert await catalog(tight, repo["repo_id"]) == before


async def test_truncated_body_fails_with_index_truncated_and_keeps_catalog(
    api: httpx.AsyncClient, chart_repo: RepoServer, repo_dir: Path
) -> None:
    repo, _ = await indexed_repo(api, chart_repo.url)
    before = await catalog(api, repo["repo_id"])

    body = (repo_dir / "index.yaml").read_bytes()
    chart_repo.set_truncated(INDEX, len(body), body[: len(body) // 2])
    job = await reindex(api, repo["repo_id"])
    assert_failed(job, "index_truncated", f"{chart_repo.url}/index.yaml")
    await assert_repo_failed(api, repo["repo_id"], job)
    assert await catalog(api, repo["repo_id"]) == before


# ------------------------------------------------------------------------ sanity checks


async def test_empty_index_on_a_repo_with_apps_fails_and_keeps_catalog(
    api: httpx.AsyncClient, chart_repo: RepoServer, repo_dir: Path
) -> None:
    repo, _ = await indexed_repo(api, chart_repo.url)
    before = await catalog(api, repo["repo_id"])
    assert statuses(before) == {
        "nginx": ("active", {"1.0.0": "active", "1.1.0": "active"}),
        "redis": ("active", {"7.0.1": "active"}),
    }

    write_index(repo_dir, [])
    job = await reindex(api, repo["repo_id"])
    assert_failed(job, "index_empty", "no valid chart versions")
    await assert_repo_failed(api, repo["repo_id"], job)
    # Nothing was touched: same statuses, same update times.
    assert await catalog(api, repo["repo_id"]) == before

    # Forced, the empty index is taken at its word: everything left the repo.
    forced = await reindex(api, repo["repo_id"], force=True)
    assert forced["status"] == "successful", forced
    assert version_counts(forced) == {"added": 0, "updated": 0, "deleted": 3, "unchanged": 0}
    assert app_counts(forced) == {"added": 0, "updated": 0, "deleted": 2, "unchanged": 0}
    assert statuses(await catalog(api, repo["repo_id"])) == {
        "nginx": ("deleted", {"1.0.0": "deleted", "1.1.0": "deleted"}),
        "redis": ("deleted", {"7.0.1": "deleted"}),
    }


async def test_much_smaller_index_fails_unless_forced(
    api: httpx.AsyncClient, repo_dir: Path, repo_server: RepoServer
) -> None:
    write_index(repo_dir, make_specs(2, 5))
    repo, first = await indexed_repo(api, repo_server.url)
    assert first["result"]["versions_added"] == 10
    before = await catalog(api, repo["repo_id"])
    assert sorted(before) == ["chart-000", "chart-001"]

    write_index(repo_dir, make_specs(1, 2))
    job = await reindex(api, repo["repo_id"])
    assert_failed(job, "index_shrunk", "2 versions", "10", "force")
    await assert_repo_failed(api, repo["repo_id"], job)
    assert await catalog(api, repo["repo_id"]) == before

    forced = await reindex(api, repo["repo_id"], force=True)
    assert forced["status"] == "successful", forced
    assert forced["error"] is None
    assert version_counts(forced) == {"added": 0, "updated": 0, "deleted": 8, "unchanged": 2}
    assert app_counts(forced) == {"added": 0, "updated": 1, "deleted": 1, "unchanged": 0}
    after = await catalog(api, repo["repo_id"])
    kept = {"1.0.0": "active", "1.1.0": "active"}
    gone = {f"1.{v}.0": "deleted" for v in range(2, 5)}
    assert statuses(after) == {
        "chart-000": ("active", {**kept, **gone}),
        "chart-001": ("deleted", {f"1.{v}.0": "deleted" for v in range(5)}),
    }
    assert after["chart-000"]["app"]["latest_version"] == "1.1.0"
    # Rows are kept (soft delete), under the same ids.
    for name, entry in before.items():
        assert entry["app"]["app_id"] == after[name]["app"]["app_id"]
        for version, row in entry["versions"].items():
            assert after[name]["versions"][version]["version_id"] == row["version_id"]
    listed = (await api.get("/v1/apps", params={"repo_id": repo["repo_id"]})).json()
    assert [a["name"] for a in listed["items"]] == ["chart-000"]
    resp = await api.get(f"/v1/repos/{repo['repo_id']}")
    assert resp.json()["last_index_status"] == "successful"
    assert resp.json()["last_index_error"] is None


async def test_entries_the_catalog_cannot_store_are_skipped_with_a_reason(
    api: httpx.AsyncClient, repo_dir: Path, repo_server: RepoServer
) -> None:
    # PostgreSQL refuses both (varchar(100) overflow, NUL in text); they must not sink the job.
    write_index(
        repo_dir,
        [
            ChartSpec("nginx", "1.0.0"),
            ChartSpec("long", "1.0.0", app_version="x" * 150),
            ChartSpec("long", "1.1.0"),
            ChartSpec("nul", "1.0.0", description="bad\x00byte"),
        ],
    )
    repo = await create_repo(api, unique(), repo_server.url)
    job = await wait_job(api, repo["index_job_id"])
    assert job["status"] == "successful", job
    assert job["attempts"] == 1, job
    assert job["result"]["skipped"] == 2
    assert job["result"]["versions"] == 2
    assert version_counts(job) == {"added": 2, "updated": 0, "deleted": 0, "unchanged": 0}
    assert statuses(await catalog(api, repo["repo_id"])) == {
        "nginx": ("active", {"1.0.0": "active"}),
        "long": ("active", {"1.1.0": "active"}),
    }
    frames = await read_sse(api, f"/v1/jobs/{job['job_id']}/events")
    skipped = [
        f["data"]["message"]
        for f in frames
        if f["data"].get("message", "").startswith("skipped entry:")
    ]
    assert len(skipped) == 2, skipped
    assert any("app_version is longer than 100 characters" in m for m in skipped), skipped
    assert any("description contains a NUL character" in m for m in skipped), skipped
    for message in skipped:
        assert_clear_message(message)


async def test_index_with_nothing_storable_fails_with_index_empty(
    api: httpx.AsyncClient, repo_dir: Path, repo_server: RepoServer
) -> None:
    write_index(repo_dir, [ChartSpec("long", "1.0.0", app_version="x" * 150)])
    repo = await create_repo(api, unique(), repo_server.url)
    job = await wait_job(api, repo["index_job_id"])
    assert job["attempts"] == 1, job
    assert_failed(job, "index_empty", "no storable chart versions", "longer than 100")
    await assert_repo_failed(api, repo["repo_id"], job)
    assert await catalog(api, repo["repo_id"]) == {}


# ---------------------------------------------------------------------------- formats, gzip


async def test_json_index_is_accepted(
    api: httpx.AsyncClient, repo_dir: Path, repo_server: RepoServer
) -> None:
    index = yaml.safe_load(write_index(repo_dir, DEFAULT_CHARTS).read_text(encoding="utf-8"))
    (repo_dir / "index.yaml").unlink()
    (repo_dir / "index.json").write_bytes(orjson.dumps(index))
    repo, job = await indexed_repo(api, f"{repo_server.url}/index.json")
    assert repo_server.count("/index.json", 200) == 1
    assert repo_server.count(INDEX) == 0
    assert job["result"]["versions_added"] == 3
    assert job["result"]["apps_added"] == 2

    cat = await catalog(api, repo["repo_id"])
    assert statuses(cat) == {
        "nginx": ("active", {"1.0.0": "active", "1.1.0": "active"}),
        "redis": ("active", {"7.0.1": "active"}),
    }
    assert cat["nginx"]["app"]["latest_version"] == "1.1.0"
    # Package URLs are relative to the directory of the JSON index.
    row = cat["nginx"]["versions"]["1.0.0"]
    assert row["package_url"] == f"{repo_server.url}/nginx-1.0.0.tgz"
    assert row["digest"] == index["entries"]["nginx"][-1]["digest"]


async def test_gzip_encoded_index_is_accepted(
    api: httpx.AsyncClient, chart_repo: RepoServer, repo_dir: Path
) -> None:
    # The premise: this server compresses the index for a client that accepts gzip.
    async with (
        httpx.AsyncClient() as raw,
        raw.stream(
            "GET", f"{chart_repo.url}/index.yaml", headers={"Accept-Encoding": "gzip"}
        ) as resp,
    ):
        assert resp.headers["content-encoding"] == "gzip"
        wire = b"".join([chunk async for chunk in resp.aiter_raw()])
    size = (repo_dir / "index.yaml").stat().st_size
    assert len(wire) < size

    repo, job = await indexed_repo(api, chart_repo.url)
    accept = chart_repo.headers[-1].get("accept-encoding", "")
    assert "gzip" in accept, chart_repo.headers[-1]
    # The job parsed the inflated document, not the compressed bytes.
    assert job["result"]["bytes"] == size
    assert job["result"]["versions"] == 3
    cat = await catalog(api, repo["repo_id"])
    assert sorted(cat) == ["nginx", "redis"]


# ------------------------------------------------------------------------- conditional GET


async def test_unchanged_repo_costs_one_304_and_touches_no_row(
    api: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo, _ = await indexed_repo(api, chart_repo.url)
    before = await catalog(api, repo["repo_id"])
    fetches, not_modified = chart_repo.count(INDEX), chart_repo.count(INDEX, 304)
    assert (fetches, not_modified) == (1, 0)

    job = await reindex(api, repo["repo_id"])
    assert job["status"] == "successful", job
    assert job["result"]["not_modified"] is True
    assert chart_repo.count(INDEX) == fetches + 1
    assert chart_repo.count(INDEX, 304) == 1
    sent = chart_repo.headers[-1]
    assert "if-none-match" in sent or "if-modified-since" in sent, sent
    assert await catalog(api, repo["repo_id"]) == before
    frames = await read_sse(api, f"/v1/jobs/{job['job_id']}/events")
    assert any(f["data"]["message"] == "index unchanged (HTTP 304)" for f in frames)

    # A forced re-index skips the validators and reads the whole index, but equal digests
    # still mean no row is rewritten.
    forced = await reindex(api, repo["repo_id"], force=True)
    assert forced["status"] == "successful", forced
    assert forced["result"]["not_modified"] is False
    assert chart_repo.count(INDEX, 304) == 1
    assert chart_repo.count(INDEX, 200) == 2
    assert "if-none-match" not in chart_repo.headers[-1]
    assert version_counts(forced) == {"added": 0, "updated": 0, "deleted": 0, "unchanged": 3}
    assert app_counts(forced) == {"added": 0, "updated": 0, "deleted": 0, "unchanged": 2}
    assert await catalog(api, repo["repo_id"]) == before


# ------------------------------------------------------------------------ incremental upsert


async def test_incremental_upsert_counts_deletes_revives_and_newest_metadata(
    api: httpx.AsyncClient, repo_dir: Path, repo_server: RepoServer
) -> None:
    alpha_1 = ChartSpec("alpha", "1.0.0", app_version="1.0", description="alpha one")
    alpha_9 = ChartSpec(
        "alpha", "1.9.0", app_version="1.9", description="alpha nine", keywords=["nine"]
    )
    alpha_10 = ChartSpec(
        "alpha", "1.10.0", app_version="1.10", description="alpha ten", keywords=["ten"]
    )
    beta = ChartSpec("beta", "1.0.0", description="beta one")
    gamma = [ChartSpec("gamma", "0.1.0"), ChartSpec("gamma", "0.2.0")]

    # Round 1: everything is new; 1.10.0 is alpha's newest although it sorts last as text.
    write_oldest_first(repo_dir, [alpha_1, alpha_9, alpha_10, beta, *gamma])
    repo, job = await indexed_repo(api, repo_server.url)
    repo_id = repo["repo_id"]
    assert version_counts(job) == {"added": 6, "updated": 0, "deleted": 0, "unchanged": 0}
    assert app_counts(job) == {"added": 3, "updated": 0, "deleted": 0, "unchanged": 0}
    one = await catalog(api, repo_id)
    alpha = one["alpha"]["app"]
    assert alpha["latest_version"] == "1.10.0"
    assert alpha["latest_app_version"] == "1.10"
    assert alpha["description"] == "alpha ten"
    assert alpha["keywords"] == ["ten"]

    # Round 2: alpha 1.0.0 rebuilt (new digest), 1.10.0 gone, 2.0.0 new; beta gone entirely.
    alpha_1_rebuilt = ChartSpec(
        "alpha", "1.0.0", app_version="1.0", description="alpha one, rebuilt"
    )
    alpha_2 = ChartSpec(
        "alpha", "2.0.0", app_version="2.0", description="alpha two", keywords=["two"]
    )
    write_oldest_first(repo_dir, [alpha_1_rebuilt, alpha_9, alpha_2, *gamma])
    job = await reindex(api, repo_id)
    assert job["status"] == "successful", job
    assert version_counts(job) == {"added": 1, "updated": 1, "deleted": 2, "unchanged": 3}
    assert app_counts(job) == {"added": 0, "updated": 1, "deleted": 1, "unchanged": 1}
    two = await catalog(api, repo_id)
    assert statuses(two) == {
        "alpha": (
            "active",
            {"1.0.0": "active", "1.9.0": "active", "1.10.0": "deleted", "2.0.0": "active"},
        ),
        "beta": ("deleted", {"1.0.0": "deleted"}),
        "gamma": ("active", {"0.1.0": "active", "0.2.0": "active"}),
    }
    alpha = two["alpha"]["app"]
    assert alpha["app_id"] == one["alpha"]["app"]["app_id"]
    assert alpha["latest_version"] == "2.0.0"
    assert alpha["latest_app_version"] == "2.0"
    assert alpha["description"] == "alpha two"
    assert alpha["keywords"] == ["two"]
    rebuilt, old = two["alpha"]["versions"]["1.0.0"], one["alpha"]["versions"]["1.0.0"]
    assert rebuilt["version_id"] == old["version_id"]
    assert rebuilt["digest"] != old["digest"]
    assert rebuilt["description"] == "alpha one, rebuilt"
    assert rebuilt["update_time"] > old["update_time"]
    # Unchanged versions and apps were not rewritten.
    assert two["alpha"]["versions"]["1.9.0"] == one["alpha"]["versions"]["1.9.0"]
    assert two["gamma"] == one["gamma"]
    listed = (await api.get("/v1/apps", params={"repo_id": repo_id, "limit": 200})).json()
    assert sorted(a["name"] for a in listed["items"]) == ["alpha", "gamma"]

    # Round 3: the removed version and app come back, under the same ids.
    write_oldest_first(repo_dir, [alpha_1_rebuilt, alpha_9, alpha_10, alpha_2, beta, *gamma])
    job = await reindex(api, repo_id)
    assert job["status"] == "successful", job
    assert version_counts(job) == {"added": 0, "updated": 2, "deleted": 0, "unchanged": 5}
    assert app_counts(job) == {"added": 0, "updated": 1, "deleted": 0, "unchanged": 2}
    three = await catalog(api, repo_id)
    assert statuses(three) == {
        "alpha": (
            "active",
            {"1.0.0": "active", "1.9.0": "active", "1.10.0": "active", "2.0.0": "active"},
        ),
        "beta": ("active", {"1.0.0": "active"}),
        "gamma": ("active", {"0.1.0": "active", "0.2.0": "active"}),
    }
    revived = three["alpha"]["versions"]["1.10.0"]
    assert revived["version_id"] == one["alpha"]["versions"]["1.10.0"]["version_id"]
    assert revived["digest"] == one["alpha"]["versions"]["1.10.0"]["digest"]
    assert three["beta"]["app"]["app_id"] == one["beta"]["app"]["app_id"]
    assert three["beta"]["app"]["description"] == "beta one"
    assert (
        three["beta"]["versions"]["1.0.0"]["version_id"]
        == one["beta"]["versions"]["1.0.0"]["version_id"]
    )
    assert three["alpha"]["app"]["latest_version"] == "2.0.0"
    assert three["alpha"]["app"] == two["alpha"]["app"]


# ------------------------------------------------------------------------ outcome on job/repo


async def test_result_records_duration_and_fetch_seconds(
    api: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    chart_repo.set_delay(INDEX, 0.4)
    _, job = await indexed_repo(api, chart_repo.url)
    result = job["result"]
    assert isinstance(result["fetch_seconds"], float)
    assert isinstance(result["duration_seconds"], float)
    assert 0.4 <= result["fetch_seconds"] <= result["duration_seconds"] < 30
    (task,) = job["tasks"]
    assert task["result"] == result


async def test_repo_shows_last_index_outcome_and_releases_the_job(
    api: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    chart_repo.set_status(INDEX, 500)
    repo = await create_repo(api, unique(), chart_repo.url)
    job_id = repo["index_job_id"]
    assert job_id is not None
    assert repo["last_index_status"] is None
    job = await wait_job(api, job_id)
    message = assert_failed(job, "repo_http_error", "HTTP 500")
    await assert_repo_failed(api, repo["repo_id"], job)
    listed = (await api.get("/v1/repos", params={"name": repo["name"]})).json()
    (row,) = listed["items"]
    assert row["last_index_error"] == f"repo_http_error: {message}"
    assert row["index_job_id"] is None

    chart_repo.clear_faults()
    job = await reindex(api, repo["repo_id"])
    assert job["status"] == "successful", job
    after = (await api.get(f"/v1/repos/{repo['repo_id']}")).json()
    assert after["last_index_status"] == "successful"
    assert after["last_index_error"] is None
    assert after["index_job_id"] is None


async def test_basic_auth_credential_reaches_the_server(
    api: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    credential = {"username": "indexer", "password": "s3cret-pw"}
    repo, job = await indexed_repo(api, chart_repo.url, credential=credential)
    assert job["result"]["versions_added"] == 3
    index_requests = [
        headers
        for (_, path, _), headers in zip(chart_repo.requests, chart_repo.headers, strict=True)
        if path == INDEX
    ]
    assert index_requests
    expected = "Basic " + base64.b64encode(b"indexer:s3cret-pw").decode()
    assert all(h.get("authorization") == expected for h in index_requests), index_requests
    assert repo["credential_set"] is True
    shown = await api.get(f"/v1/repos/{repo['repo_id']}")
    assert shown.json()["credential_set"] is True
    assert "s3cret-pw" not in shown.text
    assert "s3cret-pw" not in (await api.get(f"/v1/jobs/{job['job_id']}")).text


async def test_failing_index_never_produces_a_500(
    api: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    # `api` already fails the test on any 5xx; every call around the failure is checked too.
    chart_repo.set_body(INDEX, b"just: a\nplain: mapping\n")
    repo = await create_repo(api, unique(), chart_repo.url)
    repo_id = repo["repo_id"]
    job = await wait_job(api, repo["index_job_id"])
    assert_failed(job, "index_not_helm", "entries")

    calls = [
        await api.get(f"/v1/repos/{repo_id}"),
        await api.get("/v1/repos", params={"name": repo["name"]}),
        await api.get(f"/v1/jobs/{job['job_id']}"),
        await api.get("/v1/jobs", params={"resource_id": repo_id}),
        await api.get("/v1/tasks", params={"job_id": job["job_id"]}),
        await api.get("/v1/apps", params={"repo_id": repo_id}),
        await api.post("/v1/repos/validate", json={"type": "http", "url": chart_repo.url}),
        await api.post(
            "/v1/repos/validate",
            json={"type": "http", "url": f"http://127.0.0.1:{closed_port()}"},
        ),
    ]
    assert [c.status_code for c in calls] == [200] * len(calls)
    assert calls[3].json()["total_count"] == 1
    assert calls[3].json()["items"][0]["error"]["code"] == "index_not_helm"
    assert calls[5].json()["total_count"] == 0
    validation = calls[6].json()
    assert validation["ok"] is False
    assert validation["error"]["code"] == "index_not_helm"
    assert calls[7].json()["error"]["code"] == "repo_unreachable"

    # Further failures on the same repo, then the usual edits, still answer 2xx/4xx.
    chart_repo.set_status(INDEX, 503)
    again = await reindex(api, repo_id)
    assert_failed(again, "repo_http_error", "HTTP 503")
    forced = await reindex(api, repo_id, force=True)
    assert_failed(forced, "repo_http_error", "HTTP 503")
    patched = await api.patch(f"/v1/repos/{repo_id}", json={"description": "still broken"})
    assert patched.status_code == 200, patched.text
    bad_patch = await api.patch(f"/v1/repos/{repo_id}", json={"url": "ftp://nowhere"})
    assert 400 <= bad_patch.status_code < 500, bad_patch.text
    deleted = await api.delete(f"/v1/repos/{repo_id}")
    assert deleted.status_code == 202, deleted.text
    await wait_job(api, deleted.json()["job_id"])
    gone = await api.post(f"/v1/repos/{repo_id}/index")
    assert gone.status_code == 409, gone.text
    assert (await api.get(f"/v1/repos/{repo_id}")).status_code == 200
