"""The event feed (`GET /v1/events`) and SSE details: resource filters, resume, keep-alives."""

from __future__ import annotations

import asyncio

import httpx

from tests.conftest import unique
from tests.helpers import create_repo, read_sse, wait_job
from tests.support.http_repo import RepoServer


async def test_feed_for_one_resource_replays_then_follows_live(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await create_repo(client, unique(), chart_repo.url)
    await wait_job(client, repo["index_job_id"])
    path = f"/v1/events?resource_kind=repo&resource_id={repo['repo_id']}&after=0"
    replay = await read_sse(client, path, max_events=7)
    assert {f["data"]["resource"]["id"] for f in replay} == {repo["repo_id"]}
    assert replay[-1]["data"]["status"] == "successful"

    # Follow live: a re-index after the replay shows up on the same open stream.
    async def reindex_soon() -> str:
        await asyncio.sleep(0.5)
        resp = await client.post(f"/v1/repos/{repo['repo_id']}/index")
        return str(resp.json()["job_id"])

    reindex = asyncio.create_task(reindex_soon())
    frames = await read_sse(client, path, max_events=8)
    job_id = await reindex
    assert frames[:7] == replay
    assert frames[7]["data"]["job_id"] == job_id


async def test_feed_resumes_after_last_event_id_without_gaps(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await create_repo(client, unique(), chart_repo.url)
    await wait_job(client, repo["index_job_id"])
    path = f"/v1/events?resource_kind=repo&resource_id={repo['repo_id']}"
    full = await read_sse(client, path + "&after=0", max_events=7)
    resumed = await read_sse(client, path, last_event_id=full[2]["id"], max_events=4)
    assert [f["id"] for f in resumed] == [f["id"] for f in full[3:]]


async def test_feed_of_other_resources_excludes_this_repo(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    mine = await create_repo(client, unique(), chart_repo.url)
    other = await create_repo(client, unique(), chart_repo.url)
    await wait_job(client, mine["index_job_id"])
    await wait_job(client, other["index_job_id"])
    frames = await read_sse(
        client,
        f"/v1/events?resource_kind=repo&resource_id={other['repo_id']}&after=0",
        max_events=7,
    )
    assert all(f["data"]["resource"]["id"] == other["repo_id"] for f in frames)


async def test_idle_streams_send_keep_alive_comments(client: httpx.AsyncClient) -> None:
    lines: list[str] = []
    async with client.stream("GET", "/v1/events?resource_kind=repo&resource_id=repo-idle") as resp:
        assert resp.status_code == 200
        assert resp.headers["cache-control"] == "no-cache"

        async def collect() -> None:
            async for line in resp.aiter_lines():
                lines.append(line)
                if line.startswith(": keep-alive"):
                    return

        await asyncio.wait_for(collect(), 5)  # tests run with a 1 s keep-alive interval
    assert ": keep-alive" in lines


async def test_bad_feed_parameters_are_400(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/events", params={"resource_kind": "Repo.*"})
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_parameter"
    resp = await client.get("/v1/events", headers={"Last-Event-ID": "abc"})
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_last_event_id"


async def test_stream_of_a_job_that_failed_ends_with_the_failure(
    client: httpx.AsyncClient,
) -> None:
    repo = await create_repo(client, unique(), "http://127.0.0.1:9")  # nothing listens on 9
    frames = await read_sse(client, f"/v1/jobs/{repo['index_job_id']}/events")
    last = frames[-1]["data"]
    assert last["type"] == "job.status" and last["status"] == "failed"
    assert last["data"]["error"]["code"] == "repo_unreachable"
