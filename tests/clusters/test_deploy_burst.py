"""Deploys arriving together (written together: clusters.creates): each is accepted with its
cluster, release and job (the cluster and its first release name the job), and each job's
stream starts with the job's own `pending` event. A refused deploy among them answers alone,
repeats with one Idempotency-Key act once, and the checks a deploy runs before writing
anything still answer for a missing or deleted version or runtime."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import httpx

from openpitrix.clusters.schemas import MAX_VALUES_BYTES
from tests.conftest import unique
from tests.helpers import assert_error, read_sse
from tests.support.deployments import deploy


async def test_deploys_arriving_together_are_all_accepted_and_each_job_streams_its_own_start(
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


async def test_refused_deploys_and_repeated_keys_among_a_burst_answer_each_on_its_own(
    client: httpx.AsyncClient, setup: dict[str, Any]
) -> None:
    version_id = setup["versions"]["shop@1.0.0"]
    runtime_id = setup["runtime"]["runtime_id"]
    before = (await client.get("/v1/clusters")).json()["total_count"]
    keyed = {"version_id": version_id, "runtime_id": runtime_id, "name": unique("cl")}
    key = {"Idempotency-Key": unique("key")}

    def good() -> Awaitable[httpx.Response]:
        body = {"version_id": version_id, "runtime_id": runtime_id, "name": unique("cl")}
        return client.post("/v1/clusters", json=body)

    huge = {"blob": "x" * (MAX_VALUES_BYTES + 1)}  # refused by the checks, not the schema
    missing = {"version_id": "ver-missing", "runtime_id": runtime_id, "name": unique("cl")}
    answers = await asyncio.gather(
        good(),
        client.post("/v1/clusters", json=keyed, headers=key),
        client.post("/v1/clusters", json=missing),
        good(),
        client.post("/v1/clusters", json=keyed, headers=key),
        client.post("/v1/clusters", json={**missing, "version_id": version_id, "values": huge}),
        good(),
        client.post("/v1/clusters", json=keyed, headers=key),
    )
    goods = [answers[i] for i in (0, 3, 6)]
    assert [a.status_code for a in goods] == [202, 202, 202], [a.text for a in goods]
    assert len({a.json()["cluster_id"] for a in goods}) == 3
    assert_error(answers[2], 404, "not_found")
    assert_error(answers[5], 400, "values_too_large")
    repeats = [answers[i] for i in (1, 4, 7)]
    assert [a.status_code for a in repeats] == [202, 202, 202], [a.text for a in repeats]
    assert len({(a.json()["cluster_id"], a.json()["job_id"]) for a in repeats}) == 1
    assert sorted(a.headers.get("idempotent-replayed", "") for a in repeats) == ["", "true", "true"]
    # Three plus the keyed one: nothing was written for the refused ones or twice for a key.
    assert (await client.get("/v1/clusters")).json()["total_count"] == before + 4
    for accepted in [*goods, repeats[0]]:
        job_id = accepted.json()["job_id"]
        [first] = await read_sse(client, f"/v1/jobs/{job_id}/events", max_events=1)
        assert first["data"]["status"] == "pending"


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
