"""The client against the fake QingCloud API: zones, quotas, instances and volumes through
their jobs, as the provider will drive them."""

from __future__ import annotations

import asyncio

import pytest

from openpitrix.providers.qingcloud.client import QingCloudClient
from openpitrix.providers.qingcloud.results import Job, UserData
from tests.support.qingcloud_fake import QingCloudFake

WAIT = {"timeout": 10.0, "interval": 0.01, "max_interval": 0.05}


async def run_two(client: QingCloudClient, **extra: object) -> tuple[str, ...]:
    accepted = await client.run_instances(
        image_id="centos7x64d",
        cpu=2,
        memory=4096,
        count=2,
        instance_name="db",
        login_mode="passwd",
        login_passwd="Passw0rd-long",
    )
    await client.wait_job(accepted.job_id, **WAIT)
    return accepted.ids


async def test_describe_zones_lists_the_accounts_zones(client: QingCloudClient) -> None:
    zones = await client.describe_zones()

    assert [(z.zone_id, z.status) for z in zones] == [
        ("pek3a", "active"),
        ("pek3b", "active"),
        ("sh1a", "active"),
    ]


async def test_run_instances_with_user_data_and_wait_for_the_job(
    client: QingCloudClient, qingcloud: QingCloudFake
) -> None:
    script = "#!/bin/sh\necho 'role=db' > /etc/role\n# 数据库\n"
    qingcloud.hold_jobs("RunInstances")
    accepted = await client.run_instances(
        image_id="centos7x64d",
        instance_type="c2m4",
        count=2,
        instance_name="db",
        login_mode="keypair",
        login_keypair="kp-fake0001",
        user_data=UserData(script),
    )
    # Right after the call the job is known but the instances are not listed until it starts;
    # then they are, pending, without an address yet.
    assert await client.describe_instances(accepted.ids) == []
    assert [j.status for j in await client.find_jobs([accepted.job_id])] == ["pending"]
    while not any(j.held for j in qingcloud.jobs()):
        await asyncio.sleep(0.01)
    qingcloud.pause_jobs()  # the job stops once started, before it ends
    qingcloud.release_jobs("RunInstances")
    pending = await client.describe_instances(accepted.ids)
    while not pending:
        await asyncio.sleep(0.01)
        pending = await client.describe_instances(accepted.ids)
    assert {(i.status, i.transition_status, i.private_ip) for i in pending} == {
        ("pending", "creating", "")
    }
    qingcloud.resume_jobs()

    seen: list[str] = []

    async def progress(job: Job) -> None:
        seen.append(job.status)

    job = await client.wait_job(accepted.job_id, on_progress=progress, **WAIT)

    assert job.succeeded and job.job_action == "RunInstances"
    assert set(job.resource_ids.split(",")) == set(accepted.ids)
    assert seen[-1] == "successful" and len(seen) == len(set(seen))
    running = await client.describe_instances(accepted.ids)
    assert len(running) == 2
    assert {(i.status, i.vcpus_current, i.memory_current) for i in running} == {
        ("running", 2, 4096)
    }
    assert all(i.private_ip.startswith("192.168.0.") for i in running)
    assert len({i.private_ip for i in running}) == 2
    made = {i.instance_id: i for i in qingcloud.instances()}
    assert {(made[i].userdata_type, made[i].userdata) for i in accepted.ids} == {("exec", script)}


async def test_stop_resize_start_restart_and_terminate(client: QingCloudClient) -> None:
    ids = await run_two(client)

    await client.wait_job(await client.stop_instances(ids), **WAIT)
    assert {i.status for i in await client.describe_instances(ids)} == {"stopped"}

    await client.wait_job(await client.resize_instances(ids, cpu=4, memory=8192), **WAIT)
    resized = await client.describe_instances(ids)
    assert {(i.status, i.vcpus_current, i.memory_current) for i in resized} == {
        ("stopped", 4, 8192)
    }

    await client.wait_job(await client.start_instances(ids), **WAIT)
    assert {i.status for i in await client.describe_instances(ids)} == {"running"}

    restart = await client.wait_job(await client.restart_instances(ids), **WAIT)
    assert restart.job_action == "RestartInstances"
    assert {i.status for i in await client.describe_instances(ids)} == {"running"}

    await client.wait_job(await client.terminate_instances(ids), **WAIT)
    assert {i.status for i in await client.describe_instances(ids)} == {"terminated"}
    assert await client.describe_instances(status=["running"]) == []


