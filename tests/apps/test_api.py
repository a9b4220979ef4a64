"""The catalog API: apps and app versions as the indexer stored them, with list conventions."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import unique
from tests.helpers import assert_error, create_repo, wait_job, when
from tests.support.charts import ChartSpec, write_index
from tests.support.http_repo import RepoServer

Params = list[tuple[str, str | int]]


async def indexed(client: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    repo = await create_repo(client, unique(), url, **extra)
    job = await wait_job(client, repo["index_job_id"])
    assert job["status"] == "successful", job
    return repo


async def apps_of(client: httpx.AsyncClient, params: Params) -> dict[str, Any]:
    resp = await client.get("/v1/apps", params=[*params, ("limit", 200)])
    assert resp.status_code == 200, resp.text
    page: dict[str, Any] = resp.json()
    assert page["total_count"] == len(page["items"])
    return page


async def app_named(client: httpx.AsyncClient, repo_id: str, name: str) -> dict[str, Any]:
    page = await apps_of(client, [("repo_id", repo_id), ("name", name)])
    assert page["total_count"] == 1, page
    app: dict[str, Any] = page["items"][0]
    return app


async def versions_of(
    client: httpx.AsyncClient, app_id: str, params: Params | None = None
) -> dict[str, Any]:
    query: Params = [*(params or []), ("limit", 200)]
    resp = await client.get(f"/v1/apps/{app_id}/versions", params=query)
    assert resp.status_code == 200, resp.text
    page: dict[str, Any] = resp.json()
    return page


# ---------------------------------------------------------------------------------------- apps


async def test_app_fields_come_from_the_newest_chart_version(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed(client, chart_repo.url)
    nginx = await app_named(client, repo["repo_id"], "nginx")
    assert nginx["app_id"].startswith("app-")
    assert nginx["repo_id"] == repo["repo_id"]
    assert nginx["description"] == "nginx chart"
    assert nginx["home"] == "https://example.org/nginx"
    assert nginx["icon"] == "https://example.org/nginx/icon.png"
    assert nginx["keywords"] == ["web", "proxy"]
    assert nginx["maintainers"] == [
        {
            "name": "nginx maintainers",
            "email": "team-nginx@example.org",
            "url": "https://example.org/nginx/team",
        }
    ]
    assert nginx["sources"] == ["https://github.com/example/nginx"]
    assert nginx["latest_version"] == "1.1.0"
    assert nginx["latest_app_version"] == "1.26.0"
    assert nginx["status"] == "active"

    redis = await app_named(client, repo["repo_id"], "redis")
    assert redis["latest_version"] == "7.0.1"
    assert redis["keywords"] == ["cache"]

    got = await client.get(f"/v1/apps/{nginx['app_id']}")
    assert got.status_code == 200
    assert got.json() == nginx


async def test_latest_version_is_the_highest_by_semver_not_by_text_or_date(
    client: httpx.AsyncClient, repo_dir: Path, repo_server: RepoServer
) -> None:
    # 1.10.0 is the oldest package and sorts lowest as text; it is still the latest version.
    write_index(
        repo_dir,
        [
            ChartSpec("tool", "1.10.0", app_version="10", description="release ten"),
            ChartSpec("tool", "1.9.0", app_version="9", description="release nine"),
            ChartSpec("tool", "1.2.0", app_version="2", description="release two"),
        ],
    )
    repo = await indexed(client, repo_server.url)
    tool = await app_named(client, repo["repo_id"], "tool")
    assert tool["latest_version"] == "1.10.0"
    assert tool["latest_app_version"] == "10"
    # The app's metadata is that version's.
    assert tool["description"] == "release ten"


async def test_latest_version_ranks_releases_above_their_prereleases(
    client: httpx.AsyncClient, repo_dir: Path, repo_server: RepoServer
) -> None:
    write_index(
        repo_dir,
        [
            ChartSpec("svc", "2.0.0", app_version="2.0"),
            ChartSpec("svc", "2.0.0-beta.2", app_version="2.0b2"),
            ChartSpec("svc", "1.10.0", app_version="1.10"),
        ],
    )
    repo = await indexed(client, repo_server.url)
    svc = await app_named(client, repo["repo_id"], "svc")
    assert svc["latest_version"] == "2.0.0"
    assert svc["latest_app_version"] == "2.0"


async def test_unknown_app_and_version_are_404(client: httpx.AsyncClient) -> None:
    body = assert_error(await client.get("/v1/apps/app-doesnotexist"), 404, "not_found")
    assert "app-doesnotexist" in body["message"]
    assert_error(await client.get("/v1/apps/app-doesnotexist/versions"), 404, "not_found")
    body = assert_error(await client.get("/v1/app-versions/appv-doesnotexist"), 404, "not_found")
    assert "appv-doesnotexist" in body["message"]


async def test_app_list_filters_by_repo_and_name(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    first = await indexed(client, chart_repo.url)
    second = await indexed(client, chart_repo.url)
    one = await apps_of(client, [("repo_id", first["repo_id"])])
    assert sorted(a["name"] for a in one["items"]) == ["nginx", "redis"]
    assert {a["repo_id"] for a in one["items"]} == {first["repo_id"]}

    both = await apps_of(
        client, [("repo_id", first["repo_id"]), ("repo_id", second["repo_id"]), ("name", "nginx")]
    )
    assert both["total_count"] == 2
    assert {a["repo_id"] for a in both["items"]} == {first["repo_id"], second["repo_id"]}

    names = await apps_of(
        client, [("repo_id", first["repo_id"]), ("name", "nginx"), ("name", "redis")]
    )
    assert names["total_count"] == 2
    assert (await apps_of(client, [("repo_id", first["repo_id"]), ("name", "ngin")]))[
        "total_count"
    ] == 0

    nginx = one["items"][0]
    by_id = await apps_of(client, [("app_id", nginx["app_id"])])
    assert [a["app_id"] for a in by_id["items"]] == [nginx["app_id"]]


async def test_app_list_filters_by_status(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed(client, chart_repo.url)
    rid = ("repo_id", repo["repo_id"])
    assert (await apps_of(client, [rid, ("status", "active")]))["total_count"] == 2
    assert (await apps_of(client, [rid, ("status", "deleted")]))["total_count"] == 0
    assert (await apps_of(client, [rid, ("status", "draft")]))["total_count"] == 0


async def test_app_search_word_matches_id_exactly_and_text_in_any_case(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed(client, chart_repo.url)
    rid = ("repo_id", repo["repo_id"])
    by_name = await apps_of(client, [rid, ("search_word", "NGIN")])
    assert [a["name"] for a in by_name["items"]] == ["nginx"]
    by_description = await apps_of(client, [rid, ("search_word", "Redis Chart")])
    assert [a["name"] for a in by_description["items"]] == ["redis"]
    assert (await apps_of(client, [rid, ("search_word", "chart")]))["total_count"] == 2

    nginx = await app_named(client, repo["repo_id"], "nginx")
    by_id = await apps_of(client, [("search_word", nginx["app_id"])])
    assert [a["app_id"] for a in by_id["items"]] == [nginx["app_id"]]
    assert (await apps_of(client, [("search_word", nginx["app_id"][:-1])]))["total_count"] == 0


async def test_app_sort_keys(client: httpx.AsyncClient, chart_repo: RepoServer) -> None:
    repo = await indexed(client, chart_repo.url)
    rid = ("repo_id", repo["repo_id"])
    ascending = await apps_of(client, [rid, ("sort_key", "name"), ("reverse", "false")])
    assert [a["name"] for a in ascending["items"]] == ["nginx", "redis"]
    descending = await apps_of(client, [rid, ("sort_key", "name")])
    assert [a["name"] for a in descending["items"]] == ["redis", "nginx"]
    for key in ("create_time", "update_time", "status_time"):
        page = await apps_of(client, [rid, ("sort_key", key)])
        assert page["total_count"] == 2, key

    body = assert_error(
        await client.get("/v1/apps", params={"sort_key": "latest"}), 400, "invalid_sort_key"
    )
    assert "name" in body["details"]["allowed"]


async def test_app_list_paging(client: httpx.AsyncClient, chart_repo: RepoServer) -> None:
    repo = await indexed(client, chart_repo.url)
    params: Params = [("repo_id", repo["repo_id"]), ("sort_key", "name"), ("reverse", "false")]
    first = (await client.get("/v1/apps", params=[*params, ("limit", 1)])).json()
    second = (await client.get("/v1/apps", params=[*params, ("limit", 1), ("offset", 1)])).json()
    assert first["total_count"] == second["total_count"] == 2
    assert [a["name"] for a in first["items"] + second["items"]] == ["nginx", "redis"]
    assert_error(await client.get("/v1/apps", params={"limit": 500}), 400, "invalid_parameter")


# ------------------------------------------------------------------------------------ versions


async def test_versions_carry_every_chart_field_and_a_downloadable_package(
    client: httpx.AsyncClient, chart_repo: RepoServer, repo_dir: Path
) -> None:
    repo = await indexed(client, chart_repo.url)
    nginx = await app_named(client, repo["repo_id"], "nginx")
    page = await versions_of(client, nginx["app_id"])
    assert page["total_count"] == 2
    # Newest package first by default.
    assert [v["version"] for v in page["items"]] == ["1.1.0", "1.0.0"]
    newest, oldest = page["items"]

    assert newest["version_id"].startswith("appv-")
    assert newest["app_id"] == nginx["app_id"]
    assert newest["repo_id"] == repo["repo_id"]
    assert newest["name"] == "nginx"
    assert newest["app_version"] == "1.26.0"
    assert oldest["app_version"] == "1.25.0"
    assert newest["description"] == "nginx chart"
    assert newest["home"] == "https://example.org/nginx"
    assert newest["icon"] == "https://example.org/nginx/icon.png"
    assert newest["keywords"] == ["web", "proxy"]
    assert oldest["keywords"] == ["web"]
    assert newest["maintainers"] == [
        {
            "name": "nginx maintainers",
            "email": "team-nginx@example.org",
            "url": "https://example.org/nginx/team",
        }
    ]
    assert newest["sources"] == ["https://github.com/example/nginx"]
    assert newest["status"] == "active"
    # `created` is the index's stamp (written with nanoseconds), kept to the microsecond.
    assert when(oldest["created"]) == datetime(2024, 1, 1, 0, 0, 0, 0, tzinfo=UTC)
    assert when(newest["created"]) == datetime(2024, 1, 1, 1, 0, 0, 123456, tzinfo=UTC)

    for version in page["items"]:
        filename = f"nginx-{version['version']}.tgz"
        assert version["package_url"] == f"{chart_repo.url}/{filename}"
        expected = hashlib.sha256((repo_dir / filename).read_bytes()).hexdigest()
        assert version["digest"] == expected
        package = await client.get(version["package_url"])
        assert package.status_code == 200
        assert hashlib.sha256(package.content).hexdigest() == version["digest"]


async def test_get_app_version_by_id(client: httpx.AsyncClient, chart_repo: RepoServer) -> None:
    repo = await indexed(client, chart_repo.url)
    redis = await app_named(client, repo["repo_id"], "redis")
    listed = (await versions_of(client, redis["app_id"]))["items"]
    assert len(listed) == 1
    resp = await client.get(f"/v1/app-versions/{listed[0]['version_id']}")
    assert resp.status_code == 200
    assert resp.json() == listed[0]
    assert resp.json()["version"] == "7.0.1"


async def test_version_list_filters_sorts_and_searches(
    client: httpx.AsyncClient, repo_dir: Path, repo_server: RepoServer
) -> None:
    write_index(
        repo_dir,
        [
            ChartSpec("web", "1.0.0", app_version="a1", description="first cut"),
            ChartSpec("web", "1.2.0", app_version="a2", description="Second release"),
            ChartSpec("web", "1.1.0", app_version="a3", description="third drop"),
        ],
    )
    repo = await indexed(client, repo_server.url)
    web = await app_named(client, repo["repo_id"], "web")
    app_id = web["app_id"]

    default = await versions_of(client, app_id)
    assert [v["version"] for v in default["items"]] == ["1.1.0", "1.2.0", "1.0.0"]
    by_created = await versions_of(client, app_id, [("sort_key", "created"), ("reverse", "false")])
    assert [v["version"] for v in by_created["items"]] == ["1.0.0", "1.2.0", "1.1.0"]
    by_version = await versions_of(client, app_id, [("sort_key", "version"), ("reverse", "false")])
    assert [v["version"] for v in by_version["items"]] == ["1.0.0", "1.1.0", "1.2.0"]

    picked = await versions_of(client, app_id, [("version", "1.0.0"), ("version", "1.1.0")])
    assert sorted(v["version"] for v in picked["items"]) == ["1.0.0", "1.1.0"]
    assert (await versions_of(client, app_id, [("status", "active")]))["total_count"] == 3
    assert (await versions_of(client, app_id, [("status", "deleted")]))["total_count"] == 0

    search = await versions_of(client, app_id, [("search_word", "SECOND")])
    assert [v["version"] for v in search["items"]] == ["1.2.0"]
    by_app_version = await versions_of(client, app_id, [("search_word", "a3")])
    assert [v["version"] for v in by_app_version["items"]] == ["1.1.0"]
    one = default["items"][0]
    by_id = await versions_of(client, app_id, [("search_word", one["version_id"])])
    assert [v["version_id"] for v in by_id["items"]] == [one["version_id"]]

    paged = await client.get(
        f"/v1/apps/{app_id}/versions", params={"limit": 2, "offset": 2, "sort_key": "version"}
    )
    assert paged.json()["total_count"] == 3
    assert [v["version"] for v in paged.json()["items"]] == ["1.0.0"]

    bad = await client.get(f"/v1/apps/{app_id}/versions", params={"sort_key": "digest"})
    body = assert_error(bad, 400, "invalid_sort_key")
    assert "version" in body["details"]["allowed"]


async def test_versions_without_a_created_stamp_list_last_in_either_order(
    client: httpx.AsyncClient, repo_dir: Path, repo_server: RepoServer
) -> None:
    index_path = write_index(
        repo_dir,
        [ChartSpec("job", "1.0.0"), ChartSpec("job", "2.0.0"), ChartSpec("job", "1.5.0")],
    )
    index = yaml.safe_load(index_path.read_text())
    for entry in index["entries"]["job"]:
        if entry["version"] == "2.0.0":
            del entry["created"]
    index_path.write_text(yaml.safe_dump(index, sort_keys=False))
    repo = await indexed(client, repo_server.url)
    app = await app_named(client, repo["repo_id"], "job")

    newest_first = await versions_of(client, app["app_id"])
    assert [v["version"] for v in newest_first["items"]] == ["1.5.0", "1.0.0", "2.0.0"]
    assert newest_first["items"][-1]["created"] is None
    oldest_first = await versions_of(client, app["app_id"], [("reverse", "false")])
    assert [v["version"] for v in oldest_first["items"]] == ["1.0.0", "1.5.0", "2.0.0"]
    # The latest version is still the highest, whatever the stamps say.
    assert app["latest_version"] == "2.0.0"


async def test_versions_of_one_app_do_not_include_another_apps(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed(client, chart_repo.url)
    nginx = await app_named(client, repo["repo_id"], "nginx")
    redis = await app_named(client, repo["repo_id"], "redis")
    assert {v["name"] for v in (await versions_of(client, nginx["app_id"]))["items"]} == {"nginx"}
    assert {v["name"] for v in (await versions_of(client, redis["app_id"]))["items"]} == {"redis"}


# ------------------------------------------------------------------------------ default status


@pytest.mark.parametrize("status", ["draft", "active"])
async def test_app_default_status_decides_the_status_of_new_apps_and_versions(
    client: httpx.AsyncClient, chart_repo: RepoServer, status: str
) -> None:
    repo = await indexed(client, chart_repo.url, app_default_status=status)
    rid = ("repo_id", repo["repo_id"])
    apps = await apps_of(client, [rid])
    assert apps["total_count"] == 2
    assert {a["status"] for a in apps["items"]} == {status}
    assert (await apps_of(client, [rid, ("status", status)]))["total_count"] == 2
    other = "active" if status == "draft" else "draft"
    assert (await apps_of(client, [rid, ("status", other)]))["total_count"] == 0
    for app in apps["items"]:
        versions = await versions_of(client, app["app_id"])
        assert versions["total_count"] >= 1
        assert {v["status"] for v in versions["items"]} == {status}
        by_status = await versions_of(client, app["app_id"], [("status", status)])
        assert by_status["total_count"] == versions["total_count"]


async def test_reindex_adds_new_versions_with_the_default_status(
    client: httpx.AsyncClient, repo_dir: Path, repo_server: RepoServer
) -> None:
    write_index(repo_dir, [ChartSpec("api", "1.0.0")])
    repo = await indexed(client, repo_server.url, app_default_status="draft")
    write_index(repo_dir, [ChartSpec("api", "1.0.0"), ChartSpec("api", "1.1.0")])
    resp = await client.post(f"/v1/repos/{repo['repo_id']}/index")
    assert resp.status_code == 202, resp.text
    job = await wait_job(client, resp.json()["job_id"])
    assert job["status"] == "successful", job
    api = await app_named(client, repo["repo_id"], "api")
    assert api["latest_version"] == "1.1.0"
    versions = await versions_of(client, api["app_id"])
    assert {v["version"]: v["status"] for v in versions["items"]} == {
        "1.0.0": "draft",
        "1.1.0": "draft",
    }
