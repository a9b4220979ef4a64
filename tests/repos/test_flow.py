"""The main user flow: create a repo, watch its index job, browse the catalog."""

from __future__ import annotations

import httpx

from tests.conftest import unique
from tests.helpers import create_repo, read_sse, wait_job
from tests.support.http_repo import RepoServer


async def test_created_repo_is_indexed_and_its_apps_listed(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await create_repo(client, unique(), chart_repo.url)
    assert repo["index_job_id"].startswith("j-")
    job = await wait_job(client, repo["index_job_id"])
    assert job["status"] == "successful", job
    assert job["result"]["apps_added"] == 2
    assert job["result"]["versions_added"] == 3

    resp = await client.get(
        "/v1/apps", params={"repo_id": repo["repo_id"], "sort_key": "name", "reverse": False}
    )
    page = resp.json()
    assert page["total_count"] == 2
    nginx = page["items"][0]
    assert nginx["name"] == "nginx"
    assert nginx["latest_version"] == "1.1.0"
    assert nginx["keywords"] == ["web", "proxy"]

    shown = (await client.get(f"/v1/repos/{repo['repo_id']}")).json()
    assert (shown["app_count"], shown["version_count"]) == (2, 3)

    versions = (await client.get(f"/v1/apps/{nginx['app_id']}/versions")).json()
    assert {v["version"] for v in versions["items"]} == {"1.0.0", "1.1.0"}
    one = versions["items"][0]
    assert one["package_url"].startswith(chart_repo.url)
    assert len(one["digest"]) == 64


async def test_job_stream_reports_steps_then_ends_and_resumes_without_duplicates(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await create_repo(client, unique(), chart_repo.url)
    job_id = repo["index_job_id"]
    frames = await read_sse(client, f"/v1/jobs/{job_id}/events")
    types = [f["event"] for f in frames]
    assert types[0] == "job.status" and frames[0]["data"]["status"] == "pending"
    assert frames[-1]["data"]["status"] == "successful"
    messages = [f["data"]["message"] for f in frames if f["event"] == "task.progress"]
    assert any(m.startswith("fetched index:") for m in messages)
    assert any(m.startswith("upserted 2 apps") for m in messages)
    ids = [f["id"] for f in frames]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)

    resumed = await read_sse(client, f"/v1/jobs/{job_id}/events", last_event_id=ids[2])
    assert [f["id"] for f in resumed] == ids[3:]
    after_end = await read_sse(
        client, f"/v1/jobs/{job_id}/events", last_event_id=ids[-1], timeout=10
    )
    assert after_end == []


async def test_unchanged_reindex_reports_the_catalog_as_unchanged_and_delete_empties_it(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await create_repo(client, unique(), chart_repo.url)
    await wait_job(client, repo["index_job_id"])
    again = (await client.post(f"/v1/repos/{repo['repo_id']}/index")).json()
    result = (await wait_job(client, again["job_id"]))["result"]
    assert result["not_modified"] is True
    assert (result["apps_unchanged"], result["versions_unchanged"]) == (2, 3)
    assert result["versions_added"] == result["versions_deleted"] == 0

    deleted = (await client.delete(f"/v1/repos/{repo['repo_id']}")).json()
    await wait_job(client, deleted["job_id"])
    shown = (await client.get(f"/v1/repos/{repo['repo_id']}")).json()
    assert (shown["status"], shown["app_count"], shown["version_count"]) == ("deleted", 0, 0)
