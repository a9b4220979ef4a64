"""The EC2, STS and SSM calls against moto's server: real HTTP, real signing, through the guard."""

from __future__ import annotations

import base64

import pytest

from openpitrix.providers.aws.client import CLIENT_TOKEN_TAG, AwsClient, InstanceSpec
from openpitrix.providers.aws.errors import AwsError
from openpitrix.providers.base import ProviderError
from tests.support.aws import ACCESS_KEY_ID, MotoAws


def spec_for(image_id: str, node: str, **changes: object) -> InstanceSpec:
    fields: dict[str, object] = {
        "client_token": f"cl-test-{node}",
        "image_id": image_id,
        "instance_type": "t3.micro",
        "zone": "us-east-1a",
        "tags": {"openpitrix:cluster-id": "cl-test", "openpitrix:node-id": node},
        "user_data": "#!/bin/sh\necho started\n",
        "volume_size": 10,
    }
    fields.update(changes)
    return InstanceSpec(**fields)  # type: ignore[arg-type]


async def test_the_caller_identity_names_the_key(aws: AwsClient) -> None:
    identity = await aws.get_caller_identity()

    assert identity.user_id == ACCESS_KEY_ID
    assert identity.account.isdigit()
    assert aws.calls == {"sts:GetCallerIdentity": 1}


async def test_zones_are_the_regions_availability_zones(moto: MotoAws) -> None:
    async with moto.client(region="eu-west-1") as client:
        zones = await client.describe_zones()
        regions = await client.describe_regions()

    assert {z.name for z in zones} >= {"eu-west-1a", "eu-west-1b", "eu-west-1c"}
    assert all(z.name.startswith("eu-west-1") and z.state == "available" for z in zones)
    assert "eu-west-1" in regions and "us-east-1" in regions


async def test_an_instance_is_launched_with_its_tags_volume_and_zone(
    aws: AwsClient, image_id: str
) -> None:
    launched = await aws.run_instance(spec_for(image_id, "db-1"))

    [found] = await aws.find_instances({"openpitrix:node-id": "db-1"})
    assert found.instance_id == launched.instance_id
    assert (found.instance_type, found.zone, found.image_id) == ("t3.micro", "us-east-1a", image_id)
    assert found.tags[CLIENT_TOKEN_TAG] == "cl-test-db-1"
    assert found.private_ip
    [volume] = await aws.describe_volumes([found.volumes["/dev/sdf"]])
    assert (volume.size, volume.volume_type, volume.zone) == (10, "gp3", "us-east-1a")
    assert volume.attachments[0].instance_id == launched.instance_id
    assert volume.tags["openpitrix:node-id"] == "db-1"
    assert [v.volume_id for v in await aws.describe_volumes(instance_id=found.instance_id)] == [
        volume.volume_id
    ]
    user_data = await aws.call(
        "ec2", "DescribeInstanceAttribute", InstanceId=found.instance_id, Attribute="userData"
    )
    assert base64.b64decode(user_data["UserData"]["Value"]) == b"#!/bin/sh\necho started\n"


async def test_moto_does_not_honour_client_tokens_so_ensure_instance_looks_first(
    aws: AwsClient, image_id: str
) -> None:
    spec = spec_for(image_id, "web-1")

    # AWS would answer the second RunInstances with the first launch; moto makes another.
    first = await aws.run_instance(spec)
    second = await aws.run_instance(spec)
    assert first.instance_id != second.instance_id
    await aws.terminate_instances([first.instance_id, second.instance_id])

    other = spec_for(image_id, "web-2")
    made, launched = await aws.ensure_instance(other)
    again, launched_again = await aws.ensure_instance(other)

    assert (launched, launched_again) == (True, False)
    assert again.instance_id == made.instance_id
    assert [i.instance_id for i in await aws.find_instances({"openpitrix:node-id": "web-2"})] == [
        made.instance_id
    ]


async def test_a_create_costs_two_calls_and_a_redelivered_one_costs_one(
    aws: AwsClient, image_id: str
) -> None:
    spec = spec_for(image_id, "app-1")

    await aws.ensure_instance(spec)
    assert aws.calls == {"ec2:DescribeInstances": 1, "ec2:RunInstances": 1}
    await aws.ensure_instance(spec)
    assert aws.calls == {"ec2:DescribeInstances": 2, "ec2:RunInstances": 1}
    assert aws.total_calls == 3


async def test_instances_are_found_by_every_tag_given(aws: AwsClient, image_id: str) -> None:
    a = await aws.run_instance(spec_for(image_id, "n1"))
    b = await aws.run_instance(
        spec_for(image_id, "n1", client_token="other-n1", tags={"openpitrix:cluster-id": "cl-2"})
    )
    c = await aws.run_instance(spec_for(image_id, "n2"))

    mine = await aws.find_instances({"openpitrix:cluster-id": "cl-test"})
    node = await aws.find_instances(
        {"openpitrix:cluster-id": "cl-test", "openpitrix:node-id": "n1"}
    )

    assert {i.instance_id for i in mine} == {a.instance_id, c.instance_id}
    assert [i.instance_id for i in node] == [a.instance_id]
    assert b.instance_id not in {i.instance_id for i in mine}


