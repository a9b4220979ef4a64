"""The aws provider's VM tasks run directly against moto's server, as a worker runs them: a
redelivered task converges instead of making things twice, a node whose instance ended is
launched anew, and a create costs a known number of EC2 calls."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from openpitrix.providers.aws.vm import client_token
from openpitrix.providers.base import ProviderError
from openpitrix.providers.registry import load_providers
from tests.support.aws import OPEN, MotoAws
from tests.support.aws_vm import ZONE, aws_shop_package, in_cloud, ssm, volumes_of
from tests.support.ssm_fake import failing_ssm
from tests.support.vm_tasks import TaskRunner
from tests.support.vmpackages import VmPackageSpec, build_vm_package

CLUSTER = "cl-awstasks1"


def provider() -> Any:
    return load_providers()["aws"]  # through the entry point, as the server loads it


def runner_for(
    moto: MotoAws, web_image: str, image_id: str | None, endpoint_url: str = ""
) -> TaskRunner:
    """A runner for CLUSTER on moto (or a proxy in front of it at `endpoint_url`), the shop
    package's web role on `web_image`, the credential's default image `image_id`."""
    content = json.loads(moto.content())
    if image_id is not None:
        content["image_id"] = image_id
    aws = provider()
    return TaskRunner(
        aws,
        aws.parse_credential(json.dumps(content), endpoint_url or moto.url),
        build_vm_package(aws_shop_package(web_image)),
        cluster_id=CLUSTER,
        zone=ZONE,
        policy=OPEN,
    )


async def test_a_launch_run_twice_makes_each_instance_once(moto: MotoAws, image_id: str) -> None:
    runner = runner_for(moto, image_id, image_id)
    await runner.run("render_spec")
    assert (await runner.run("launch"))["launched"] == 3
    first = {k: v["instance_id"] for k, v in in_cloud(moto, CLUSTER).items()}
    assert sorted(first) == ["db-1", "web-1", "web-2"]
    # Redelivered (the worker died after EC2 accepted): found by tags, nothing made.
    again = await runner.run("launch")
    assert (again["launched"], again["found"]) == (0, 3)
    assert again["cloud_calls"] == {"ec2:DescribeInstances": 1}  # one look, no launch
    assert {k: v["instance_id"] for k, v in in_cloud(moto, CLUSTER).items()} == first
    assert (await runner.run("await_running"))["running"] == 3
    # The data volume came with the launch: attaching finds it on its instance.
    attached = await runner.run("attach_volumes")
    assert (attached["attached"], attached["volumes"]) == (0, 1)
    assert len(volumes_of(moto, CLUSTER)) == 1
    survey = await runner.run("survey")
    assert [(n["node_id"], n["status"], n["volume_size"]) for n in survey["nodes"]] == [
        ("db-1", "running", 10),
        ("web-1", "running", 0),
        ("web-2", "running", 0),
    ]


async def test_a_node_whose_instance_ended_is_launched_anew_with_a_new_token(
    moto: MotoAws, image_id: str
) -> None:
    runner = runner_for(moto, image_id, image_id)
    await runner.run("render_spec")
    await runner.run("launch")
    lost = in_cloud(moto, CLUSTER)["web-1"]["instance_id"]
    async with moto.client() as client:
        await client.terminate_instances([lost])
        with pytest.raises(ProviderError) as info:
            await runner.run("await_running")
        assert info.value.code == "instance_lost"
        relaunched = await runner.run("launch")
        assert (relaunched["launched"], relaunched["found"]) == (1, 2)
        again = in_cloud(moto, CLUSTER)["web-1"]["instance_id"]
        assert again != lost
        [made] = await client.find_instances(instance_ids=[again])
        [ended] = await client.find_instances(instance_ids=[lost], states=("terminated",))
    # The new launch's client token is the node's next generation, so AWS (which answers a
    # token with its first launch, even ended) makes a new instance.
    assert ended.tags["openpitrix:client-token"] == client_token(CLUSTER, "web-1", 0)
    assert made.tags["openpitrix:client-token"] == client_token(CLUSTER, "web-1", 1)
    assert (await runner.run("await_running"))["running"] == 3


async def test_without_an_ami_the_launch_says_which_is_needed(moto: MotoAws, image_id: str) -> None:
    runner = runner_for(moto, image_id, None)  # the db role names no AMI, the credential none
    await runner.run("render_spec")
    with pytest.raises(ProviderError) as info:
        await runner.run("launch")
    assert info.value.code == "image_required"
    assert "db-1" in info.value.message and "image_id" in info.value.message


async def test_a_create_costs_a_known_number_of_ec2_calls(
    moto: MotoAws, image_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    runner = runner_for(moto, image_id, image_id)
    await runner.run("render_spec")
    with caplog.at_level(logging.INFO, logger="openpitrix.providers.aws.provider"):
        launched = await runner.run("launch")
    # One look at the cluster's instances, one at its ended ones (for the tokens' generation);
    # per node a look for its token's tag, and the launch.
    assert launched["cloud_calls"] == {
        "ec2:DescribeInstances": 2 + 3,
        "ec2:RunInstances": 3,
    }
    assert any("aws cloud calls" in r.getMessage() for r in caplog.records)


async def test_a_missing_data_volume_is_made_and_attached(moto: MotoAws, image_id: str) -> None:
    # Launch gives the db node its volume; a node without one (web-1 here) gets one made by
    # CreateVolume and attached at /dev/sdf, after which the cluster's volumes list it.
    runner = runner_for(moto, image_id, image_id)
    await runner.run("render_spec")
    await runner.run("launch")
    await runner.run("await_running")
    web1 = in_cloud(moto, CLUSTER)["web-1"]["instance_id"]
    told: list[str] = []

    async def progress(message: str) -> None:
        told.append(message)

    cloud = runner.provider.open_cloud(runner.credential, ZONE, OPEN)
    try:
        made = await cloud.create_volume(CLUSTER, "web-1", 5)
        await cloud.attach([made.volume_id], web1, progress)
        await cloud.attach([made.volume_id], web1, progress)  # attached already: nothing
        volumes = {v.node_id: v for v in await cloud.volumes(CLUSTER)}
    finally:
        await cloud.close()
    assert told == [f"EBS volume {made.volume_id} attaching to {web1}"]
    assert sorted(volumes) == ["db-1", "web-1"]
    assert (volumes["web-1"].volume_id, volumes["web-1"].instance_id) == (made.volume_id, web1)
    assert volumes["web-1"].size == 5
    assert in_cloud(moto, CLUSTER)["web-1"]["volume_size"] == 5


def _package_with_services(web_image: str) -> bytes:
    """The shop package whose web role also has scale_in and stop, and its db role stop, the
    db's stop first (`order` 1 before 2)."""
    spec = aws_shop_package(web_image)
    web = '"scale_out": {"cmd": "echo never at boot"}'
    db = '"services": {"init": {"cmd": "mkfs.ext4 /dev/vdb"}}'
    assert web in spec.template and db in spec.template
    template = spec.template.replace(
        web,
        web + ', "scale_in": {"cmd": "echo web scale in", "timeout": 120}'
        ', "stop": {"cmd": "echo web stop", "order": 2}',
    ).replace(
        db,
        '"services": {"init": {"cmd": "mkfs.ext4 /dev/vdb"}, '
        '"stop": {"cmd": "echo db stop", "order": 1}}',
    )
    return build_vm_package(VmPackageSpec(spec.package, spec.config, template))


