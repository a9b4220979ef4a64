"""Deploys arriving together: each is accepted with its cluster, release and job written in
one transaction (the cluster and its first release name the job), and each job's stream
starts with the job's own `pending` event, while the gateway lets only a few deploys into
their write transactions at a time (`http.cluster_write_concurrency`). And the checks a deploy
runs before writing anything still answer for a missing or deleted version or runtime."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from openpitrix.settings import Settings
from tests.conftest import make_settings, unique
from tests.helpers import assert_error, read_sse
from tests.support.deployments import deploy


@pytest.fixture
def settings(database_url: str, nats_url: str, tmp_path: Path) -> Settings:
    base = make_settings(database_url, nats_url, tmp_path / "data")
    return base.model_copy(
        update={"http": base.http.model_copy(update={"cluster_write_concurrency": 2})}
    )


async def test_deploys_beyond_the_gate_are_all_accepted_and_each_job_streams_its_own_start(
    client: httpx.AsyncClient, setup: dict[str, Any]
) -> None:
    made = await asyncio.gather(*(deploy(client, setup, "shop@1.0.0") for _ in range(7)))
    assert len({m["cluster_id"] for m in made}) == len({m["job_id"] for m in made}) == 7
    for accepted in made:
        cluster = (await client.get(f"/v1/clusters/{accepted['cluster_id']}")).json()
        assert cluster["job_id"] == accepted["job_id"]
        releases = (await client.get(f"/v1/clusters/{accepted['cluster_id']}/releases")).json()
        assert [(r["revision"], r["job_id"]) for r in releases["items"]] == [
            (1, accepted["job_id"])
        ]
        [first] = await read_sse(client, f"/v1/jobs/{accepted['job_id']}/events", max_events=1)
        assert first["data"]["type"] == "job.status"
        assert first["data"]["status"] == "pending"
        assert first["data"]["job_id"] == accepted["job_id"]


async def test_a_deploy_of_a_missing_version_or_onto_a_missing_or_deleted_runtime_is_refused(
    client: httpx.AsyncClient, setup: dict[str, Any]
) -> None:
    version_id = setup["versions"]["shop@1.0.0"]
    runtime_id = setup["runtime"]["runtime_id"]
    before = (await client.get("/v1/clusters")).json()["total_count"]

    async def post(version: str, runtime: str) -> httpx.Response:
        body = {"version_id": version, "runtime_id": runtime, "name": unique("cl")}
        return await client.post("/v1/clusters", json=body)

    gone = assert_error(await post("ver-missing", runtime_id), 404, "not_found")
    assert gone["details"] == {"kind": "app version", "id": "ver-missing"}
    gone = assert_error(await post(version_id, "rt-missing"), 404, "not_found")
    assert gone["details"] == {"kind": "runtime", "id": "rt-missing"}
    assert (await client.delete(f"/v1/runtimes/{runtime_id}")).status_code == 200
    assert_error(await post(version_id, runtime_id), 409, "runtime_deleted")
    assert (await client.get("/v1/clusters")).json()["total_count"] == before
