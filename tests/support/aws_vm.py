"""Client-side helpers for VM clusters on AWS (moto's server): the shop VM package with the web
role on an AMI of its own, a served repo of it for aws runtimes, a runtime on an availability
zone of moto's region, and moto's instances and volumes of a cluster by node id (read with
boto3, as anyone would read EC2)."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import boto3
import httpx

from tests.conftest import unique
from tests.helpers import create_repo, wait_job
from tests.support.aws import ACCESS_KEY_ID, SECRET_ACCESS_KEY, MotoAws
from tests.support.deployments import versions
from tests.support.qingcloud_vm import shop_package
from tests.support.vmpackages import VmPackageSpec, write_vm_index

ZONE = "us-east-1a"


def aws_shop_package(
    web_image: str, version: str = "1.0.0", spec: VmPackageSpec | None = None
) -> VmPackageSpec:
    """The qingcloud shop package (two web nodes, one db node with a 10 GiB volume), or
    `spec` (a variant of it), its web role booting `web_image` (an AMI id); the db role names
    no AMI."""
    spec = spec or shop_package(version)
    template = spec.template.replace('"image": "bionic1x64"', f'"image": "{web_image}"')
    assert template != spec.template
    return VmPackageSpec(spec.package, spec.config, template)


def write_aws_shop_repo(repo_dir: Path, web_image: str, spec: VmPackageSpec | None = None) -> None:
    write_vm_index(repo_dir, [aws_shop_package(web_image, spec=spec)])


def aws_content(moto: MotoAws, image_id: str) -> str:
    return json.dumps({**json.loads(moto.content()), "image_id": image_id})


async def prepare_aws_runtime(
    client: httpx.AsyncClient,
    moto: MotoAws,
    repo_url: str,
    image_id: str,
    endpoint_url: str | None = None,
) -> dict[str, Any]:
    """A repo of VM apps for aws runtimes, indexed; a credential for moto (at `endpoint_url`,
    a proxy in front of it, if given) whose default image is `image_id`; a runtime on ZONE.
    Returns {"runtime", "credential_id", "versions"}."""
    repo = await create_repo(client, unique(), repo_url, providers=["aws"])
    assert (await wait_job(client, repo["index_job_id"]))["status"] == "successful"
    cred = await client.post(
        "/v1/runtime-credentials",
        json={
            "name": unique("c"),
            "provider": "aws",
            "endpoint_url": endpoint_url or moto.url,
            "content": aws_content(moto, image_id),
        },
    )
    assert cred.status_code == 201, cred.text
    runtime = await client.post(
        "/v1/runtimes",
        json={"name": unique("rt"), "credential_id": cred.json()["credential_id"], "zone": ZONE},
    )
    assert runtime.status_code == 201, runtime.text
    return {
        "runtime": runtime.json(),
        "credential_id": cred.json()["credential_id"],
        "versions": await versions(client, repo["repo_id"]),
    }


def ec2(moto: MotoAws) -> Any:
    return boto3.client(
        "ec2",
        region_name=moto.region,
        endpoint_url=moto.url,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def ssm(moto: MotoAws) -> Any:
    return boto3.client(
        "ssm",
        region_name=moto.region,
        endpoint_url=moto.url,
        aws_access_key_id=ACCESS_KEY_ID,
        aws_secret_access_key=SECRET_ACCESS_KEY,
    )


def all_instances(moto: MotoAws, cluster_id: str) -> list[dict[str, Any]]:
    """Every instance tagged for the cluster, terminated ones too."""
    answer = ec2(moto).describe_instances(
        Filters=[{"Name": "tag:openpitrix:cluster-id", "Values": [cluster_id]}]
    )
    return [i for r in answer["Reservations"] for i in r["Instances"]]


def in_cloud(moto: MotoAws, cluster_id: str) -> dict[str, dict[str, Any]]:
    """The cluster's instances that are not terminated, by node id, with their data volume."""
    client = ec2(moto)
    found: dict[str, dict[str, Any]] = {}
    for inst in all_instances(moto, cluster_id):
        if inst["State"]["Name"] in ("shutting-down", "terminated"):
            continue
        tags = {t["Key"]: t["Value"] for t in inst.get("Tags", [])}
        data = next(
            (
                m["Ebs"]["VolumeId"]
                for m in inst.get("BlockDeviceMappings", [])
                if m["DeviceName"] == "/dev/sdf"
            ),
            "",
        )
        size = client.describe_volumes(VolumeIds=[data])["Volumes"][0]["Size"] if data else 0
        user_data = client.describe_instance_attribute(
            InstanceId=inst["InstanceId"], Attribute="userData"
        )["UserData"].get("Value", "")
        found[tags["openpitrix:node-id"]] = {
            "instance_id": inst["InstanceId"],
            "private_ip": inst.get("PrivateIpAddress", ""),
            "status": inst["State"]["Name"],
            "instance_type": inst["InstanceType"],
            "image_id": inst["ImageId"],
            "zone": inst["Placement"]["AvailabilityZone"],
            "tags": tags,
            "userdata": base64.b64decode(user_data).decode() if user_data else "",
            "volume_id": data,
            "volume_size": size,
        }
    return found


def volumes_of(moto: MotoAws, cluster_id: str) -> dict[str, dict[str, Any]]:
    """The cluster's data volumes (tagged for it, not a root volume) by volume id."""
    answer = ec2(moto).describe_volumes(
        Filters=[{"Name": "tag:openpitrix:cluster-id", "Values": [cluster_id]}]
    )
    return {
        v["VolumeId"]: {"state": v["State"], "size": v["Size"]}
        for v in answer["Volumes"]
        if all(a["Device"] == "/dev/sdf" for a in v.get("Attachments", []))
        and v["State"] not in ("deleting", "deleted")
    }
