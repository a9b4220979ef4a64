"""Client-side helpers for VM clusters on the fake QingCloud: a VM package built at test time,
a served repo of it for qingcloud runtimes, a runtime on a zone of the fake, and the fake's
instances and volumes of a cluster, by node id."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import unique
from tests.helpers import create_repo, wait_job
from tests.support.deployments import versions
from tests.support.qingcloud_fake import QingCloudFake
from tests.support.vmpackages import VmPackageSpec, write_vm_index

SHOP_TEMPLATE = """
{
    "name": "{{.cluster.name}}",
    "subnet": "{{.cluster.subnet}}",
    "env": {"APP": "shop"},
    "nodes": [
        {
            "role": "web",
            "container": {"type": "kvm", "image": "bionic1x64"},
            "count": "{{.cluster.web.count}}",
            "cpu": 1,
            "memory": 1024,
            "env": {"PORT": "8080"},
            "services": {
                "start": {"cmd": "systemctl start shop-web", "order": 2},
                "init": {"cmd": "mkdir -p /srv/shop", "order": 1},
                "scale_out": {"cmd": "echo never at boot"}
            }
        },
        {
            "role": "db",
            "count": 1,
            "cpu": 2,
            "memory": 4096,
            "volume": {
                "size": "{{.cluster.db.volume_size}}",
                "mount_point": "/data",
                "filesystem": "ext4"
            },
            "services": {"init": {"cmd": "mkfs.ext4 /dev/vdb"}}
        }
    ]
}
"""


def _item(key: str, kind: str, default: Any, **extra: Any) -> dict[str, Any]:
    return {"key": key, "label": key, "description": key, "type": kind, "default": default, **extra}


def shop_package(version: str = "1.0.0") -> VmPackageSpec:
    """A VM app of two roles: two web nodes (no volume), one db node with a 10 GiB volume."""
    cluster = {
        "key": "cluster",
        "description": "shop cluster properties",
        "type": "array",
        "properties": [
            _item("name", "string", "shop", required=False),
            _item("subnet", "string", "", required=False),
            {
                "key": "web",
                "description": "web nodes",
                "type": "array",
                "properties": [_item("count", "integer", 2, min=1, max=10, required=True)],
            },
            {
                "key": "db",
                "description": "db nodes",
                "type": "array",
                "properties": [
                    _item("volume_size", "integer", 10, min=10, max=1000, step=10, required=True)
                ],
            },
        ],
    }
    package = {"api_version": "v1", "name": "shop", "version": version, "app_version": "1.0"}
    return VmPackageSpec(package, {"type": "array", "properties": [cluster]}, SHOP_TEMPLATE)


DEFAULT_DB_PASSWORD = "s3cret-default-pw"


def secret_shop_package(version: str = "1.0.0") -> VmPackageSpec:
    """The shop package with a `password` setting, cluster.db.password, that the template
    renders into the db role's env (DB_PASSWORD) and into its stop command; the web role
    stops too, after the db (`order` 1 before 2)."""
    spec = shop_package(version)
    db = '"services": {"init": {"cmd": "mkfs.ext4 /dev/vdb"}}'
    web = '"scale_out": {"cmd": "echo never at boot"}'
    assert db in spec.template and web in spec.template
    template = spec.template.replace(
        db,
        '"env": {"DB_PASSWORD": "{{.cluster.db.password}}"}, '
        '"services": {"init": {"cmd": "mkfs.ext4 /dev/vdb"}, '
        '"stop": {"cmd": "mysqladmin --password={{.cluster.db.password}} shutdown", '
        '"order": 1}}',
    ).replace(web, web + ', "stop": {"cmd": "echo web stop", "order": 2}')
    config = spec.config
    db_group = next(p for p in config["properties"][0]["properties"] if p["key"] == "db")
    db_group["properties"].append(_item("password", "password", DEFAULT_DB_PASSWORD, required=True))
    return VmPackageSpec(spec.package, config, template)


def write_shop_repo(repo_dir: Path) -> None:
    write_vm_index(repo_dir, [shop_package("1.0.0")])


def credential_of(fake: QingCloudFake, *, secret: str | None = None) -> str:
    return json.dumps(
        {
            "access_key_id": fake.access_key_id,
            "secret_access_key": fake.secret_access_key if secret is None else secret,
        }
    )


async def prepare_qingcloud_runtime(
    client: httpx.AsyncClient, fake: QingCloudFake, repo_url: str, zone: str = "pek3a"
) -> dict[str, Any]:
    """A repo of VM apps for qingcloud runtimes, indexed; a credential for the fake; a runtime
    on one of its zones. Returns {"runtime", "credential_id", "versions"} as prepare_runtime."""
    repo = await create_repo(client, unique(), repo_url, providers=["qingcloud"])
    assert (await wait_job(client, repo["index_job_id"]))["status"] == "successful"
    cred = await client.post(
        "/v1/runtime-credentials",
        json={
            "name": unique("c"),
            "provider": "qingcloud",
            "endpoint_url": fake.url,
            "content": credential_of(fake),
        },
    )
    assert cred.status_code == 201, cred.text
    runtime = await client.post(
        "/v1/runtimes",
        json={"name": unique("rt"), "credential_id": cred.json()["credential_id"], "zone": zone},
    )
    assert runtime.status_code == 201, runtime.text
    return {
        "runtime": runtime.json(),
        "credential_id": cred.json()["credential_id"],
        "versions": await versions(client, repo["repo_id"]),
    }


def in_cloud(fake: QingCloudFake, cluster_id: str) -> dict[str, dict[str, Any]]:
    """The cluster's live instances in the fake, by node id, with their data volume (if any)."""
    prefix = f"{cluster_id}-"
    volumes = {v.instance_id: v for v in fake.volumes() if v.instance_id}
    found: dict[str, dict[str, Any]] = {}
    for inst in fake.instances():
        if not inst.instance_name.startswith(prefix) or inst.status in ("terminated", "ceased"):
            continue
        volume = volumes.get(inst.instance_id)
        found[inst.instance_name.removeprefix(prefix)] = {
            "instance_id": inst.instance_id,
            "private_ip": inst.private_ip,
            "status": inst.status,
            "cpu": inst.vcpus,
            "memory": inst.memory,
            "image_id": inst.image_id,
            "userdata": inst.userdata,
            "volume_id": volume.volume_id if volume else "",
            "volume_size": volume.size if volume else 0,
        }
    return found


def volumes_of(fake: QingCloudFake, cluster_id: str) -> dict[str, dict[str, Any]]:
    """The cluster's volumes that are not deleted, by name."""
    return {
        v.volume_name: {"volume_id": v.volume_id, "status": v.status, "size": v.size}
        for v in fake.volumes()
        if v.volume_name.startswith(f"{cluster_id}-") and v.status not in ("deleted", "ceased")
    }
