"""The repo API: create, read, update, delete, index on demand and validate, through HTTP."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.helpers import assert_error, closed_url, create_repo, read_sse, repo_body, wait_job
from tests.support.charts import ChartSpec, write_index
from tests.support.http_repo import RepoServer


async def jobs_of(client: httpx.AsyncClient, repo_id: str) -> list[dict[str, Any]]:
    resp = await client.get("/v1/jobs", params={"resource_id": repo_id, "limit": 200})
    assert resp.status_code == 200, resp.text
    items: list[dict[str, Any]] = resp.json()["items"]
    return items


async def indexed_repo(client: httpx.AsyncClient, url: str, **extra: Any) -> dict[str, Any]:
    """A repo whose first index job has ended successfully."""
    repo = await create_repo(client, unique(), url, **extra)
    job = await wait_job(client, repo["index_job_id"])
    assert job["status"] == "successful", job
    return repo


# ------------------------------------------------------------------------------------ create


async def test_create_answers_201_with_the_repo_its_index_job_and_location(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    name = unique()
    body = repo_body(
        name,
        chart_repo.url,
        description="charts for tests",
        labels=[{"key": "env", "value": "prod"}],
        selectors=[{"key": "tier", "value": "web"}],
        visibility="private",
        index_interval_seconds=600,
    )
    resp = await client.post("/v1/repos", json=body)
    assert resp.status_code == 201, resp.text
    repo = resp.json()
    assert repo["repo_id"].startswith("repo-")
    assert resp.headers["location"] == f"/v1/repos/{repo['repo_id']}"
    assert repo["name"] == name
    assert repo["type"] == "http"
    assert repo["url"] == chart_repo.url
    assert repo["description"] == "charts for tests"
    assert repo["providers"] == ["kubernetes"]
    assert repo["labels"] == [{"key": "env", "value": "prod"}]
    assert repo["selectors"] == [{"key": "tier", "value": "web"}]
    assert repo["visibility"] == "private"
    assert repo["app_default_status"] == "active"
    assert repo["index_interval_seconds"] == 600
    assert repo["status"] == "active"
    assert repo["credential_set"] is False
    assert repo["index_job_id"].startswith("j-")

    job = (await client.get(f"/v1/jobs/{repo['index_job_id']}")).json()
    assert job["action"] == "index_repo"
    assert job["resource_kind"] == "repo"
    assert job["resource_id"] == repo["repo_id"]
    await wait_job(client, repo["index_job_id"])


async def test_credential_is_never_returned_only_that_it_is_set(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    secret = f"pw-{unique('secret')}"
    resp = await client.post(
        "/v1/repos",
        json=repo_body(unique(), chart_repo.url, credential={"username": "u", "password": secret}),
    )
    assert resp.status_code == 201, resp.text
    assert secret not in resp.text
    repo = resp.json()
    assert repo["credential_set"] is True
    assert "credential" not in repo
    await wait_job(client, repo["index_job_id"])

    got = await client.get(f"/v1/repos/{repo['repo_id']}")
    assert got.status_code == 200
    assert secret not in got.text
    assert got.json()["credential_set"] is True
    listed = await client.get("/v1/repos", params={"search_word": repo["repo_id"]})
    assert secret not in listed.text
    assert listed.json()["items"][0]["credential_set"] is True
    job = await client.get(f"/v1/jobs/{repo['index_job_id']}")
    assert secret not in job.text
    frames = await read_sse(client, f"/v1/jobs/{repo['index_job_id']}/events")
    assert frames
    assert secret not in repr(frames)

    patched = await client.patch(f"/v1/repos/{repo['repo_id']}", json={"description": "x"})
    assert patched.status_code == 200, patched.text
    assert secret not in patched.text
    assert patched.json()["credential_set"] is True


async def test_rejected_credential_is_not_echoed_in_the_validation_error(
    client: httpx.AsyncClient,
) -> None:
    secret = f"pw-{unique('secret')}"
    resp = await client.post(
        "/v1/repos",
        json=repo_body(
            unique(),
            "http://127.0.0.1:9/",
            credential={"username": "u", "password": secret, "token": secret},
        ),
    )
    assert_error(resp, 422, "validation_error")
    assert secret not in resp.text


async def test_removing_the_credential_with_null_clears_credential_set(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url, credential={"token": "tok-123"})
    assert repo["credential_set"] is True
    resp = await client.patch(f"/v1/repos/{repo['repo_id']}", json={"credential": None})
    assert resp.status_code == 200, resp.text
    assert resp.json()["credential_set"] is False
    got = (await client.get(f"/v1/repos/{repo['repo_id']}")).json()
    assert got["credential_set"] is False
    if resp.json()["index_job_id"]:
        await wait_job(client, resp.json()["index_job_id"])


# -------------------------------------------------------------------------------------- read


async def test_get_by_id_returns_the_repo(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    resp = await client.get(f"/v1/repos/{repo['repo_id']}")
    assert resp.status_code == 200
    got = resp.json()
    assert got["repo_id"] == repo["repo_id"]
    assert got["name"] == repo["name"]
    assert got["url"] == chart_repo.url
    # The index job ended: the repo records the outcome and has no running job.
    assert got["index_job_id"] is None
    assert got["last_index_status"] == "successful"
    assert got["last_index_error"] is None
    assert got["last_index_time"] is not None


async def test_unknown_repo_is_404_with_the_error_shape(client: httpx.AsyncClient) -> None:
    missing = "repo-doesnotexist0"
    for resp in (
        await client.get(f"/v1/repos/{missing}"),
        await client.patch(f"/v1/repos/{missing}", json={"description": "x"}),
        await client.delete(f"/v1/repos/{missing}"),
        await client.post(f"/v1/repos/{missing}/index"),
    ):
        body = assert_error(resp, 404, "not_found")
        assert missing in body["message"]


async def test_wrong_method_and_unknown_route_use_the_error_shape(
    client: httpx.AsyncClient,
) -> None:
    assert_error(await client.put("/v1/repos/repo-x", json={}), 405, "method_not_allowed")
    assert_error(await client.get("/v1/no-such-things"), 404, "not_found")


async def test_timestamps_are_rfc3339_utc(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    got = (await client.get(f"/v1/repos/{repo['repo_id']}")).json()
    for field in ("create_time", "update_time", "status_time", "last_index_time"):
        assert got[field].endswith("Z"), (field, got[field])
        assert repo.get(field) is None or repo[field].endswith("Z")


# ---------------------------------------------------------------------------------- conflicts


async def test_duplicate_name_is_409_and_a_deleted_repos_name_can_be_reused(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    dup = await client.post("/v1/repos", json=repo_body(repo["name"], chart_repo.url))
    assert_error(dup, 409, "repo_name_taken")

    other = await indexed_repo(client, chart_repo.url)
    renamed = await client.patch(f"/v1/repos/{other['repo_id']}", json={"name": repo["name"]})
    assert_error(renamed, 409, "repo_name_taken")

    deleted = await client.delete(f"/v1/repos/{repo['repo_id']}")
    assert deleted.status_code == 202, deleted.text
    await wait_job(client, deleted.json()["job_id"])
    again = await client.post("/v1/repos", json=repo_body(repo["name"], chart_repo.url))
    assert again.status_code == 201, again.text
    assert again.json()["repo_id"] != repo["repo_id"]
    await wait_job(client, again.json()["index_job_id"])


async def test_concurrent_creates_with_one_name_store_one_repo(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    name = unique()
    answers = await asyncio.gather(
        *(client.post("/v1/repos", json=repo_body(name, chart_repo.url)) for _ in range(4))
    )
    created = [r for r in answers if r.status_code == 201]
    assert len(created) == 1, [r.text for r in answers]
    for resp in answers:
        if resp.status_code != 201:
            assert_error(resp, 409, "repo_name_taken")
    listed = (await client.get("/v1/repos", params={"name": name})).json()
    assert listed["total_count"] == 1
    await wait_job(client, created[0].json()["index_job_id"])


# --------------------------------------------------------------------------------- validation


def _base(**changes: Any) -> dict[str, Any]:
    body = repo_body(unique(), "http://127.0.0.1:9/charts")
    body.update(changes)
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


INVALID_CREATE_BODIES = [
    ("missing url", _base(url=_DROP)),
    ("missing name", _base(name=_DROP)),
    ("bad type", _base(type="ftp")),
    ("scheme not matching type", _base(type="https")),
    ("relative url", _base(url="/charts/index.yaml")),
    ("credentials in url", _base(url="http://u:p@127.0.0.1:9/charts")),
    ("empty providers", _base(providers=[])),
    ("malformed provider name", _base(providers=["Kube rnetes"])),
    ("duplicate provider", _base(providers=["kubernetes", "kubernetes"])),
    (
        "duplicate label pair",
        _base(labels=[{"key": "env", "value": "prod"}, {"key": "env", "value": "prod"}]),
    ),
    ("bad label key", _base(labels=[{"key": "-env", "value": "prod"}])),
    ("label key with a space", _base(labels=[{"key": "my env", "value": "prod"}])),
    ("empty label value", _base(labels=[{"key": "env", "value": ""}])),
    (
        "duplicate selector pair",
        _base(selectors=[{"key": "a", "value": "1"}, {"key": "a", "value": "1"}]),
    ),
    ("credential with only username", _base(credential={"username": "u"})),
    ("credential with only password", _base(credential={"password": "p"})),
    ("empty credential", _base(credential={})),
    ("unknown field", _base(color="blue")),
    ("bad visibility", _base(visibility="secret")),
    ("bad app_default_status", _base(app_default_status="pending")),
    ("zero interval", _base(index_interval_seconds=0)),
    ("name too long", _base(name="x" * 101)),
    ("blank name", _base(name="   ")),
]


@pytest.mark.parametrize(
    "body", [pytest.param(body, id=case) for case, body in INVALID_CREATE_BODIES]
)
async def test_invalid_create_body_is_422_validation_error(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    resp = await client.post("/v1/repos", json=body)
    details = assert_error(resp, 422, "validation_error")["details"]
    assert details["errors"]
    # Nothing was stored under that name.
    if "name" in body and isinstance(body["name"], str) and body["name"].strip():
        listed = await client.get("/v1/repos", params={"name": body["name"]})
        assert listed.json()["total_count"] == 0


async def test_a_provider_not_installed_is_400_naming_the_installed_ones(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    # Providers are plugins: a repo may name any installed one (here the test cloud, installed
    # through an entry point like a third-party package), and no other.
    made = await client.post(
        "/v1/repos", json=repo_body(unique(), chart_repo.url, providers=["testcloud"])
    )
    assert made.status_code == 201, made.text
    resp = await client.post(
        "/v1/repos", json=repo_body(unique(), chart_repo.url, providers=["azure"])
    )
    body = assert_error(resp, 400, "unknown_provider")
    assert "azure" in body["message"] and "kubernetes" in body["message"]
    patch = await client.patch(f"/v1/repos/{made.json()['repo_id']}", json={"providers": ["gcp"]})
    assert_error(patch, 400, "unknown_provider")
    after = await client.get(f"/v1/repos/{made.json()['repo_id']}")
    assert after.json()["providers"] == ["testcloud"]


async def test_malformed_json_body_is_400_invalid_json(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/v1/repos",
        content=b'{"name": "x", "type": ',
        headers={"Content-Type": "application/json"},
    )
    assert_error(resp, 400, "invalid_json")


async def test_malformed_json_on_patch_is_400_invalid_json(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    resp = await client.patch(
        f"/v1/repos/{repo['repo_id']}",
        content=b"{description: x}",
        headers={"Content-Type": "application/json"},
    )
    assert_error(resp, 400, "invalid_json")


# -------------------------------------------------------------------------------------- update


async def test_patch_changes_only_the_given_fields(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(
        client,
        chart_repo.url,
        description="before",
        labels=[{"key": "env", "value": "prod"}, {"key": "tier", "value": "web"}],
        selectors=[{"key": "zone", "value": "a"}],
        index_interval_seconds=900,
    )
    resp = await client.patch(f"/v1/repos/{repo['repo_id']}", json={"description": "after"})
    assert resp.status_code == 200, resp.text
    patched = resp.json()
    assert patched["description"] == "after"
    unchanged = (
        "name", "type", "url", "providers", "labels", "selectors", "visibility",
        "app_default_status", "credential_set", "status", "index_interval_seconds", "create_time",
    )  # fmt: skip
    for field in unchanged:
        assert patched[field] == repo[field], field
    assert patched["update_time"] >= repo["update_time"]

    resp = await client.patch(
        f"/v1/repos/{repo['repo_id']}", json={"labels": [{"key": "env", "value": "dev"}]}
    )
    assert resp.status_code == 200, resp.text
    got = (await client.get(f"/v1/repos/{repo['repo_id']}")).json()
    assert got["labels"] == [{"key": "env", "value": "dev"}]
    assert got["description"] == "after"
    assert got["selectors"] == [{"key": "zone", "value": "a"}]
    assert got["index_interval_seconds"] == 900


async def test_patch_name_renames_the_repo(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    new_name = unique("renamed")
    resp = await client.patch(f"/v1/repos/{repo['repo_id']}", json={"name": new_name})
    assert resp.status_code == 200, resp.text
    assert resp.json()["name"] == new_name
    listed = (await client.get("/v1/repos", params={"name": new_name})).json()
    assert [r["repo_id"] for r in listed["items"]] == [repo["repo_id"]]
    # The old name is free again.
    again = await client.post("/v1/repos", json=repo_body(repo["name"], chart_repo.url))
    assert again.status_code == 201, again.text
    await wait_job(client, again.json()["index_job_id"])


async def test_patch_of_description_does_not_start_an_index_job(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    resp = await client.patch(
        f"/v1/repos/{repo['repo_id']}",
        json={"description": "new words", "labels": [{"key": "a", "value": "b"}]},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["index_job_id"] is None
    assert [j["job_id"] for j in await jobs_of(client, repo["repo_id"])] == [repo["index_job_id"]]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda url: {"url": f"{url}/index.yaml"}, id="url"),
        pytest.param(lambda url: {"providers": ["kubernetes", "testcloud"]}, id="providers"),
        pytest.param(lambda url: {"visibility": "public"}, id="visibility"),
        pytest.param(lambda url: {"credential": {"token": "t0ken"}}, id="credential"),
    ],
)
async def test_patch_of_what_the_catalog_depends_on_starts_an_index_job(
    client: httpx.AsyncClient, chart_repo: RepoServer, change: Any
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    body = change(chart_repo.url)
    resp = await client.patch(f"/v1/repos/{repo['repo_id']}", json=body)
    assert resp.status_code == 200, resp.text
    patched = resp.json()
    for key, value in body.items():
        if key == "credential":
            assert patched["credential_set"] is True
        else:
            assert patched[key] == value
    job_id = patched["index_job_id"]
    assert job_id is not None
    assert job_id != repo["index_job_id"]
    jobs = await jobs_of(client, repo["repo_id"])
    assert {j["job_id"] for j in jobs} == {repo["index_job_id"], job_id}
    new_job = next(j for j in jobs if j["job_id"] == job_id)
    assert new_job["action"] == "index_repo"
    job = await wait_job(client, job_id)
    assert job["status"] == "successful", job
    assert (await client.get(f"/v1/repos/{repo['repo_id']}")).json()["index_job_id"] is None


async def test_patch_of_url_while_indexing_replaces_the_stale_index_job(
    client: httpx.AsyncClient, chart_repo: RepoServer, repo_dir: Path
) -> None:
    write_index(repo_dir / "other", [ChartSpec("solo", "1.0.0")])
    chart_repo.set_delay("/index.yaml", 1.5)
    repo = await create_repo(client, unique(), chart_repo.url)
    old_job = repo["index_job_id"]
    # Wait until a worker is fetching the old URL.
    started = await read_sse(client, f"/v1/jobs/{old_job}/events", max_events=2)
    assert started[-1]["data"]["status"] == "working", started

    resp = await client.patch(
        f"/v1/repos/{repo['repo_id']}", json={"url": f"{chart_repo.url}/other"}
    )
    assert resp.status_code == 200, resp.text
    new_job = resp.json()["index_job_id"]
    assert new_job is not None
    assert new_job != old_job

    stale = await wait_job(client, old_job)
    assert stale["status"] == "cancelled", stale
    assert stale["error"]["code"] == "repo_changed"
    fresh = await wait_job(client, new_job)
    assert fresh["status"] == "successful", fresh
    apps = (await client.get("/v1/apps", params={"repo_id": repo["repo_id"]})).json()
    assert [a["name"] for a in apps["items"]] == ["solo"]
    got = (await client.get(f"/v1/repos/{repo['repo_id']}")).json()
    assert got["index_job_id"] is None
    assert got["last_index_status"] == "successful"


async def test_patch_of_providers_while_indexing_answers_with_the_running_job(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    chart_repo.set_delay("/index.yaml", 1.0)
    repo = await create_repo(client, unique(), chart_repo.url)
    started = await read_sse(client, f"/v1/jobs/{repo['index_job_id']}/events", max_events=2)
    assert started[-1]["data"]["status"] == "working", started
    # Providers do not change what is fetched: the running job stays valid.
    resp = await client.patch(f"/v1/repos/{repo['repo_id']}", json={"providers": ["testcloud"]})
    assert resp.status_code == 200, resp.text
    assert resp.json()["index_job_id"] == repo["index_job_id"]
    job = await wait_job(client, repo["index_job_id"])
    assert job["status"] == "successful", job
    assert len(await jobs_of(client, repo["repo_id"])) == 1


async def test_patch_with_the_same_values_starts_no_index_job(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    resp = await client.patch(
        f"/v1/repos/{repo['repo_id']}",
        json={"url": chart_repo.url, "providers": ["kubernetes"], "visibility": "private"},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["index_job_id"] is None
    assert len(await jobs_of(client, repo["repo_id"])) == 1


async def test_repo_with_an_upper_case_url_scheme_can_be_updated(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    url = chart_repo.url.replace("http://", "HTTP://")
    repo = await indexed_repo(client, url, type="http")
    resp = await client.patch(f"/v1/repos/{repo['repo_id']}", json={"description": "renamed"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["description"] == "renamed"
    resp = await client.patch(f"/v1/repos/{repo['repo_id']}", json={"visibility": "public"})
    assert resp.status_code == 200, resp.text
    job = await wait_job(client, resp.json()["index_job_id"])
    assert job["status"] == "successful", job


@pytest.mark.parametrize(
    "body",
    [
        {"name": None},
        {"url": None},
        {"type": None},
        {"providers": None},
        {"providers": []},
        {"visibility": None},
        {"url": "ftp://example.org/charts"},
        {"labels": [{"key": "k", "value": "v"}, {"key": "k", "value": "v"}]},
        {"credential": {"username": "only"}},
        {"owner": "someone"},
    ],
)
async def test_invalid_patch_body_is_422_and_changes_nothing(
    client: httpx.AsyncClient, chart_repo: RepoServer, body: dict[str, Any]
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    resp = await client.patch(f"/v1/repos/{repo['repo_id']}", json=body)
    assert_error(resp, 422, "validation_error")
    got = (await client.get(f"/v1/repos/{repo['repo_id']}")).json()
    for field in ("name", "url", "type", "providers", "labels", "visibility", "credential_set"):
        assert got[field] == repo[field], field


# -------------------------------------------------------------------------------------- index


async def test_index_request_answers_202_with_the_job_and_location(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    resp = await client.post(f"/v1/repos/{repo['repo_id']}/index")
    assert resp.status_code == 202, resp.text
    body = resp.json()
    job_id = body["job_id"]
    assert job_id.startswith("j-")
    assert job_id != repo["index_job_id"]
    assert resp.headers["location"] == f"/v1/jobs/{job_id}"
    assert body["repo_id"] == repo["repo_id"]
    assert body["index_job_id"] == job_id
    job = await wait_job(client, job_id)
    assert job["status"] == "successful", job
    assert job["resource_id"] == repo["repo_id"]


async def test_index_request_with_force_body_is_accepted(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    resp = await client.post(f"/v1/repos/{repo['repo_id']}/index", json={"force": True})
    assert resp.status_code == 202, resp.text
    job = await wait_job(client, resp.json()["job_id"])
    assert job["status"] == "successful", job
    assert job["params"]["force"] is True
    # A forced index fetches again instead of trusting the cached validators.
    assert job["result"]["not_modified"] is False

    bad = await client.post(f"/v1/repos/{repo['repo_id']}/index", json={"force": "maybe"})
    assert_error(bad, 422, "validation_error")


async def test_second_index_request_while_one_runs_returns_the_same_job(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    chart_repo.set_delay("/index.yaml", 1.5)
    first = await client.post(f"/v1/repos/{repo['repo_id']}/index")
    second = await client.post(f"/v1/repos/{repo['repo_id']}/index")
    assert first.status_code == 202
    assert second.status_code == 202
    assert second.json()["job_id"] == first.json()["job_id"]
    assert second.headers["location"] == f"/v1/jobs/{first.json()['job_id']}"
    job = await wait_job(client, first.json()["job_id"])
    assert job["status"] == "successful", job
    assert len(await jobs_of(client, repo["repo_id"])) == 2

    chart_repo.clear_faults()
    third = await client.post(f"/v1/repos/{repo['repo_id']}/index")
    assert third.status_code == 202
    assert third.json()["job_id"] != first.json()["job_id"]
    await wait_job(client, third.json()["job_id"])


async def test_concurrent_index_requests_share_one_job(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    chart_repo.set_delay("/index.yaml", 1.0)
    answers = await asyncio.gather(
        *(client.post(f"/v1/repos/{repo['repo_id']}/index") for _ in range(5))
    )
    assert {r.status_code for r in answers} == {202}, [r.text for r in answers]
    job_ids = {r.json()["job_id"] for r in answers}
    assert len(job_ids) == 1
    job = await wait_job(client, job_ids.pop())
    assert job["status"] == "successful", job
    assert len(await jobs_of(client, repo["repo_id"])) == 2


# ------------------------------------------------------------------------------------- delete


async def test_delete_is_a_job_that_marks_the_repo_and_its_catalog_deleted(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    repo_id = repo["repo_id"]
    resp = await client.delete(f"/v1/repos/{repo_id}")
    assert resp.status_code == 202, resp.text
    body = resp.json()
    assert body["repo_id"] == repo_id
    assert body["status"] == "deleted"
    assert resp.headers["location"] == f"/v1/jobs/{body['job_id']}"
    job = await wait_job(client, body["job_id"])
    assert job["status"] == "successful", job
    assert job["action"] == "delete_repo"
    assert job["result"] == {"apps_deleted": 2, "versions_deleted": 3}

    got = await client.get(f"/v1/repos/{repo_id}")
    assert got.status_code == 200
    assert got.json()["status"] == "deleted"

    default = (await client.get("/v1/repos", params={"search_word": repo_id})).json()
    assert default["total_count"] == 0
    assert default["items"] == []
    deleted = (
        await client.get("/v1/repos", params={"search_word": repo_id, "status": "deleted"})
    ).json()
    assert [r["repo_id"] for r in deleted["items"]] == [repo_id]
    both = (
        await client.get(
            "/v1/repos",
            params=[("search_word", repo_id), ("status", "active"), ("status", "deleted")],
        )
    ).json()
    assert both["total_count"] == 1

    live_apps = (await client.get("/v1/apps", params={"repo_id": repo_id})).json()
    assert live_apps["total_count"] == 0
    apps = (await client.get("/v1/apps", params={"repo_id": repo_id, "status": "deleted"})).json()
    assert apps["total_count"] == 2
    assert {a["status"] for a in apps["items"]} == {"deleted"}
    for app in apps["items"]:
        versions = (
            await client.get(f"/v1/apps/{app['app_id']}/versions", params={"status": "deleted"})
        ).json()
        assert versions["total_count"] >= 1
        assert {v["status"] for v in versions["items"]} == {"deleted"}
        live = (await client.get(f"/v1/apps/{app['app_id']}/versions")).json()
        assert live["total_count"] == 0


async def test_delete_twice_is_409_and_a_deleted_repo_cannot_be_indexed_or_changed(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await indexed_repo(client, chart_repo.url)
    first = await client.delete(f"/v1/repos/{repo['repo_id']}")
    assert first.status_code == 202
    await wait_job(client, first.json()["job_id"])

    assert_error(await client.delete(f"/v1/repos/{repo['repo_id']}"), 409, "repo_deleted")
    assert_error(await client.post(f"/v1/repos/{repo['repo_id']}/index"), 409, "repo_deleted")
    assert_error(
        await client.patch(f"/v1/repos/{repo['repo_id']}", json={"description": "x"}),
        409,
        "repo_deleted",
    )
    # Only the index job and the one delete job exist.
    actions = sorted(j["action"] for j in await jobs_of(client, repo["repo_id"]))
    assert actions == ["delete_repo", "index_repo"]


async def test_deleting_a_repo_while_it_is_indexed_leaves_no_live_apps(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    chart_repo.set_delay("/index.yaml", 1.0)
    repo = await create_repo(client, unique(), chart_repo.url)
    resp = await client.delete(f"/v1/repos/{repo['repo_id']}")
    assert resp.status_code == 202, resp.text
    delete_job = await wait_job(client, resp.json()["job_id"])
    assert delete_job["status"] == "successful", delete_job
    index_job = await wait_job(client, repo["index_job_id"])
    assert index_job["status"] == "failed", index_job
    assert index_job["error"]["code"] == "repo_deleted"
    live = (await client.get("/v1/apps", params={"repo_id": repo["repo_id"]})).json()
    assert live["total_count"] == 0
    got = (await client.get(f"/v1/repos/{repo['repo_id']}")).json()
    assert got["status"] == "deleted"


# ----------------------------------------------------------------------------------- validate


async def test_validate_reports_chart_and_version_counts(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    resp = await client.post("/v1/repos/validate", json={"type": "http", "url": chart_repo.url})
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"ok": True, "error": None, "chart_count": 2, "version_count": 3}


async def test_validate_stores_nothing(client: httpx.AsyncClient, chart_repo: RepoServer) -> None:
    # Count before and after: an earlier test's repo server may have had the same port.
    params = {"search_word": chart_repo.url, "status": ["active", "deleted"]}
    before = (await client.get("/v1/repos", params=params)).json()["total_count"]
    jobs_before = (await client.get("/v1/jobs")).json()["total_count"]
    resp = await client.post("/v1/repos/validate", json={"type": "http", "url": chart_repo.url})
    assert resp.json()["ok"] is True
    assert (await client.get("/v1/repos", params=params)).json()["total_count"] == before
    assert (await client.get("/v1/jobs")).json()["total_count"] == jobs_before


async def test_validate_unreachable_url_is_ok_false_repo_unreachable(
    client: httpx.AsyncClient,
) -> None:
    url = closed_url()
    resp = await client.post("/v1/repos/validate", json={"type": "http", "url": url})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["ok"] is False
    assert body["error"]["code"] == "repo_unreachable"
    assert body["error"]["message"]
    assert body["chart_count"] == 0
    assert body["version_count"] == 0


async def test_validate_http_404_is_repo_http_error(
    client: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    resp = await client.post(
        "/v1/repos/validate", json={"type": "http", "url": f"{chart_repo.url}/missing"}
    )
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["ok"] is False
    assert body["error"]["code"] == "repo_http_error"
    assert "404" in body["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://127.0.0.1:9/"},
        {"type": "http"},
        {"type": "https", "url": "http://127.0.0.1:9/"},
        {"type": "http", "url": "http://127.0.0.1:9/", "name": "x"},
        {"type": "http", "url": "http://127.0.0.1:9/", "credential": {"username": "u"}},
    ],
)
async def test_validate_invalid_body_is_422(
    client: httpx.AsyncClient, body: dict[str, Any]
) -> None:
    assert_error(await client.post("/v1/repos/validate", json=body), 422, "validation_error")
