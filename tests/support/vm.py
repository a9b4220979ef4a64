"""Client-side helpers for clusters on the test cloud (the VM provider plugin of
tests/support/testcloud, installed through its entry point by tests/conftest.py)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
from openpitrix_testcloud.cloud import Cloud

from tests.conftest import unique
from tests.helpers import create_repo, wait_job
from tests.support.deployments import versions

ACCESS_KEY, SECRET_KEY = "ak-test", "sk-test"


def make_cloud(root: Path) -> Cloud:
    """A cloud of its own, with one account and two zones."""
    (root / "cloud").mkdir(parents=True, exist_ok=True)
    return Cloud.create(
        root / "cloud" / "cloud.sqlite",
        accounts={ACCESS_KEY: SECRET_KEY},
        zones=["zone-a", "zone-b"],
    )


def credential_of(cloud: Cloud, secret_key: str = SECRET_KEY) -> str:
    return json.dumps(
        {"cloud": str(cloud.path), "access_key": ACCESS_KEY, "secret_key": secret_key}
    )


def instances(cloud: Cloud, zone: str, cluster_id: str) -> dict[str, dict[str, Any]]:
    """The cluster's instances as the cloud holds them, by node name."""
    return {i["name"]: i for i in cloud.instances((ACCESS_KEY, SECRET_KEY), zone, cluster_id)}


@contextmanager
def cloud_held(cloud: Cloud) -> Iterator[None]:
    """Hold the cloud's write lock: every call to it waits until the block ends, so a job
    that calls it cannot end meanwhile."""
    db = sqlite3.connect(cloud.path, isolation_level=None)
    try:
        db.execute("BEGIN EXCLUSIVE")
        yield
        db.execute("COMMIT")
    finally:
        db.close()


async def prepare_vm_runtime(
    client: httpx.AsyncClient, cloud: Cloud, repo_url: str
) -> dict[str, Any]:
    """A repo for testcloud runtimes, indexed; a credential for the cloud; a runtime on its
    zone-a. Returns {"runtime": .., "credential_id": .., "versions": {"shop@1.0.0": id, ..}}."""
    repo = await create_repo(client, unique(), repo_url, providers=["testcloud"])
    assert (await wait_job(client, repo["index_job_id"]))["status"] == "successful"
    cred = await client.post(
        "/v1/runtime-credentials",
        json={"name": unique("c"), "provider": "testcloud", "content": credential_of(cloud)},
    )
    assert cred.status_code == 201, cred.text
    runtime = await client.post(
        "/v1/runtimes",
        json={
            "name": unique("rt"),
            "credential_id": cred.json()["credential_id"],
            "zone": "zone-a",
        },
    )
    assert runtime.status_code == 201, runtime.text
    return {
        "runtime": runtime.json(),
        "credential_id": cred.json()["credential_id"],
        "versions": await versions(client, repo["repo_id"]),
    }