async def test_stop_start_and_terminate_move_the_instance_through_its_states(
    aws: AwsClient, image_id: str
) -> None:
    made = await aws.run_instance(spec_for(image_id, "s1"))
    ids = [made.instance_id]

    [stopping] = await aws.stop_instances(ids)
    [stopped] = await aws.find_instances(instance_ids=ids)
    [starting] = await aws.start_instances(ids)
    [running] = await aws.find_instances(instance_ids=ids)
    [terminating] = await aws.terminate_instances(ids)

    assert (stopping.previous, stopped.state) == ("running", "stopped")
    assert (starting.previous, running.state) == ("stopped", "running")
    assert terminating.current in ("shutting-down", "terminated")
    # Terminated instances linger in AWS's answers; the live ones are what a cluster has.
    assert await aws.find_instances({"openpitrix:node-id": "s1"}) == []
    gone = await aws.find_instances({"openpitrix:node-id": "s1"}, states=("terminated",))
    assert [i.instance_id for i in gone] == ids


async def test_a_stopped_instance_changes_type(aws: AwsClient, image_id: str) -> None:
    made = await aws.run_instance(spec_for(image_id, "r1"))
    await aws.stop_instances([made.instance_id])

    await aws.modify_instance_type(made.instance_id, "m5.large")

    [found] = await aws.find_instances(instance_ids=[made.instance_id])
    assert (found.instance_type, found.state) == ("m5.large", "stopped")


async def test_a_volume_grows_once_and_a_second_grow_changes_nothing(
    aws: AwsClient, image_id: str
) -> None:
    made = await aws.run_instance(spec_for(image_id, "v1"))
    volume_id = made.volumes["/dev/sdf"]

    grown = await aws.grow_volume(volume_id, 20)
    calls_before = aws.calls["ec2:ModifyVolume"]
    again = await aws.grow_volume(volume_id, 20)
    smaller = await aws.grow_volume(volume_id, 5)

    assert (grown, again, smaller) == (True, False, False)
    assert aws.calls["ec2:ModifyVolume"] == calls_before == 1
    [volume] = await aws.describe_volumes([volume_id])
    assert volume.size == 20


async def test_tags_are_added_to_an_instance(aws: AwsClient, image_id: str) -> None:
    made = await aws.run_instance(spec_for(image_id, "t1"))

    await aws.create_tags([made.instance_id], {"openpitrix:owner": "usr-1"})

    [found] = await aws.find_instances({"openpitrix:owner": "usr-1"})
    assert found.instance_id == made.instance_id


async def test_an_unknown_image_is_refused_with_awss_code(aws: AwsClient) -> None:
    with pytest.raises(AwsError) as info:
        await aws.run_instance(spec_for("ami-0123456789abcdef0", "x1"))

    assert (info.value.code, info.value.aws_code) == (
        "cloud_resource_not_found",
        "InvalidAMIID.NotFound",
    )
    assert "InvalidAMIID.NotFound" in info.value.message
    assert not info.value.retryable
    assert await aws.find_instances({"openpitrix:node-id": "x1"}) == []


async def test_an_image_is_described_by_id(aws: AwsClient, image_id: str) -> None:
    [image] = await aws.describe_images([image_id])

    assert (image.image_id, image.state) == (image_id, "available")


async def test_a_service_command_runs_through_ssm(aws: AwsClient, image_id: str) -> None:
    made = await aws.run_instance(spec_for(image_id, "c1"))

    command_id = await aws.send_command(
        [made.instance_id], ["echo init", "echo start"], comment="init db"
    )
    invocation = await aws.get_command_invocation(command_id, made.instance_id)

    # moto records the command and answers Success at once; it runs nothing.
    assert (invocation.status, invocation.response_code, invocation.done) == ("Success", 0, True)
    assert aws.calls["ssm:SendCommand"] == aws.calls["ssm:GetCommandInvocation"] == 1


async def test_instance_types_report_their_vcpus(aws: AwsClient) -> None:
    assert await aws.describe_instance_types(["m5.xlarge", "c5.2xlarge"]) == {
        "m5.xlarge": 4,
        "c5.2xlarge": 8,
    }


async def test_without_an_ec2_quota_the_limit_falls_back_to_max_instances(aws: AwsClient) -> None:
    limit = await aws.vcpu_limit()

    # moto's Service Quotas knows no EC2 quota: one refused call, then EC2's attribute.
    assert (limit.value, limit.unit, limit.source) == (20, "instances", "account-attributes")
    assert aws.calls == {
        "service-quotas:GetServiceQuota": 1,
        "ec2:DescribeAccountAttributes": 1,
    }


async def test_a_call_botocore_refuses_before_sending_is_not_counted(aws: AwsClient) -> None:
    with pytest.raises(ProviderError) as info:
        await aws.call("ssm", "GetCommandInvocation", CommandId="short", InstanceId="i-0")

    assert info.value.code == "cloud_error"
    assert "CommandId" in info.value.message
    assert aws.total_calls == 0
