"""The qingcloud provider's VM tasks run directly against the fake QingCloud, as a worker
runs them: a redelivered task converges instead of making things twice."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable

import pytest

from openpitrix.providers.base import PlanRequest, ProviderError
from openpitrix.providers.qingcloud.provider import QingCloudProvider
from tests.providers.qingcloud.conftest import OPEN, client_for
from tests.support.qingcloud_fake import QingCloudFake
from tests.support.qingcloud_vm import in_cloud, shop_package, volumes_of
from tests.support.vm_tasks import TaskRunner
from tests.support.vmpackages import build_vm_package

provider = QingCloudProvider()
CLUSTER = "cl-tasks001"


def runner_for(fake: QingCloudFake) -> TaskRunner:
    """A runner for CLUSTER on the fake's pek3a, with the shop package."""
    content = json.dumps(
        {"access_key_id": fake.access_key_id, "secret_access_key": fake.secret_access_key}
    )
    return TaskRunner(
        provider,
        provider.parse_credential(content, fake.url),
        build_vm_package(shop_package()),
        cluster_id=CLUSTER,
        zone="pek3a",
        policy=OPEN,
    )


async def test_a_launch_run_twice_makes_each_instance_once(qingcloud: QingCloudFake) -> None:
    runner = runner_for(qingcloud)
    rendered = await runner.run("render_spec")
    assert rendered["chart_version"] == "1.0.0"
    assert [o["node_id"] for o in rendered["objects"]] == ["web-1", "web-2", "db-1"]
    assert await runner.run("launch") == {"launched": 3, "found": 0}
    first = {k: v["instance_id"] for k, v in in_cloud(qingcloud, CLUSTER).items()}
    # Redelivered (the worker died after the cloud accepted): found by name, nothing made.
    assert await runner.run("launch") == {"launched": 0, "found": 3}
    assert {k: v["instance_id"] for k, v in in_cloud(qingcloud, CLUSTER).items()} == first
    assert sum(r.action == "RunInstances" for r in qingcloud.requests) == 3
    assert await runner.run("await_running") == {"running": 3}
    assert await runner.run("attach_volumes") == {"attached": 1, "volumes": 1}
    assert await runner.run("attach_volumes") == {"attached": 0, "volumes": 1}
    assert list(volumes_of(qingcloud, CLUSTER)) == [f"{CLUSTER}-db-1-data"]
    survey = await runner.run("survey")
    assert [(n["node_id"], n["status"], n["volume_size"]) for n in survey["nodes"]] == [
        ("db-1", "running", 10),
        ("web-1", "running", 0),
        ("web-2", "running", 0),
    ]


async def _until(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(30):
        while not check():
            await asyncio.sleep(0.01)


async def test_a_launch_resumed_before_its_accepted_instances_are_listed_launches_none_again(
    qingcloud: QingCloudFake,
) -> None:
    runner = runner_for(qingcloud)
    await runner.run("render_spec")
    # QingCloud accepts each RunInstances (a job id) but lists nothing until the job starts.
    qingcloud.hold_jobs("RunInstances")
    dying = asyncio.create_task(runner.run("launch"))
    await _until(lambda: len(qingcloud.jobs()) == 3)
    dying.cancel()  # its worker dies, all three launches taken by QingCloud
    with contextlib.suppress(asyncio.CancelledError):
        await dying
    assert [i.listed for i in qingcloud.instances()] == [False] * 3
    seen = len(qingcloud.requests)

    resumed = asyncio.create_task(runner.run("launch"))
    # The resumed run finds nothing by name; it either waits for the launches kept by the
    # first run (DescribeJobs) or launches again (what a launch found by name alone did).
    await _until(
        lambda: any(r.action in ("DescribeJobs", "RunInstances") for r in qingcloud.requests[seen:])
    )
    qingcloud.release_jobs("RunInstances")
    assert await resumed == {"launched": 0, "found": 3}

    assert sum(r.action == "RunInstances" for r in qingcloud.requests) == 3
    assert sorted(in_cloud(qingcloud, CLUSTER)) == ["db-1", "web-1", "web-2"]
    assert len(qingcloud.instances()) == 3
    assert await runner.run("await_running") == {"running": 3}


async def test_a_launch_that_failed_in_the_cloud_fails_the_wait_and_is_made_again(
    qingcloud: QingCloudFake,
) -> None:
    runner = runner_for(qingcloud)
    await runner.run("render_spec")
    qingcloud.fail_jobs("RunInstances", 1)  # the first instance's job fails: it is terminated
    await runner.run("launch")
    with pytest.raises(ProviderError) as lost:
        await runner.run("await_running")
    assert lost.value.code == "instance_lost"
    assert "web-1" in lost.value.message
    assert sorted(in_cloud(qingcloud, CLUSTER)) == ["db-1", "web-2"]
    # The next launch makes the lost node again, and only that one.
    assert await runner.run("launch") == {"launched": 1, "found": 2}
    assert await runner.run("await_running") == {"running": 3}


async def test_add_nodes_plans_new_node_ids_like_the_roles_nodes(
    qingcloud: QingCloudFake,
) -> None:
    runner = runner_for(qingcloud)
    for action in ("render_spec", "launch", "await_running", "survey"):
        await runner.run(action)
    layers = provider.plan(
        PlanRequest(
            action="add_nodes",
            params={"role": "web", "count": 2},
            cluster_id=CLUSTER,
            zone="pek3a",
            state=runner.state,
        )
    )
    assert [[t.action for t in layer] for layer in layers] == [
        ["check"],
        ["launch"],
        ["await_running"],
        ["attach_volumes"],
        ["services"],
        ["survey"],
    ]
    params = layers[1][0].params
    assert params == {"role": "web", "node_ids": ["web-3", "web-4"]}
    assert await runner.run("launch", params) == {"launched": 2, "found": 0}
    assert sorted(in_cloud(qingcloud, CLUSTER)) == ["db-1", "web-1", "web-2", "web-3", "web-4"]


async def test_a_redelivered_resize_starts_again_what_its_first_run_stopped(
    qingcloud: QingCloudFake,
) -> None:
    runner = runner_for(qingcloud)
    for action in ("render_spec", "launch", "await_running", "attach_volumes", "survey"):
        await runner.run(action)
    # The first run stopped the role and died; the state is still the one found before.
    web = [v["instance_id"] for k, v in in_cloud(qingcloud, CLUSTER).items() if "web" in k]
    async with client_for(qingcloud) as client:
        await client.wait_job(await client.stop_instances(web), timeout=10, interval=0.02)
    result = await runner.run("resize", {"role": "web", "cpu": 2, "memory": 2048})
    assert result == {"nodes": 2, "cpu": 2, "memory": 2048}
    cloud = in_cloud(qingcloud, CLUSTER)
    assert [(k, v["cpu"], v["status"]) for k, v in sorted(cloud.items())] == [
        ("db-1", 2, "running"),
        ("web-1", 2, "running"),
        ("web-2", 2, "running"),
    ]
