"""Cross-tenant isolation: one user cannot list, read, change, delete or stream another's rows,
while public repos and their published apps stay visible to all and groups share their rows."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
import pytest

from openpitrix.iam.schemas import Role
from tests.conftest import LiveServer, unique
from tests.helpers import assert_error, create_repo, read_sse, wait_job
from tests.support.auth import bearer, create_account, mint_token
from tests.support.http_repo import RepoServer


@dataclass
class Tenant:
    user_id: str
    http: httpx.AsyncClient


@pytest.fixture
async def tenants(server: LiveServer, database_url: str) -> AsyncIterator[dict[str, Tenant]]:
    """Two developers, a plain user, and ISVs in a group, its sub-group and another group."""
    people = {
        "alice": (Role.DEVELOPER, ""),
        "bob": (Role.DEVELOPER, ""),
        "carol": (Role.USER, ""),
        "acme": (Role.ISV, "acme"),
        "acme_team": (Role.ISV, "acme/team-a"),
        "globex": (Role.ISV, "globex"),
    }
    async with contextlib.AsyncExitStack() as stack:
        out = {}
        for name, (role, group) in people.items():
            user_id = await create_account(database_url, role, group)
            http = await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=server.url, timeout=30, headers=bearer(mint_token(user_id, role))
                )
            )
            out[name] = Tenant(user_id, http)
        yield out


async def indexed_repo(tenant: Tenant, url: str, **extra: Any) -> dict[str, Any]:
    repo = await create_repo(tenant.http, unique(), url, **extra)
    assert (await wait_job(tenant.http, repo["index_job_id"]))["status"] == "successful"
    return repo


async def ids(http: httpx.AsyncClient, path: str, key: str, **params: Any) -> set[str]:
    resp = await http.get(path, params={"limit": 100, **params})
    assert resp.status_code == 200, resp.text
    return {item[key] for item in resp.json()["items"]}


async def collect_sse(http: httpx.AsyncClient, path: str, seconds: float) -> list[dict[str, Any]]:
    """Every event frame a stream sends within `seconds` (streams that never end on their own)."""
    frames: list[dict[str, Any]] = []

    async def read() -> None:
        async with http.stream("GET", path) as resp:
            assert resp.status_code == 200
            async for line in resp.aiter_lines():
                if line.startswith("data:"):
                    frames.append(orjson.loads(line[5:]))

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(read(), seconds)
    return frames


async def test_a_private_repo_and_everything_under_it_is_invisible_to_another_developer(
    tenants: dict[str, Tenant], chart_repo: RepoServer
) -> None:
    alice, bob = tenants["alice"].http, tenants["bob"].http
    repo = await indexed_repo(tenants["alice"], chart_repo.url, visibility="private")
    repo_id, job_id = repo["repo_id"], repo["index_job_id"]
    app_ids = await ids(alice, "/v1/apps", "app_id", repo_id=repo_id)
    assert len(app_ids) == 2
    app_id = next(iter(app_ids))
    version_id = next(iter(await ids(alice, f"/v1/apps/{app_id}/versions", "version_id")))

    # Lists leave it out.
    assert repo_id not in await ids(bob, "/v1/repos", "repo_id")
    assert not await ids(bob, "/v1/apps", "app_id", repo_id=repo_id)
    assert job_id not in await ids(bob, "/v1/jobs", "job_id")
    assert not await ids(bob, "/v1/tasks", "task_id", job_id=job_id)
    # Reads, changes, deletes and streams are 404s, exactly like rows that do not exist.
    for method, path, body in [
        ("GET", f"/v1/repos/{repo_id}", None),
        ("PATCH", f"/v1/repos/{repo_id}", {"description": "mine now"}),
        ("DELETE", f"/v1/repos/{repo_id}", None),
        ("POST", f"/v1/repos/{repo_id}/index", None),
        ("GET", f"/v1/apps/{app_id}", None),
        ("GET", f"/v1/apps/{app_id}/versions", None),
        ("GET", f"/v1/app-versions/{version_id}", None),
        ("GET", f"/v1/jobs/{job_id}", None),
        ("GET", f"/v1/jobs/{job_id}/events", None),
    ]:
        resp = await bob.request(method, path, json=body)
        assert_error(resp, 404, "not_found")
    # Nothing changed: the owner still sees the repo as it was.
    mine = await alice.get(f"/v1/repos/{repo_id}")
    assert mine.json()["status"] == "active" and mine.json()["description"] == ""


async def test_a_repo_created_without_visibility_is_private_to_its_owner(
    tenants: dict[str, Tenant], chart_repo: RepoServer
) -> None:
    # A repo added with credentials and no visibility must not publish its apps to everyone.
    repo = await indexed_repo(
        tenants["alice"], chart_repo.url, credential={"username": "ci", "password": "s3cret"}
    )
    assert repo["visibility"] == "private"
    repo_id = repo["repo_id"]
    assert len(await ids(tenants["alice"].http, "/v1/apps", "app_id", repo_id=repo_id)) == 2
    for reader in ("bob", "carol", "globex"):
        http = tenants[reader].http
        assert repo_id not in await ids(http, "/v1/repos", "repo_id")
        assert not await ids(http, "/v1/apps", "app_id", repo_id=repo_id)
        assert_error(await http.get(f"/v1/repos/{repo_id}"), 404, "not_found")


async def test_each_developer_has_their_own_namespace_of_repo_names(
    tenants: dict[str, Tenant], chart_repo: RepoServer
) -> None:
    name = unique()
    first = await create_repo(tenants["alice"].http, name, chart_repo.url, visibility="private")
    second = await create_repo(tenants["bob"].http, name, chart_repo.url, visibility="private")
    assert first["repo_id"] != second["repo_id"]
    again = await tenants["alice"].http.post(
        "/v1/repos",
        json={"name": name, "type": "http", "url": chart_repo.url, "providers": ["kubernetes"]},
    )
    assert_error(again, 409, "repo_name_taken")


async def test_public_repos_and_their_published_apps_are_visible_to_all_but_writable_by_owner(
    tenants: dict[str, Tenant], chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(tenants["alice"], chart_repo.url, visibility="public")
    repo_id = repo["repo_id"]
    for reader in ("bob", "carol", "globex"):
        http = tenants[reader].http
        assert repo_id in await ids(http, "/v1/repos", "repo_id")
        assert (await http.get(f"/v1/repos/{repo_id}")).status_code == 200
        apps = await ids(http, "/v1/apps", "app_id", repo_id=repo_id)
        assert len(apps) == 2, reader
        for app_id in apps:
            assert (await http.get(f"/v1/apps/{app_id}")).status_code == 200
            assert await ids(http, f"/v1/apps/{app_id}/versions", "version_id")
        # The index job is the owner's business, not the public's.
        assert_error(await http.get(f"/v1/jobs/{repo['index_job_id']}"), 404, "not_found")
    # A developer sees the public repo but may not change it; a plain user may not write repos.
    assert_error(
        await tenants["bob"].http.patch(f"/v1/repos/{repo_id}", json={"description": "x"}),
        403,
        "forbidden",
    )
    assert_error(await tenants["carol"].http.delete(f"/v1/repos/{repo_id}"), 403, "forbidden")
    assert_error(await tenants["carol"].http.post("/v1/repos", json={}), 403, "forbidden")

    # Made private, it disappears for everyone else at once.
    resp = await tenants["alice"].http.patch(f"/v1/repos/{repo_id}", json={"visibility": "private"})
    assert resp.status_code == 200, resp.text
    assert repo_id not in await ids(tenants["carol"].http, "/v1/repos", "repo_id")
    assert not await ids(tenants["carol"].http, "/v1/apps", "app_id", repo_id=repo_id)


async def test_draft_apps_of_a_public_repo_stay_with_their_owner(
    tenants: dict[str, Tenant], chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(
        tenants["alice"], chart_repo.url, visibility="public", app_default_status="draft"
    )
    assert len(await ids(tenants["alice"].http, "/v1/apps", "app_id", repo_id=repo["repo_id"])) == 2
    assert not await ids(tenants["carol"].http, "/v1/apps", "app_id", repo_id=repo["repo_id"])


async def test_a_group_shares_rows_downwards_and_never_with_another_group(
    tenants: dict[str, Tenant], chart_repo: RepoServer
) -> None:
    team_repo = await indexed_repo(tenants["acme_team"], chart_repo.url, visibility="private")
    parent_repo = await indexed_repo(tenants["acme"], chart_repo.url, visibility="private")
    acme, team, globex = (tenants[n].http for n in ("acme", "acme_team", "globex"))

    # The parent group sees and may change its sub-group's rows...
    assert team_repo["repo_id"] in await ids(acme, "/v1/repos", "repo_id")
    assert team_repo["index_job_id"] in await ids(acme, "/v1/jobs", "job_id")
    resp = await acme.patch(f"/v1/repos/{team_repo['repo_id']}", json={"description": "ok"})
    assert resp.status_code == 200, resp.text
    # ...the sub-group does not see its parent's, and another group sees neither.
    assert parent_repo["repo_id"] not in await ids(team, "/v1/repos", "repo_id")
    assert_error(await team.get(f"/v1/repos/{parent_repo['repo_id']}"), 404, "not_found")
    for repo in (team_repo, parent_repo):
        assert_error(await globex.get(f"/v1/repos/{repo['repo_id']}"), 404, "not_found")
        assert_error(await globex.get(f"/v1/jobs/{repo['index_job_id']}"), 404, "not_found")


async def test_the_event_feed_carries_only_the_callers_own_events(
    tenants: dict[str, Tenant], chart_repo: RepoServer
) -> None:
    alice, bob = tenants["alice"], tenants["bob"]
    theirs = await indexed_repo(alice, chart_repo.url, visibility="private")
    mine = await indexed_repo(bob, chart_repo.url, visibility="private")
    job = await read_sse(bob.http, f"/v1/jobs/{mine['index_job_id']}/events")

    # A replay of the whole feed from the first event ever: Bob's events and nobody else's,
    # though the stream holds every test's events.
    feed = await read_sse(bob.http, "/v1/events?after=0", max_events=len(job))
    assert [f["data"]["id"] for f in feed] == [f["data"]["id"] for f in job]
    assert {f["data"]["owner"] for f in feed} == {bob.user_id}
    # Filtering by another tenant's resource yields nothing at all.
    path = f"/v1/events?after=0&resource_kind=repo&resource_id={theirs['repo_id']}"
    assert await collect_sse(bob.http, path, seconds=2) == []


async def test_a_group_feed_has_the_groups_events_and_no_other_groups(
    tenants: dict[str, Tenant], chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(tenants["acme_team"], chart_repo.url, visibility="private")
    path = f"/v1/events?after=0&resource_kind=repo&resource_id={repo['repo_id']}"
    seen_by_parent = await collect_sse(tenants["acme"].http, path, seconds=2)
    assert seen_by_parent and {e["owner"] for e in seen_by_parent} == {tenants["acme_team"].user_id}
    assert any(e["type"] == "job.status" and e["status"] == "successful" for e in seen_by_parent)
    assert await collect_sse(tenants["globex"].http, path, seconds=2) == []
    # Unfiltered, another group's replay of the whole stream holds none of acme's events.
    everything = await collect_sse(tenants["globex"].http, "/v1/events?after=0", seconds=2)
    assert all(e["owner"] == tenants["globex"].user_id for e in everything)
