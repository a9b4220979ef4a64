"""The whole cluster lifecycle on a VM provider that is a plugin: the test cloud, installed
through an `openpitrix.providers` entry point the way a third-party package is, through the API
with real workers and NATS. Nothing in the server names it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from openpitrix_testcloud.cloud import Cloud

from tests.helpers import assert_error, wait_job
from tests.support import vm_scenarios as scenarios
from tests.support.deployments import deploy
from tests.support.http_repo import RepoServer
from tests.support.vm import cloud_held, credential_of, instances, make_cloud, prepare_vm_runtime


@pytest.fixture
def cloud(tmp_path: Path) -> Cloud:
    return make_cloud(tmp_path)


@pytest.fixture
async def vm(client: httpx.AsyncClient, cloud: Cloud, shop_repo: RepoServer) -> dict[str, Any]:
    return await prepare_vm_runtime(client, cloud, shop_repo.url)


async def test_a_vm_cluster_goes_through_its_whole_lifecycle(
    client: httpx.AsyncClient, cloud: Cloud, vm: dict[str, Any]
) -> None:
    await scenarios.lifecycle(client, cloud, vm)


async def test_node_actions_refuse_what_the_cluster_does_not_have(
    client: httpx.AsyncClient, cloud: Cloud, vm: dict[str, Any]
) -> None:
    made = await deploy(client, vm, "shop@1.0.0", values=scenarios.VALUES)
    cid = made["cluster_id"]
    await scenarios.Jobs(client).finished(made["job_id"])
    act = f"/v1/clusters/{cid}/actions"
    cases: list[tuple[str, dict[str, Any], int, str]] = [
        # The body is checked at the edge...
        ("resize", {"role": "web"}, 422, "validation_error"),  # nothing to resize
        ("resize", {"role": "web", "cpu": 0}, 422, "validation_error"),
        ("resize", {"role": "web", "cpu": 2, "disk": 5}, 422, "validation_error"),
        ("add-nodes", {"role": "web", "count": 0}, 422, "validation_error"),
        ("add-nodes", {"count": 1}, 422, "validation_error"),
        ("delete-nodes", {"node_ids": []}, 422, "validation_error"),
        ("delete-nodes", {"node_ids": ["web-1", "web-1"]}, 422, "validation_error"),
        ("stop", {"force": True}, 422, "validation_error"),
        # ... and against the cluster's roles and nodes.
        ("resize", {"role": "cache", "cpu": 2}, 409, "no_such_role"),
        ("add-nodes", {"role": "cache"}, 409, "no_such_role"),
        ("delete-nodes", {"node_ids": ["web-1", "web-9"]}, 409, "no_such_node"),
        ("delete-nodes", {"node_ids": ["web-1", "web-2", "db-1"]}, 409, "last_nodes"),
        # Previews check the same.
        ("resize", {"role": "cache", "cpu": 2, "dry_run": True}, 409, "no_such_role"),
        ("delete-nodes", {"node_ids": ["web-9"], "dry_run": True}, 409, "no_such_node"),
        # The status each action starts from.
        ("start", {}, 409, "cluster_state"),
        ("recover", {}, 409, "cluster_state"),
        ("cease", {}, 409, "cluster_state"),
        # Kubernetes-only actions name the provider.
        ("upgrade", {"version_id": vm["versions"]["shop@2.0.0"]}, 409, "action_unsupported"),
        ("update-env", {"values": {}}, 409, "action_unsupported"),
        # A provider that cannot preview an action says so.
        ("stop", {"dry_run": True}, 409, "preview_unsupported"),
    ]
    for action, body, status, code in cases:
        resp = await client.post(f"{act}/{action}", json=body)
        error = assert_error(resp, status, code)
        if code == "no_such_role":
            assert "cache" in error["message"] and "web" in error["message"], error
        if code == "no_such_node":
            assert error["details"]["node_ids"] == ["web-9"], error
        if code == "action_unsupported":
            assert error["message"].startswith("testcloud clusters do not support"), error
    # Nothing was started, nothing changed in the cloud.
    cluster = await scenarios.cluster_of(client, cid)
    assert (cluster["transition_status"], cluster["job_id"]) == ("", made["job_id"])
    in_cloud = instances(cloud, vm["runtime"]["zone"], cid)
    assert sorted(in_cloud) == ["db-1", "web-1", "web-2"]
    assert in_cloud["web-1"]["cpu"] == 1


async def test_a_vm_cluster_busy_with_one_action_refuses_another(
    client: httpx.AsyncClient, cloud: Cloud, vm: dict[str, Any]
) -> None:
    made = await deploy(client, vm, "shop@1.0.0", values=scenarios.VALUES)
    cid = made["cluster_id"]
    jobs = scenarios.Jobs(client)
    await jobs.finished(made["job_id"])
    # The cloud answers nothing while held, so the stop job cannot end before the checks.
    with cloud_held(cloud):
        stop = await client.post(f"/v1/clusters/{cid}/actions/stop")
        assert stop.status_code == 202, stop.text
        assert (await scenarios.cluster_of(client, cid))["transition_status"] == "stopping"
        for action, body in (
            ("resize", {"role": "web", "cpu": 2}),
            ("add-nodes", {"role": "web"}),
            ("delete-nodes", {"node_ids": ["web-1"]}),
            ("resize", {"role": "web", "cpu": 2, "dry_run": True}),
        ):
            busy = await client.post(f"/v1/clusters/{cid}/actions/{action}", json=body)
            error = assert_error(busy, 409, "cluster_busy")
            assert error["details"]["job_id"] == stop.json()["job_id"]
        assert_error(await client.delete(f"/v1/clusters/{cid}"), 409, "cluster_busy")
    await jobs.done(stop)
    cluster = await scenarios.cluster_of(client, cid)
    assert (cluster["status"], cluster["transition_status"]) == ("stopped", "")


async def test_a_failed_vm_action_releases_the_lock_and_keeps_the_status(
    client: httpx.AsyncClient, cloud: Cloud, vm: dict[str, Any]
) -> None:
    made = await deploy(client, vm, "shop@1.0.0", values=scenarios.VALUES)
    cid = made["cluster_id"]
    await scenarios.Jobs(client).finished(made["job_id"])
    # A volume cannot shrink: the cloud refuses, the job fails.
    shrink = await client.post(
        f"/v1/clusters/{cid}/actions/resize", json={"role": "db", "volume_size": 10}
    )
    assert shrink.status_code == 202, shrink.text
    job = await wait_job(client, shrink.json()["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "volume_shrink", job["error"]
    cluster = await scenarios.cluster_of(client, cid)
    assert (cluster["status"], cluster["transition_status"]) == ("active", "")
    assert instances(cloud, vm["runtime"]["zone"], cid)["db-1"]["volume_size"] == 50
    # Unlocked: the next action runs.
    resp = await client.post(f"/v1/clusters/{cid}/actions/stop")
    await scenarios.Jobs(client).done(resp)


async def test_kubernetes_clusters_refuse_the_vm_actions_naming_their_provider(
    client: httpx.AsyncClient, setup: dict[str, Any]
) -> None:
    made = await deploy(client, setup, "shop@1.0.0")
    cid = made["cluster_id"]
    assert (await wait_job(client, made["job_id"]))["status"] == "successful"
    for action, body in (
        ("stop", None),
        ("start", {}),
        ("resize", {"role": "web", "cpu": 2}),
        ("add-nodes", {"role": "web", "count": 1}),
        ("delete-nodes", {"node_ids": ["x"]}),
        ("recover", {"dry_run": True}),
    ):
        resp = await client.post(f"/v1/clusters/{cid}/actions/{action}", json=body)
        error = assert_error(resp, 409, "action_unsupported")
        assert error["message"] == (f"kubernetes clusters do not support {action}"), error
    gone = await client.delete(f"/v1/clusters/{cid}")
    assert (await wait_job(client, gone.json()["job_id"]))["status"] == "successful"


async def test_a_testcloud_credential_is_checked_against_the_cloud(
    client: httpx.AsyncClient, cloud: Cloud
) -> None:
    ok = await client.post(
        "/v1/runtime-credentials/validate",
        json={"provider": "testcloud", "content": credential_of(cloud)},
    )
    assert ok.json()["ok"] is True, ok.text
    assert ok.json()["endpoint_url"] == cloud.path.resolve().as_uri()
    wrong = await client.post(
        "/v1/runtime-credentials/validate",
        json={"provider": "testcloud", "content": credential_of(cloud, secret_key="nope")},
    )
    assert wrong.json()["ok"] is False
    assert wrong.json()["error"]["code"] == "credential_invalid"
