"""Cluster scenarios through the API against the fake Kubernetes API server, shared by the
in-process tests (tests/clusters) and the end-to-end ones through real processes (tests/e2e).

Each takes a client authorized as an admin, the fake, and `prepare_runtime`'s setup, and leaves
the runtime as it found it, so scenarios can run one after another on one setup."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from tests.helpers import assert_error, read_sse, wait_job
from tests.support.deployments import deploy, owned
from tests.support.kube import FakeKube


async def lifecycle(client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]) -> None:
    ns = setup["runtime"]["zone"]
    made = await deploy(client, setup, "shop@1.0.0", values={"replicaCount": 2})
    cid = made["cluster_id"]
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "successful", job
    assert [t["action"] for t in job["tasks"]] == [
        "render",
        "check",
        "apply",
        "wait",
        "prune",
        "describe",
    ]
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
    # The release history: newest first, what each revision deployed.
    history = (await client.get(f"/v1/clusters/{cid}/releases")).json()
    assert [
        (r["revision"], r["chart_version"], r["status"], r["values"]) for r in history["items"]
    ] == [
        (3, "1.0.0", "deployed", {"replicaCount": 2}),
        (2, "2.0.0", "superseded", {"replicaCount": 2}),
        (1, "1.0.0", "superseded", {"replicaCount": 2}),
    ]
    assert history["items"][1]["job_id"] == up.json()["job_id"]
    second = (await client.get(f"/v1/clusters/{cid}/releases/2")).json()
    assert {o["kind"] for o in second["manifest"]} == {"ConfigMap", "Deployment", "Service"}
    gone_rev = await client.get(f"/v1/clusters/{cid}/releases/9")
    assert_error(gone_rev, 404, "not_found")
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


async def ineligible_runtime_is_refused(client: httpx.AsyncClient, setup: dict[str, Any]) -> None:
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
    version = setup["versions"]["shop@1.0.0"]
    eligible = await client.get("/v1/runtimes", params={"eligible_for_version": version})
    assert rt not in [r["runtime_id"] for r in eligible.json()["items"]]
    # Labelled back, it is eligible again (so scenarios can run one after another).
    back = await client.patch(
        f"/v1/runtimes/{rt}", json={"labels": [{"key": "env", "value": "prod"}]}
    )
    assert back.status_code == 200
    eligible = await client.get("/v1/runtimes", params={"eligible_for_version": version})
    assert rt in [r["runtime_id"] for r in eligible.json()["items"]]


async def missing_required_value_fails_fast(
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


async def failing_image_surfaces_then_retry_succeeds(
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
