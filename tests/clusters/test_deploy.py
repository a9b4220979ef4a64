"""Deploying app versions as clusters through the API, onto the fake Kubernetes API server:
create, upgrade, rollback, update values, delete, cease; failures with their real reasons."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import unique
from tests.helpers import assert_error, wait_job
from tests.support import cluster_scenarios as scenarios
from tests.support.deployments import deploy, owned, task_reaches
from tests.support.kube import FakeKube


async def test_a_cluster_lives_through_its_whole_lifecycle(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    await scenarios.lifecycle(client, kube, setup)


async def test_an_ineligible_runtime_is_refused_with_the_reason(
    client: httpx.AsyncClient, setup: dict[str, Any]
) -> None:
    await scenarios.ineligible_runtime_is_refused(client, setup)


async def test_a_missing_required_value_fails_fast_with_helms_message(
    client: httpx.AsyncClient, setup: dict[str, Any]
) -> None:
    await scenarios.missing_required_value_fails_fast(client, setup)


async def test_a_failing_image_surfaces_its_reason_and_the_job_can_be_retried(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    await scenarios.failing_image_surfaces_then_retry_succeeds(client, kube, setup)


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
    await task_reaches(client, job_id, "wait")
    cancel = await client.post(f"/v1/jobs/{job_id}/actions/cancel")
    assert cancel.status_code == 202, cancel.text
    job = await wait_job(client, job_id, timeout=30)
    assert job["status"] == "cancelled", job
    statuses = {t["action"]: t["status"] for t in job["tasks"]}
    assert statuses == {
        "render": "successful",
        "check": "successful",
        "apply": "successful",
        "wait": "cancelled",
        "prune": "cancelled",
        "describe": "cancelled",
    }
    cluster = (await client.get(f"/v1/clusters/{made['cluster_id']}")).json()
    assert (cluster["status"], cluster["transition_status"]) == ("pending", "")
    again = await client.post(f"/v1/jobs/{job_id}/actions/cancel")
    assert_error(again, 409, "job_ended")
    # An index job runs on the same engine: an ended one answers as any ended job does.
    index_jobs = await client.get("/v1/jobs", params={"action": "index_repo", "limit": 1})
    other = index_jobs.json()["items"][0]["job_id"]
    assert_error(await client.post(f"/v1/jobs/{other}/actions/cancel"), 409, "job_ended")


async def test_a_release_the_namespace_quota_cannot_hold_fails_before_anything_is_applied(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    ns = setup["runtime"]["zone"]
    kube.set_quota(ns, "team", hard={"pods": "2", "services": "5"}, used={"pods": "1"})
    made = await deploy(client, setup, "shop@1.0.0", values={"replicaCount": 2})
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "insufficient_resources"
    assert "quota team: pods would be 3 of 2 (1 used, 2 more asked)" in job["error"]["message"]
    assert [t["status"] for t in job["tasks"] if t["action"] == "apply"] == ["pending"]
    assert owned(kube, "Deployment", ns, made["cluster_id"]) == []
    # Room made, the same job is retried and deploys.
    kube.set_quota(ns, "team", hard={"pods": "4", "services": "5"}, used={"pods": "1"})
    retry = await client.post(f"/v1/jobs/{made['job_id']}/actions/retry")
    assert retry.status_code == 202, retry.text
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "successful", job
    assert len(owned(kube, "Deployment", ns, made["cluster_id"])) == 1


async def test_the_tasks_on_one_cluster_share_one_api_discovery(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    for _ in range(2):
        made = await deploy(client, setup, "shop@1.0.0")
        assert (await wait_job(client, made["job_id"]))["status"] == "successful"
    # Ten tasks talked to the cluster; discovery (one request per API group) happened once.
    discovery = [r for r in kube.requests if r.method == "GET" and r.path == "/apis"]
    assert len(discovery) == 1, [r.path for r in kube.requests if r.method == "GET"][:20]


async def test_a_releases_manifest_shows_secrets_without_their_values(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    made = await deploy(client, setup, "vault@1.0.0", values={"dbPassword": "hunter2"})
    assert (await wait_job(client, made["job_id"]))["status"] == "successful"
    ns = setup["runtime"]["zone"]
    [secret] = owned(kube, "Secret", ns, made["cluster_id"])
    assert secret["data"]["password"]  # the cluster got the real value
    release = await client.get(f"/v1/clusters/{made['cluster_id']}/releases/1")
    assert release.status_code == 200, release.text
    [shown] = [o for o in release.json()["manifest"] if o["kind"] == "Secret"]
    assert shown["stringData"] == {"password": "<redacted>"}
    assert "hunter2" not in str(release.json()["manifest"])


async def test_a_refresh_reads_the_clusters_workloads_and_pods_again(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    made = await deploy(client, setup, "shop@1.0.0")
    assert (await wait_job(client, made["job_id"]))["status"] == "successful"
    cid, ns = made["cluster_id"], setup["runtime"]["zone"]
    before = (await client.get(f"/v1/clusters/{cid}")).json()
    # Something outside OpenPitrix breaks the workload: its pods crash.
    [workload] = owned(kube, "Deployment", ns, cid)
    kube.make_failing(ns, "Deployment", workload["metadata"]["name"], "CrashLoopBackOff")
    await kube.settle()
    assert (await client.get(f"/v1/clusters/{cid}")).json()["roles"] == before["roles"]

    resp = await client.post(f"/v1/clusters/{cid}/actions/refresh")
    assert resp.status_code == 202, resp.text
    job = await wait_job(client, resp.json()["job_id"])
    assert job["status"] == "successful", job
    assert [t["action"] for t in job["tasks"]] == ["describe"]
    after = (await client.get(f"/v1/clusters/{cid}")).json()
    assert after["status"] == "active"
    name = workload["metadata"]["name"]
    roles = {r["role"]: (r["status"], r["summary"]) for r in after["roles"]}
    assert roles[f"deployment/{name}"] == ("not ready", f"deployment/{name} 0/1 ready")
    assert roles[f"service/{name}"][0] == "ready"
    [pod] = after["nodes"]
    assert "CrashLoopBackOff" in pod["problem"]
    dry = await client.post(f"/v1/clusters/{cid}/actions/refresh", json={"dry_run": True})
    assert_error(dry, 409, "preview_unsupported")
