"""VM clusters on AWS through the API, with real workers and NATS, against moto's EC2 server:
every lifecycle action checked against moto's instances and volumes (read with boto3) by the
scenario shared with qingcloud (tests/support/vm_cloud_scenarios.py), per-node progress on the
job's stream, EC2's refusals as the job's error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import wait_job
from tests.support.aws import MotoAws
from tests.support.aws_vm import (
    ZONE,
    all_instances,
    ec2,
    in_cloud,
    prepare_aws_runtime,
    ssm,
    volumes_of,
    write_aws_shop_repo,
)
from tests.support.deployments import deploy
from tests.support.http_repo import RepoServer
from tests.support.vm_cloud_scenarios import Nodes, VmCloud, lifecycle
from tests.support.vm_scenarios import cluster_of


@pytest.fixture
def vm_repo(repo_dir: Path, repo_server: RepoServer, images: tuple[str, str]) -> RepoServer:
    write_aws_shop_repo(repo_dir, images[0])
    return repo_server


@pytest.fixture
async def vm(
    client: httpx.AsyncClient, moto: MotoAws, vm_repo: RepoServer, images: tuple[str, str]
) -> dict[str, Any]:
    return await prepare_aws_runtime(client, moto, vm_repo.url, images[1])


class Aws(VmCloud):
    """moto's EC2 and SSM, read with boto3; the web role on images[0], the db on the
    credential's image, images[1]."""

    provider = "aws"
    zone_kind = "availability zone"
    resize_to = (4, 8192)

    def __init__(self, moto: MotoAws, images: tuple[str, str]) -> None:
        self.moto = moto
        self.images = images

    def in_cloud(self, cluster_id: str) -> Nodes:
        return in_cloud(self.moto, cluster_id)

    def volume_ids(self, cluster_id: str) -> list[str]:
        return list(volumes_of(self.moto, cluster_id))

    def instance_count(self) -> int:
        reservations = ec2(self.moto).describe_instances()["Reservations"]
        return sum(len(r["Instances"]) for r in reservations)

    def statuses(self, cluster_id: str, instance_ids: set[str]) -> set[str]:
        ended = {i["InstanceId"]: i["State"]["Name"] for i in all_instances(self.moto, cluster_id)}
        return {ended[i] for i in instance_ids}

    async def stop_outside(self, instance_id: str) -> None:
        ec2(self.moto).stop_instances(InstanceIds=[instance_id])

    def created(self, cluster_id: str, cloud: Nodes, nodes: Nodes) -> None:
        # Sized by the table, imaged as the package and the credential say, tagged.
        assert cloud["db-1"]["volume_id"].startswith("vol-")
        assert {i["zone"] for i in cloud.values()} == {ZONE}
        assert (cloud["web-1"]["instance_type"], cloud["db-1"]["instance_type"]) == (
            "t3.micro",
            "t3.medium",
        )
        assert (cloud["web-1"]["image_id"], cloud["db-1"]["image_id"]) == self.images
        tags = cloud["web-2"]["tags"]
        assert (tags["openpitrix:cluster-id"], tags["openpitrix:role"]) == (cluster_id, "web")
        assert (tags["openpitrix:node-id"], tags["Name"]) == ("web-2", f"{cluster_id}-web-2")
        assert (nodes["web-1"]["cpu"], nodes["web-1"]["memory"]) == (2, 1024)  # t3.micro's

    def stopped(self, cloud: Nodes, messages: list[str]) -> None:
        web1 = cloud["web-1"]["instance_id"]
        assert f"EC2 StopInstances {web1}: running -> stopping" in messages, messages
        assert f"EC2 instance {web1} stopped" in messages

    def resized(self, cloud: Nodes, nodes: Nodes, messages: list[str]) -> None:
        web1 = cloud["web-1"]["instance_id"]
        assert f"web: EC2 instance {web1}: t3.micro -> t3.xlarge" in messages, messages
        assert [(n, cloud[n]["instance_type"]) for n in sorted(cloud)] == [
            ("db-1", "t3.medium"),
            ("web-1", "t3.xlarge"),
            ("web-2", "t3.xlarge"),
        ]
        assert (nodes["web-2"]["cpu"], nodes["web-2"]["memory"]) == (4, 16384)

    def scaled_out(self, cloud: Nodes, messages: list[str]) -> None:
        assert cloud["web-4"]["instance_type"] == "t3.xlarge"
        # The web role's scale_out ran through SSM on the role's other nodes, web-1 and web-2
        # (moto's command lists every instance of the region besides those it was sent to).
        assert "ran scale_out of web on web-1, web-2 through SSM" in messages, messages
        commands = ssm(self.moto).list_commands()["Commands"]
        assert len(commands) == 1, commands
        others = {cloud[n]["instance_id"] for n in ("web-1", "web-2")}
        assert others <= set(commands[0]["InstanceIds"])
        assert commands[0]["DocumentName"] == "AWS-RunShellScript"
        script = commands[0]["Parameters"]["commands"][0]
        assert script.endswith("\necho never at boot\n"), script
        command_id = commands[0]["CommandId"]
        assert f"web scale_out: SSM command {command_id} succeeded on 2 instances" in messages

    def ceased(self, messages: list[str], db_volume: str) -> None:
        assert f"EBS volume {db_volume} deleted" in messages, messages


async def test_an_aws_vm_cluster_goes_through_its_whole_lifecycle(
    client: httpx.AsyncClient, moto: MotoAws, vm: dict[str, Any], images: tuple[str, str]
) -> None:
    await lifecycle(client, vm, Aws(moto, images))


async def test_an_unknown_ami_is_the_jobs_error(
    client: httpx.AsyncClient, moto: MotoAws, vm_repo: RepoServer
) -> None:
    # The credential's default image (the db role's) does not exist: EC2 refuses the launch.
    vm = await prepare_aws_runtime(client, moto, vm_repo.url, "ami-0000000000000000d")
    made = await deploy(client, vm, "shop@1.0.0", values={})
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "failed"
    assert "InvalidAMIID.NotFound" in job["error"]["message"], job["error"]
    assert "RunInstances" in job["error"]["message"], job["error"]
    assert [t["action"] for t in job["tasks"] if t["status"] == "failed"] == ["launch"]
    cluster = await cluster_of(client, made["cluster_id"])
    assert cluster["transition_status"] == "", cluster


async def test_a_region_too_full_fails_the_create_before_anything_is_made(
    client: httpx.AsyncClient, moto: MotoAws, vm: dict[str, Any], images: tuple[str, str]
) -> None:
    # moto has no EC2 vCPU quota: the limit is its max-instances attribute, 20. 18 run.
    ec2(moto).run_instances(ImageId=images[0], MinCount=18, MaxCount=18, InstanceType="t3.micro")
    made = await deploy(client, vm, "shop@1.0.0", values={})
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "failed"
    assert job["error"]["code"] == "insufficient_resources", job["error"]
    assert (
        "3 instances of on-demand standard instances needed, 2 left" in (job["error"]["message"])
    ), job["error"]
    assert [t["action"] for t in job["tasks"] if t["status"] == "failed"] == ["check"]
    assert in_cloud(moto, made["cluster_id"]) == {}
