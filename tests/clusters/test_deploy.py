"""Deploying app versions as clusters through the API, onto the fake Kubernetes API server:
create, upgrade, rollback, update values, delete, cease; failures with their real reasons."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.conftest import unique
from tests.helpers import assert_error, read_sse, wait_job
from tests.support.deployments import deploy, owned
from tests.support.kube import FakeKube


async def test_a_cluster_lives_through_its_whole_lifecycle(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    ns = setup["runtime"]["zone"]
    made = await deploy(client, setup, "shop@1.0.0", values={"replicaCount": 2})
    cid = made["cluster_id"]
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "successful", job
    assert [t["action"] for t in job["tasks"]] == ["render", "apply", "wait", "prune", "describe"]
    events = await read_sse(client, f"/v1/jobs/{made['job_id']}/events")
    messages = [e["data"]["message"] for e in events]
    assert any("ready" in m and "deployment/" in m for m in messages), messages
    # The cluster's own change is on the job's stream, before the job's terminal event.
    assert [e["data"]["type"] for e in events][-2:] == ["resource.status", "job.status"]
    assert events[-2]["data"]["status"] == "active"
    job_ids = [made["job_id"]]

    cluster = (await client.get(f"/v1/clusters/{cid}")).json()
    assert (cluster["status"], cluster["transition_status"], cluster["revision"]) == (
        "active",
        "",
        1,
    )
    assert {r["kind"] for r in cluster["roles"]} >= {"Deployment", "Service"}
    [deployment] = owned(kube, "Deployment", ns, cid)
    assert deployment["spec"]["replicas"] == 2
    assert deployment["metadata"]["labels"]["openpitrix.io/revision"] == "1"
    assert any(m.get("manager") == "openpitrix" for m in deployment["metadata"]["managedFields"])

    # Upgrade: a new revision adds the ConfigMap of 2.0.0 and keeps the values.
    up = await client.post(
        f"/v1/clusters/{cid}/actions/upgrade", json={"version_id": setup["versions"]["shop@2.0.0"]}
    )
    assert up.status_code == 202, up.text
    assert (await wait_job(client, up.json()["job_id"]))["status"] == "successful"
    job_ids.append(up.json()["job_id"])
    assert len(owned(kube, "ConfigMap", ns, cid)) == 1
    assert owned(kube, "Deployment", ns, cid)[0]["spec"]["replicas"] == 2
    # Rollback to the revision before: the ConfigMap that left the chart is pruned.
    back = await client.post(f"/v1/clusters/{cid}/actions/rollback", json={})
    assert (await wait_job(client, back.json()["job_id"]))["status"] == "successful"
    job_ids.append(back.json()["job_id"])
    assert owned(kube, "ConfigMap", ns, cid) == []
    cluster = (await client.get(f"/v1/clusters/{cid}")).json()
    assert cluster["revision"] == 3 and cluster["version_id"] == setup["versions"]["shop@1.0.0"]
    # New values: a new revision with them.
    env = await client.post(
        f"/v1/clusters/{cid}/actions/update-env", json={"values": {"replicaCount": 3}}
    )
    assert (await wait_job(client, env.json()["job_id"]))["status"] == "successful"
    job_ids.append(env.json()["job_id"])
    assert owned(kube, "Deployment", ns, cid)[0]["spec"]["replicas"] == 3
    assert (await client.get(f"/v1/clusters/{cid}")).json()["values"] == {"replicaCount": 3}

    # Kubernetes has no stop/start/resize.
    stop = await client.post(f"/v1/clusters/{cid}/actions/stop")
    assert_error(stop, 409, "action_unsupported")

    gone = await client.delete(f"/v1/clusters/{cid}")
    assert (await wait_job(client, gone.json()["job_id"]))["status"] == "successful"
    job_ids.append(gone.json()["job_id"])
    for kind in ("Deployment", "Service", "ConfigMap"):
        assert owned(kube, kind, ns, cid) == []
    assert (await client.get(f"/v1/clusters/{cid}")).json()["status"] == "deleted"
    ceased = await client.post(f"/v1/clusters/{cid}/actions/cease")
    assert (await wait_job(client, ceased.json()["job_id"]))["status"] == "successful"
    assert (await client.get(f"/v1/clusters/{cid}")).json()["status"] == "ceased"
    job_ids.append(ceased.json()["job_id"])

    # The cluster's stream carries every event of its six jobs, in order, and nothing else.
    expected = []
    for job_id in job_ids:
        expected += [e["data"]["id"] for e in await read_sse(client, f"/v1/jobs/{job_id}/events")]
    feed = await read_sse(
        client,
        "/v1/events",
        params={"resource_kind": "cluster", "resource_id": cid, "after": 0},
        max_events=len(expected),
    )
    assert [e["data"]["id"] for e in feed] == expected
    statuses = [e["data"]["status"] for e in feed if e["data"]["type"] == "resource.status"]
    assert statuses == ["active", "active", "active", "active", "deleted", "ceased"]


async def test_an_ineligible_runtime_is_refused_with_the_reason(
    client: httpx.AsyncClient, setup: dict[str, Any]
) -> None:
    rt = setup["runtime"]["runtime_id"]
    relabel = await client.patch(
        f"/v1/runtimes/{rt}", json={"labels": [{"key": "env", "value": "dev"}]}
    )
    assert relabel.status_code == 200
    resp = await client.post(
        "/v1/clusters",
        json={"version_id": setup["versions"]["shop@1.0.0"], "runtime_id": rt, "name": "x"},
    )
    body = assert_error(resp, 409, "runtime_not_eligible")
    assert "env" in body["message"]


async def test_a_missing_required_value_fails_fast_with_helms_message(
    client: httpx.AsyncClient, setup: dict[str, Any]
) -> None:
    made = await deploy(client, setup, "vault@1.0.0")
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "render_failed"
    assert "dbPassword is required" in job["error"]["message"]
    cluster = (await client.get(f"/v1/clusters/{made['cluster_id']}")).json()
    # Not stuck: unlocked, still pending, and it can be deleted.
    assert (cluster["status"], cluster["transition_status"]) == ("pending", "")
    gone = await client.delete(f"/v1/clusters/{made['cluster_id']}")
    assert (await wait_job(client, gone.json()["job_id"]))["status"] == "successful"


async def test_a_failing_image_surfaces_its_reason_and_the_job_can_be_retried(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    kube.auto_ready = False
    ns = setup["runtime"]["zone"]
    made = await deploy(client, setup, "shop@1.0.0")
    cid = made["cluster_id"]
    # Busy while creating: a second operation is refused.
    busy = await client.delete(f"/v1/clusters/{cid}")
    assert_error(busy, 409, "cluster_busy")
    for _ in range(100):
        deployments = owned(kube, "Deployment", ns, cid)
        if deployments:
            break
        await asyncio.sleep(0.1)
    kube.make_failing(ns, "Deployment", deployments[0]["metadata"]["name"], "ImagePullBackOff")
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "failed"
    assert "ImagePullBackOff" in job["error"]["message"], job["error"]

    kube.auto_ready = True
    kube.make_ready(ns, "Deployment", deployments[0]["metadata"]["name"])
    events = await read_sse(client, f"/v1/jobs/{made['job_id']}/events")
    retry = await client.post(f"/v1/jobs/{made['job_id']}/actions/retry")
    assert retry.status_code == 202, retry.text
    # The retried run's events follow on the same stream, after the first run's last one.
    more = await read_sse(
        client, f"/v1/jobs/{made['job_id']}/events", last_event_id=events[-1]["id"]
    )
    assert more[-1]["data"]["status"] == "successful", more[-1]
    job = (await client.get(f"/v1/jobs/{made['job_id']}")).json()
    assert job["status"] == "successful", job
    # Resumed from the failed task: render and apply ran once.
    assert {t["action"]: t["attempts"] for t in job["tasks"]}["render"] == 1
    assert (await client.get(f"/v1/clusters/{cid}")).json()["status"] == "active"


async def test_a_runtime_with_live_clusters_is_deleted_only_with_force(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    rt = setup["runtime"]["runtime_id"]
    made = await deploy(client, setup, "shop@1.0.0")
    assert (await wait_job(client, made["job_id"]))["status"] == "successful"
    refused = await client.delete(f"/v1/runtimes/{rt}")
    body = assert_error(refused, 409, "runtime_in_use")
    assert body["details"]["cluster_ids"] == [made["cluster_id"]]

    forced = await client.delete(f"/v1/runtimes/{rt}", params={"force": "true"})
    assert forced.status_code == 200, forced.text
    [job_id] = forced.json()["cluster_job_ids"]
    assert (await wait_job(client, job_id))["status"] == "successful"
    assert (await client.get(f"/v1/clusters/{made['cluster_id']}")).json()["status"] == "deleted"
    assert owned(kube, "Deployment", setup["runtime"]["zone"], made["cluster_id"]) == []
    assert (await client.get(f"/v1/runtimes/{rt}")).json()["status"] == "deleted"


async def test_a_retried_deploy_with_the_same_idempotency_key_starts_one_job(
    client: httpx.AsyncClient, setup: dict[str, Any]
) -> None:
    body = {
        "version_id": setup["versions"]["shop@1.0.0"],
        "runtime_id": setup["runtime"]["runtime_id"],
        "name": unique("cl"),
    }
    key = {"Idempotency-Key": unique("key")}
    first = await client.post("/v1/clusters", json=body, headers=key)
    again = await client.post("/v1/clusters", json=body, headers=key)
    assert first.status_code == again.status_code == 202, again.text
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    listed = await client.get("/v1/clusters", params={"search_word": body["name"]})
    assert [c["cluster_id"] for c in listed.json()["items"]] == [first.json()["cluster_id"]]
    # The same key for another request is refused rather than silently replayed.
    other = await client.post("/v1/clusters", json={**body, "name": "other"}, headers=key)
    assert_error(other, 422, "idempotency_key_reused")
    # A failed request does not burn its key: fixed and retried, it acts.
    bad_key = {"Idempotency-Key": unique("key")}
    failed = await client.post(
        "/v1/clusters", json={**body, "runtime_id": "runtime-nope"}, headers=bad_key
    )
    assert failed.status_code == 404
    ok = await client.post("/v1/clusters", json={**body, "name": unique("cl")}, headers=bad_key)
    assert ok.status_code == 202, ok.text
    assert (await wait_job(client, first.json()["job_id"]))["status"] == "successful"
    assert (await wait_job(client, ok.json()["job_id"]))["status"] == "successful"


async def test_cancelling_a_deploy_stops_its_wait_and_releases_the_cluster(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    kube.auto_ready = False
    made = await deploy(client, setup, "shop@1.0.0")
    job_id = made["job_id"]
    for _ in range(200):
        tasks = (await client.get(f"/v1/jobs/{job_id}")).json()["tasks"]
        if any(t["action"] == "wait" and t["status"] == "working" for t in tasks):
            break
        await asyncio.sleep(0.1)
    cancel = await client.post(f"/v1/jobs/{job_id}/actions/cancel")
    assert cancel.status_code == 202, cancel.text
    job = await wait_job(client, job_id, timeout=30)
    assert job["status"] == "cancelled", job
    statuses = {t["action"]: t["status"] for t in job["tasks"]}
    assert statuses == {
        "render": "successful",
        "apply": "successful",
        "wait": "cancelled",
        "prune": "cancelled",
        "describe": "cancelled",
    }
    cluster = (await client.get(f"/v1/clusters/{made['cluster_id']}")).json()
    assert (cluster["status"], cluster["transition_status"]) == ("pending", "")
    again = await client.post(f"/v1/jobs/{job_id}/actions/cancel")
    assert_error(again, 409, "job_ended")
    # An index job is not the engine's: it cannot be cancelled.
    index_jobs = await client.get("/v1/jobs", params={"action": "index_repo", "limit": 1})
    other = index_jobs.json()["items"][0]["job_id"]
    assert_error(await client.post(f"/v1/jobs/{other}/actions/cancel"), 409, "job_not_controllable")
