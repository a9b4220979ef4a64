"""VM clusters on QingCloud through the API, with real workers and NATS, against the fake
QingCloud: every lifecycle action checked against the fake's instances and volumes by the
scenario shared with aws (tests/support/vm_cloud_scenarios.py), per-node progress on the job's
stream, the cloud's refusals as the job's error."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.helpers import assert_error, wait_job
from tests.providers.qingcloud.conftest import client_for
from tests.support.deployments import deploy
from tests.support.qingcloud_fake import QingCloudFake
from tests.support.qingcloud_vm import (
    credential_of,
    in_cloud,
    volumes_of,
)
from tests.support.vm_cloud_scenarios import Nodes, VmCloud, lifecycle
from tests.support.vm_scenarios import cluster_of, preview_create


@pytest.fixture
def vm(qingcloud_vm: dict[str, Any]) -> dict[str, Any]:
    return qingcloud_vm


class QingCloud(VmCloud):
    """The fake QingCloud's own records; the web role on its own image, the db on the
    provider's default."""

    provider = "qingcloud"
    zone_kind = "zone"
    resize_to = (2, 2048)

    def __init__(self, fake: QingCloudFake) -> None:
        self.fake = fake

    def in_cloud(self, cluster_id: str) -> Nodes:
        return in_cloud(self.fake, cluster_id)

    def volume_ids(self, cluster_id: str) -> list[str]:
        return [v["volume_id"] for v in volumes_of(self.fake, cluster_id).values()]

    def instance_count(self) -> int:
        return len(self.fake.instances())

    def statuses(self, cluster_id: str, instance_ids: set[str]) -> set[str]:
        ended = {i.instance_id: i.status for i in self.fake.instances()}
        return {ended[i] for i in instance_ids}

    async def stop_outside(self, instance_id: str) -> None:
        async with client_for(self.fake) as qc:
            await qc.wait_job(await qc.stop_instances([instance_id]), timeout=30, interval=0.02)

    def created(self, cluster_id: str, cloud: Nodes, nodes: Nodes) -> None:
        # Sized and imaged as the package says: the web role's own image, the db on the
        # provider's default.
        assert [(cloud[n]["cpu"], cloud[n]["memory"]) for n in ("web-1", "db-1")] == [
            (1, 1024),
            (2, 4096),
        ]
        assert (cloud["web-1"]["image_id"], cloud["db-1"]["image_id"]) == (
            "bionic1x64",
            "centos7x64d",
        )

    def stopped(self, cloud: Nodes, messages: list[str]) -> None:
        assert any(m.startswith("QingCloud StopInstances j-") for m in messages), messages

    def resized(self, cloud: Nodes, nodes: Nodes, messages: list[str]) -> None:
        assert [(cloud[n]["cpu"], cloud[n]["memory"]) for n in cloud] == [
            (2, 2048),
            (2, 2048),
            (2, 4096),
        ]

    def scaled_out(self, cloud: Nodes, messages: list[str]) -> None:
        assert (cloud["web-4"]["cpu"], cloud["web-4"]["memory"]) == (2, 2048)
        # The web role's scale_out would run on web-1 and web-2: QingCloud has no service to
        # run it.
        assert "cannot run scale_out of web on qingcloud: no run-command service" in messages

    def deleted(self, cluster_id: str, db_volume: str) -> None:
        super().deleted(cluster_id, db_volume)
        assert list(volumes_of(self.fake, cluster_id)) == [f"{cluster_id}-db-1-data"]


async def test_a_qingcloud_vm_cluster_goes_through_its_whole_lifecycle(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, vm: dict[str, Any]
) -> None:
    await lifecycle(client, vm, QingCloud(qingcloud))


async def test_a_quota_too_small_fails_the_create_before_anything_is_made(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, vm: dict[str, Any]
) -> None:
    qingcloud.quota["instance"] = 2
    # A preview says so first, as the create's check task would.
    preview = await preview_create(client, vm, {})
    error = assert_error(preview, 409, "insufficient_resources")
    assert "3 instances needed, 2 left" in error["message"], error
    made = await deploy(client, vm, "shop@1.0.0", values={})
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "insufficient_resources", job["error"]
    assert "3 instances needed, 2 left" in job["error"]["message"], job["error"]
    assert [t["action"] for t in job["tasks"] if t["status"] == "failed"] == ["check"]
    assert qingcloud.instances() == []
    assert "RunInstances" not in qingcloud.actions()


async def test_the_clouds_refusal_is_the_jobs_error(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, vm: dict[str, Any]
) -> None:
    # The quotas look fine, but QingCloud refuses the launch itself.
    qingcloud.fail_next(
        "RunInstances", 2500, "QuotaExceeded, the quota of [cpu] left is [0], but [1] is needed"
    )
    made = await deploy(client, vm, "shop@1.0.0", values={})
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "insufficient_resources", job["error"]
    assert "QingCloud RunInstances: QuotaExceeded" in job["error"]["message"], job["error"]
    cluster = await cluster_of(client, made["cluster_id"])
    assert cluster["transition_status"] == "", cluster


async def test_a_wrong_secret_is_refused_as_the_kubernetes_credentials_are(
    client: httpx.AsyncClient, qingcloud: QingCloudFake
) -> None:
    wrong = credential_of(qingcloud, secret="not-the-secret")
    checked = await client.post(
        "/v1/runtime-credentials/validate",
        json={"provider": "qingcloud", "endpoint_url": qingcloud.url, "content": wrong},
    )
    assert checked.json()["ok"] is False, checked.text
    assert checked.json()["error"]["code"] == "credential_invalid"
    refused = await client.post(
        "/v1/runtime-credentials",
        json={
            "name": unique("cred"),
            "provider": "qingcloud",
            "endpoint_url": qingcloud.url,
            "content": wrong,
        },
    )
    error = assert_error(refused, 400, "credential_invalid")
    assert "not-the-secret" not in refused.text
    assert "AuthFailure" in error["message"], error


async def test_a_qingcloud_zone_is_shared_by_any_number_of_runtimes(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, vm: dict[str, Any]
) -> None:
    # A cloud's zone belongs to no runtime (unlike a namespace): a second runtime on the same
    # zone and endpoint, through the same credential, is made and lives beside the first.
    zone = vm["runtime"]["zone"]
    second = await client.post(
        "/v1/runtimes",
        json={"name": unique("rt"), "credential_id": vm["credential_id"], "zone": zone},
    )
    assert second.status_code == 201, second.text
    listed = await client.get(
        "/v1/runtimes", params={"credential_id": vm["credential_id"], "zone": zone}
    )
    assert listed.json()["total_count"] == 2
    providers = {p["name"]: p for p in (await client.get("/v1/providers")).json()["items"]}
    assert providers["qingcloud"]["exclusive_zones"] is False
    assert providers["kubernetes"]["exclusive_zones"] is True