async def test_services_run_through_ssm_on_the_right_nodes_in_order(
    moto: MotoAws, image_id: str
) -> None:
    runner = runner_for(moto, image_id, image_id)
    runner.package = _package_with_services(image_id)
    await runner.run("render_spec")
    await runner.run("launch")
    await runner.run("await_running")
    await runner.run("survey")
    ids = {k: v["instance_id"] for k, v in in_cloud(moto, CLUSTER).items()}

    # delete_nodes of web-2: web's stop on web-2, then web's scale_in on web-1 (db loses none).
    runner.reports.clear()
    done = await runner.run("services", {"node_ids": ["web-2"], "services": ["stop", "scale_in"]})
    assert (done["ran"], done["skipped"]) == (2, 0)
    ran = runner.ran()
    assert ran == [
        "ran stop of web on web-2 through SSM",
        "ran scale_in of web on web-1 through SSM",
    ]
    sent = [d["instances"] for m, _, d in runner.reports if m.startswith("ran ")]
    assert sent == [[ids["web-2"]], [ids["web-1"]]]
    commands = ssm(moto).list_commands()["Commands"]
    scripts = {c["Parameters"]["commands"][0].rsplit("\n", 2)[-2]: c for c in commands}
    assert set(scripts) == {"echo web stop", "echo web scale in"}
    assert scripts["echo web scale in"]["Parameters"]["executionTimeout"] == ["120"]
    assert scripts["echo web stop"]["Parameters"]["executionTimeout"] == ["600"]

    # delete (or stop, cease): stop on every running node, role by role in `order`: db first.
    runner.reports.clear()
    await runner.run("services", {"services": ["stop"]})
    ran = runner.ran()
    assert ran == [
        "ran stop of db on db-1 through SSM",
        "ran stop of web on web-1, web-2 through SSM",
    ]


async def test_a_failing_scale_in_fails_the_task_naming_the_service_role_command_and_node(
    moto: MotoAws, image_id: str
) -> None:
    with failing_ssm(moto) as proxy:
        runner = runner_for(moto, image_id, image_id, proxy.url)
        runner.package = _package_with_services(image_id)
        for action in ("render_spec", "launch", "await_running", "survey"):
            await runner.run(action)
        ids = {k: v["instance_id"] for k, v in in_cloud(moto, CLUSTER).items()}
        # web's scale_in fails on web-1, the node that stays when web-2 goes.
        proxy.fail_commands(
            "echo web scale in", instance_ids={ids["web-1"]}, exit_code=2, stdout="refused"
        )
        runner.reports.clear()
        with pytest.raises(ProviderError) as info:
            await runner.run("services", {"node_ids": ["web-2"], "services": ["stop", "scale_in"]})
    assert info.value.code == "command_failed"
    assert info.value.message.startswith(
        f"scale_in of web failed on web-1 ({ids['web-1']}): `echo web scale in`: SSM command "
    ), info.value.message
    assert info.value.message.endswith(f"on {ids['web-1']}: Failed (exit 2): refused")
    # The leaving node's stop ran before; the failed scale_in is not reported as run.
    ran = runner.ran()
    assert ran == ["ran stop of web on web-2 through SSM"]
    # Nothing was terminated: that is the next task's, which a failed job never reaches.
    assert sorted(in_cloud(moto, CLUSTER)) == ["db-1", "web-1", "web-2"]
