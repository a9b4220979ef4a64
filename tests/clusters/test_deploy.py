"""Deploying app versions as clusters through the API, onto the fake Kubernetes API server:
create, upgrade, rollback, update values, delete, cease; failures with their real reasons."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.helpers import assert_error, create_repo, read_sse, wait_job
from tests.support.charts import ChartSpec, write_index
from tests.support.deployments import kubeconfig, owned
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube

REQUIRED_SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-db
stringData:
  password: {{ required "dbPassword is required" .Values.dbPassword | quote }}
"""
CONFIG_V2 = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-extra
data:
  added: "in 2.0.0"
"""


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as fake:
        fake.auto_ready = True
        yield fake


@pytest.fixture
def shop_repo(repo_dir: Path, repo_server: RepoServer) -> RepoServer:
    write_index(
        repo_dir,
        [
            ChartSpec("shop", "1.0.0", app_version="1.0"),
            ChartSpec(
                "shop", "2.0.0", app_version="2.0", extra_templates={"extra.yaml": CONFIG_V2}
            ),
            ChartSpec("vault", "1.0.0", extra_templates={"secret.yaml": REQUIRED_SECRET}),
        ],
    )
    return repo_server


async def versions(client: httpx.AsyncClient, repo_id: str) -> dict[str, str]:
    """{"shop@1.0.0": version_id, ...} of a repo."""
    out = {}
    apps = (await client.get("/v1/apps", params={"repo_id": repo_id})).json()["items"]
    for app in apps:
        for v in (await client.get(f"/v1/apps/{app['app_id']}/versions")).json()["items"]:
            out[f"{app['name']}@{v['version']}"] = v["version_id"]
    return out


@pytest.fixture
async def setup(client: httpx.AsyncClient, kube: FakeKube, shop_repo: RepoServer) -> dict[str, Any]:
    repo = await create_repo(
        client, unique(), shop_repo.url, selectors=[{"key": "env", "value": "prod"}]
    )
    assert (await wait_job(client, repo["index_job_id"]))["status"] == "successful"
    cred = await client.post(
        "/v1/runtime-credentials",
        json={"name": unique("c"), "provider": "kubernetes", "content": kubeconfig(kube)},
    )
    assert cred.status_code == 201, cred.text
    runtime = await client.post(
        "/v1/runtimes",
        json={
            "name": unique("rt"),
            "credential_id": cred.json()["credential_id"],
            "zone": unique("ns"),
            "create_zone": True,
            "labels": [{"key": "env", "value": "prod"}],
        },
    )
    assert runtime.status_code == 201, runtime.text
    return {
        "runtime": runtime.json(),
        "credential_id": cred.json()["credential_id"],
        "versions": await versions(client, repo["repo_id"]),
    }


async def deploy(
    client: httpx.AsyncClient, setup: dict[str, Any], version: str, **extra: Any
) -> dict[str, Any]:
    resp = await client.post(
        "/v1/clusters",
        json={
            "version_id": setup["versions"][version],
            "runtime_id": setup["runtime"]["runtime_id"],
            "name": unique("cl"),
            **extra,
        },
    )
    assert resp.status_code == 202, resp.text
    body: dict[str, Any] = resp.json()
    return body


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
    assert len(owned(kube, "ConfigMap", ns, cid)) == 1
    assert owned(kube, "Deployment", ns, cid)[0]["spec"]["replicas"] == 2
    # Rollback to the revision before: the ConfigMap that left the chart is pruned.
    back = await client.post(f"/v1/clusters/{cid}/actions/rollback", json={})
    assert (await wait_job(client, back.json()["job_id"]))["status"] == "successful"
    assert owned(kube, "ConfigMap", ns, cid) == []
    cluster = (await client.get(f"/v1/clusters/{cid}")).json()
    assert cluster["revision"] == 3 and cluster["version_id"] == setup["versions"]["shop@1.0.0"]
    # New values: a new revision with them.
    env = await client.post(
        f"/v1/clusters/{cid}/actions/update-env", json={"values": {"replicaCount": 3}}
    )
    assert (await wait_job(client, env.json()["job_id"]))["status"] == "successful"
    assert owned(kube, "Deployment", ns, cid)[0]["spec"]["replicas"] == 3
    assert (await client.get(f"/v1/clusters/{cid}")).json()["values"] == {"replicaCount": 3}

    # Kubernetes has no stop/start/resize.
    stop = await client.post(f"/v1/clusters/{cid}/actions/stop")
    assert_error(stop, 409, "action_unsupported")

    gone = await client.delete(f"/v1/clusters/{cid}")
    assert (await wait_job(client, gone.json()["job_id"]))["status"] == "successful"
    for kind in ("Deployment", "Service", "ConfigMap"):
        assert owned(kube, kind, ns, cid) == []
    assert (await client.get(f"/v1/clusters/{cid}")).json()["status"] == "deleted"
    ceased = await client.post(f"/v1/clusters/{cid}/actions/cease")
    assert (await wait_job(client, ceased.json()["job_id"]))["status"] == "successful"
    assert (await client.get(f"/v1/clusters/{cid}")).json()["status"] == "ceased"


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