async def test_volumes_create_attach_detach_resize_delete(client: QingCloudClient) -> None:
    (instance_id, _) = await run_two(client)
    created = await client.create_volumes(size=20, volume_name="db-data", count=1)
    await client.wait_job(created.job_id, **WAIT)
    (volume_id,) = created.ids
    assert [(v.status, v.size) for v in await client.describe_volumes([volume_id])] == [
        ("available", 20)
    ]

    await client.wait_job(await client.attach_volumes([volume_id], instance_id), **WAIT)
    (attached,) = await client.describe_volumes([volume_id])
    assert (attached.status, attached.instance_id) == ("in-use", instance_id)
    assert [v.volume_id for v in await client.describe_volumes(instance_id=instance_id)] == [
        volume_id
    ]
    (instance,) = await client.describe_instances([instance_id])
    assert instance.volume_ids == [volume_id]

    await client.wait_job(await client.detach_volumes([volume_id], instance_id), **WAIT)
    await client.wait_job(await client.resize_volumes([volume_id], 40), **WAIT)
    (detached,) = await client.describe_volumes([volume_id])
    assert (detached.status, detached.instance_id, detached.size) == ("available", "", 40)

    await client.wait_job(await client.delete_volumes([volume_id]), **WAIT)
    # Deleted volumes stay visible for a while, as on QingCloud.
    assert [v.status for v in await client.describe_volumes([volume_id])] == ["deleted"]
    assert await client.describe_volumes(status=["available", "in-use"]) == []


async def test_quota_left_counts_what_the_account_holds(
    client: QingCloudClient, qingcloud: QingCloudFake
) -> None:
    before = await client.get_quota_left(["instance", "cpu", "memory"])
    await run_two(client)

    after = await client.get_quota_left(["instance", "cpu", "memory"])

    assert before == {"instance": 20, "cpu": 40, "memory": 81920}
    assert after == {"instance": 18, "cpu": 36, "memory": 81920 - 8192}


async def test_describe_reads_every_page(client: QingCloudClient, qingcloud: QingCloudFake) -> None:
    qingcloud.quota["instance"] = 300
    qingcloud.quota["cpu"] = 300
    qingcloud.quota["memory"] = 300 * 1024
    ids: list[str] = []
    for _ in range(3):
        accepted = await client.run_instances(
            image_id="bionic1x64",
            instance_type="c1m1",
            count=90,
            login_mode="passwd",
            login_passwd="Passw0rd-long",
        )
        ids.extend(accepted.ids)
        await client.wait_job(accepted.job_id, **WAIT)  # listed once the job has started

    found = await client.describe_instances()

    assert sorted(i.instance_id for i in found) == sorted(ids)
    pages = [r for r in qingcloud.requests if r.action == "DescribeInstances"]
    assert [r.params["offset"] for r in pages] == ["0", "100", "200"]


async def test_a_long_request_goes_as_a_signed_post(
    client: QingCloudClient, qingcloud: QingCloudFake
) -> None:
    script = "#!/bin/sh\n" + "echo 'a fairly long line of role commands'\n" * 200
    accepted = await client.run_instances(
        image_id="centos7x64d",
        instance_type="c1m1",
        login_mode="passwd",
        login_passwd="Passw0rd-long",
        user_data=UserData(script),
    )
    await client.wait_job(accepted.job_id, **WAIT)

    (run,) = [r for r in qingcloud.requests if r.action == "RunInstances"]
    assert run.method == "POST"
    assert [i.userdata for i in qingcloud.instances()] == [script]


async def test_empty_id_lists_are_refused_before_any_call(
    client: QingCloudClient, qingcloud: QingCloudFake
) -> None:
    with pytest.raises(ValueError, match="at least one"):
        await client.stop_instances([])
    assert qingcloud.hits == 0
