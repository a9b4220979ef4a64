"""Client-side helpers for runtime and cluster tests against the fake Kubernetes API server."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import yaml

from tests.conftest import unique
from tests.helpers import create_repo, wait_job
from tests.support.kube import FakeKube

CLUSTER_LABEL = "openpitrix.io/cluster"


def kubeconfig(
    kube: FakeKube, *, server: str | None = None, token: str | None = None, **user_extra: Any
) -> str:
    """The fake's own kubeconfig (inline CA and token), optionally spoiled."""
    doc = kube.kubeconfig_dict()
    if server is not None:
        doc["clusters"][0]["cluster"]["server"] = server
    user = doc["users"][0]["user"]
    if token is not None:
        user["token"] = token
    user.update(user_extra)
    return yaml.safe_dump(doc)


def owned(kube: FakeKube, kind: str, namespace: str, cluster_id: str) -> list[dict[str, Any]]:
    """The objects of a kind in a namespace that carry the cluster's label."""
    return [
        o
        for o in kube.objects(kind, namespace)
        if (o["metadata"].get("labels") or {}).get(CLUSTER_LABEL) == cluster_id
    ]


async def versions(client: httpx.AsyncClient, repo_id: str) -> dict[str, str]:
    """{"shop@1.0.0": version_id, ...} of a repo."""
    out = {}
    apps = (await client.get("/v1/apps", params={"repo_id": repo_id})).json()["items"]
    for app in apps:
        for v in (await client.get(f"/v1/apps/{app['app_id']}/versions")).json()["items"]:
            out[f"{app['name']}@{v['version']}"] = v["version_id"]
    return out


async def deploy(
    client: httpx.AsyncClient, setup: dict[str, Any], version: str, **extra: Any
) -> dict[str, Any]:
    """POST /v1/clusters of `version` ("shop@1.0.0") on the setup runtime: the 202 body."""
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


async def prepare_runtime(
    client: httpx.AsyncClient, kube: FakeKube, repo_url: str
) -> dict[str, Any]:
    """A repo whose apps may run on env=prod runtimes, indexed; a credential for the fake; a
    runtime labelled env=prod on a namespace of its own.

    Returns {"runtime": runtime, "credential_id": ..., "versions": {"shop@1.0.0": id, ...}}."""
    repo = await create_repo(
        client, unique(), repo_url, selectors=[{"key": "env", "value": "prod"}]
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


async def task_reaches(
    client: httpx.AsyncClient,
    job_id: str,
    action: str,
    status: str = "working",
    timeout: float = 30.0,
) -> dict[str, Any]:
    """Poll the job until its `action` task has `status`, and return that task; fail the test
    if it does not within `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        tasks = (await client.get(f"/v1/jobs/{job_id}")).json().get("tasks") or []
        task: dict[str, Any] = next((t for t in tasks if t["action"] == action), {})
        if task.get("status") == status:
            return task
        if loop.time() > deadline:
            raise AssertionError(f"task {action} of {job_id} not {status} in {timeout}s: {task}")
        await asyncio.sleep(0.1)
