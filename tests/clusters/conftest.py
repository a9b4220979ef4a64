"""Fixtures for cluster tests (the fake `kube` and `shop_repo` are in tests/conftest.py), and
the VM clouds: moto's AWS server (one for the session, reset for each test) and the fake
QingCloud (one per test)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.aws import MotoAws, running_moto
from tests.support.aws_vm import ec2
from tests.support.deployments import prepare_runtime
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube
from tests.support.qingcloud_fake import QingCloudFake, running_fake
from tests.support.qingcloud_vm import prepare_qingcloud_runtime, write_shop_repo


@pytest.fixture
async def setup(client: httpx.AsyncClient, kube: FakeKube, shop_repo: RepoServer) -> dict[str, Any]:
    """An indexed shop repo and an env=prod runtime on the fake (see prepare_runtime)."""
    return await prepare_runtime(client, kube, shop_repo.url)


# --- VM clouds: moto's AWS server and the fake QingCloud ------------------------------------


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoAws]:
    with running_moto() as server:
        yield server


@pytest.fixture(scope="session")
def images(moto_server: MotoAws) -> tuple[str, str]:
    """Two x86_64 AMIs moto knows (it loads the same ones after every reset)."""
    answer = ec2(moto_server).describe_images(Owners=["amazon"])
    found = sorted(i["ImageId"] for i in answer["Images"] if i["Architecture"] == "x86_64")
    return found[0], found[1]


@pytest.fixture
def moto(moto_server: MotoAws) -> MotoAws:
    moto_server.reset()
    return moto_server


@pytest.fixture
def qingcloud() -> Iterator[QingCloudFake]:
    with running_fake(job_delay=0.02) as fake:
        yield fake


@pytest.fixture
async def qingcloud_vm(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, repo_dir: Path, repo_server: RepoServer
) -> dict[str, Any]:
    """A repo of VM apps, indexed, and a qingcloud runtime on the fake (see
    prepare_qingcloud_runtime)."""
    write_shop_repo(repo_dir)
    return await prepare_qingcloud_runtime(client, qingcloud, repo_server.url)
