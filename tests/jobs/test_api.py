"""The job API: list and read jobs and their tasks, and the errors of the event stream."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.helpers import assert_error, closed_url, create_repo, wait_job, when
from tests.support.http_repo import RepoServer

Params = list[tuple[str, str | int]]


async def jobs(client: httpx.AsyncClient, params: Params) -> dict[str, Any]:
    resp = await client.get("/v1/jobs", params=params)
    assert resp.status_code == 200, resp.text
    page: dict[str, Any] = resp.json()
    assert set(page) == {"total_count", "items"}
    return page


async def ids(client: httpx.AsyncClient, params: Params) -> list[str]:
    page = await jobs(client, [*params, ("limit", 200)])
    assert page["total_count"] == len(page["items"])
    return [j["job_id"] for j in page["items"]]


async def indexed_then_deleted(
    client: httpx.AsyncClient, url: str
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """A repo with a finished index job and a finished delete job."""
    repo = await create_repo(client, unique(), url)
    index_job = await wait_job(client, repo["index_job_id"])
    resp = await client.delete(f"/v1/repos/{repo['repo_id']}")
    assert resp.status_code == 202, resp.text
    delete_job = await wait_job(client, resp.json()["job_id"])
    return repo, index_job, delete_job


# ---------------------------------------------------------------------------------------- list


async def test_job_list_filters_by_resource_action_status_and_kind(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo, index_job, delete_job = await indexed_then_deleted(client, chart_repo.url)
    failed = await create_repo(client, unique(), closed_url())
    failed_job = await wait_job(client, failed["index_job_id"])
    assert failed_job["status"] == "failed"

    mine: Params = [("resource_id", repo["repo_id"])]
    # Newest first by default.
    assert await ids(client, mine) == [delete_job["job_id"], index_job["job_id"]]
    assert await ids(client, [*mine, ("action", "index_repo")]) == [index_job["job_id"]]
    assert await ids(client, [*mine, ("action", "delete_repo")]) == [delete_job["job_id"]]
    assert len(await ids(client, [*mine, ("action", "index_repo"), ("action", "delete_repo")])) == 2
    assert len(await ids(client, [*mine, ("status", "successful")])) == 2
    assert await ids(client, [*mine, ("status", "failed")]) == []
    assert len(await ids(client, [*mine, ("resource_kind", "repo")])) == 2
    assert await ids(client, [*mine, ("resource_kind", "cluster")]) == []

    both: Params = [("resource_id", repo["repo_id"]), ("resource_id", failed["repo_id"])]
    assert len(await ids(client, both)) == 3
    assert await ids(client, [*both, ("status", "failed")]) == [failed_job["job_id"]]
    assert len(await ids(client, [*both, ("status", "failed"), ("status", "successful")])) == 3

    executor = index_job["executor"]
    assert index_job["job_id"] in await ids(client, [*mine, ("executor", executor)])
    assert await ids(client, [*mine, ("executor", "nobody")]) == []


async def test_job_list_paging_sorting_and_search(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo, index_job, delete_job = await indexed_then_deleted(client, chart_repo.url)
    mine: Params = [("resource_id", repo["repo_id"])]
    first = await jobs(client, [*mine, ("limit", 1)])
    second = await jobs(client, [*mine, ("limit", 1), ("offset", 1)])
    assert first["total_count"] == second["total_count"] == 2
    assert [j["job_id"] for j in first["items"] + second["items"]] == [
        delete_job["job_id"],
        index_job["job_id"],
    ]
    oldest_first = await ids(client, [*mine, ("reverse", "false")])
    assert oldest_first == [index_job["job_id"], delete_job["job_id"]]
    by_action = await ids(client, [*mine, ("sort_key", "action"), ("reverse", "false")])
    assert by_action == [delete_job["job_id"], index_job["job_id"]]

    assert await ids(client, [("search_word", index_job["job_id"])]) == [index_job["job_id"]]
    assert await ids(client, [("search_word", index_job["job_id"][:-1])]) == []
    by_resource = await ids(client, [("search_word", repo["repo_id"])])
    assert sorted(by_resource) == sorted([index_job["job_id"], delete_job["job_id"]])
    assert await ids(client, [*mine, ("search_word", "DELETE_")]) == [delete_job["job_id"]]

    body = assert_error(
        await client.get("/v1/jobs", params={"sort_key": "owner"}), 400, "invalid_sort_key"
    )
    assert "create_time" in body["details"]["allowed"]
    assert_error(await client.get("/v1/jobs", params={"limit": 201}), 400, "invalid_parameter")
    assert_error(await client.get("/v1/jobs", params={"offset": -5}), 400, "invalid_parameter")


# ---------------------------------------------------------------------------------------- read


async def test_successful_job_shows_its_lifecycle_result_and_tasks(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await create_repo(client, unique(), chart_repo.url)
    job_id = repo["index_job_id"]
    await wait_job(client, job_id)
    resp = await client.get(f"/v1/jobs/{job_id}")
    assert resp.status_code == 200, resp.text
    job = resp.json()
    assert job["job_id"] == job_id
    assert job["action"] == "index_repo"
    assert job["status"] == "successful"
    assert job["resource_kind"] == "repo"
    assert job["resource_id"] == repo["repo_id"]
    assert isinstance(job["executor"], str)
    assert job["executor"]
    assert job["attempts"] == 1
    assert job["progress"] == 100
    assert job["error"] is None
    created, started, ended = (
        when(job["create_time"]),
        when(job["start_time"]),
        when(job["end_time"]),
    )
    assert created <= started <= ended
    for field in ("create_time", "status_time", "start_time", "end_time"):
        assert job[field].endswith("Z"), (field, job[field])
    result = job["result"]
    assert result["apps_added"] == 2
    assert result["versions_added"] == 3
    assert result["charts"] == 2
    assert result["versions"] == 3
    assert result["not_modified"] is False

    assert len(job["tasks"]) == 1
    task = job["tasks"][0]
    assert task["task_id"].startswith("t-")
    assert task["job_id"] == job_id
    assert task["action"] == "index"
    assert task["status"] == "successful"
    assert task["executor"] == job["executor"]
    assert task["error"] is None
    assert task["result"]["versions_added"] == 3
    assert when(task["start_time"]) <= when(task["end_time"])

    # The list shows the same job (without needing the detail call).
    listed = await jobs(client, [("search_word", job_id)])
    item = listed["items"][0]
    for field in ("job_id", "action", "status", "resource_id", "executor", "progress", "result"):
        assert item[field] == job[field], field


async def test_failed_job_shows_status_failed_and_an_error(client: httpx.AsyncClient) -> None:
    repo = await create_repo(client, unique(), closed_url())
    job = await wait_job(client, repo["index_job_id"])
    assert job["status"] == "failed", job
    assert set(job["error"]) == {"code", "message"}
    assert job["error"]["code"] == "repo_unreachable"
    assert job["error"]["message"]
    assert job["progress"] < 100
    assert job["end_time"] is not None
    task = job["tasks"][0]
    assert task["status"] == "failed"
    assert task["error"]["code"] == "repo_unreachable"

    failed = await ids(client, [("resource_id", repo["repo_id"]), ("status", "failed")])
    assert failed == [job["job_id"]]
    got = (await client.get(f"/v1/repos/{repo['repo_id']}")).json()
    assert got["last_index_status"] == "failed"
    assert got["last_index_error"].startswith("repo_unreachable")
    assert got["index_job_id"] is None


async def test_task_list_by_job(client: httpx.AsyncClient, chart_repo: RepoServer) -> None:
    _repo, index_job, delete_job = await indexed_then_deleted(client, chart_repo.url)
    resp = await client.get("/v1/tasks", params={"job_id": index_job["job_id"]})
    assert resp.status_code == 200, resp.text
    page = resp.json()
    assert page["total_count"] == 1
    assert [t["task_id"] for t in page["items"]] == [t["task_id"] for t in index_job["tasks"]]
    assert page["items"][0]["job_id"] == index_job["job_id"]

    both = (
        await client.get(
            "/v1/tasks",
            params=[("job_id", index_job["job_id"]), ("job_id", delete_job["job_id"])],
        )
    ).json()
    assert both["total_count"] == 2
    assert {t["action"] for t in both["items"]} == {"index", "delete_catalog"}
    delete_task = next(t for t in both["items"] if t["action"] == "delete_catalog")
    assert delete_task["result"] == {"apps_deleted": 2, "versions_deleted": 3}

    ok = (
        await client.get(
            "/v1/tasks", params={"job_id": index_job["job_id"], "status": "successful"}
        )
    ).json()
    assert ok["total_count"] == 1
    none = (
        await client.get("/v1/tasks", params={"job_id": index_job["job_id"], "status": "failed"})
    ).json()
    assert none["total_count"] == 0
    assert_error(
        await client.get("/v1/tasks", params={"sort_key": "nope"}), 400, "invalid_sort_key"
    )


# -------------------------------------------------------------------------------- error paths


async def test_unknown_job_is_404_for_the_job_and_its_events(client: httpx.AsyncClient) -> None:
    missing = "j-doesnotexist0"
    body = assert_error(await client.get(f"/v1/jobs/{missing}"), 404, "not_found")
    assert missing in body["message"]
    assert_error(await client.get(f"/v1/jobs/{missing}/events"), 404, "not_found")
    empty = (await client.get("/v1/tasks", params={"job_id": missing})).json()
    assert empty == {"total_count": 0, "items": []}


@pytest.mark.parametrize("header", ["abc", "1.5", "-3"])
async def test_bad_last_event_id_is_400(
    client: httpx.AsyncClient, chart_repo: RepoServer, header: str
) -> None:
    repo = await create_repo(client, unique(), chart_repo.url)
    await wait_job(client, repo["index_job_id"])
    resp = await client.get(
        f"/v1/jobs/{repo['index_job_id']}/events", headers={"Last-Event-ID": header}
    )
    assert_error(resp, 400, "invalid_last_event_id")


async def test_negative_after_parameter_is_400(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await create_repo(client, unique(), chart_repo.url)
    await wait_job(client, repo["index_job_id"])
    resp = await client.get(f"/v1/jobs/{repo['index_job_id']}/events", params={"after": -1})
    assert_error(resp, 400, "invalid_parameter")
