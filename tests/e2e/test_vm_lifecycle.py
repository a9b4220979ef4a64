"""The VM lifecycle through real processes: the gateway and the workers are child processes
that find the test cloud provider only through its entry point (its metadata and module are
on their PYTHONPATH, as an installed package's would be on their sys.path)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.procs import Processes
from tests.support import vm_scenarios as scenarios
from tests.support.http_repo import RepoServer
from tests.support.vm import make_cloud, prepare_vm_runtime

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(240)
async def test_a_vm_cluster_lives_through_the_split_processes(
    procs: Processes, shop_repo: RepoServer, tmp_path: Path
) -> None:
    cloud = make_cloud(tmp_path)
    api, _, _ = await asyncio.gather(
        procs.api(),
        procs.worker(managers=["repo-indexer", "repo-manager", "job-manager"]),
        procs.worker(managers=["task-manager"]),
    )
    async with procs.http(api) as http:
        vm = await prepare_vm_runtime(http, cloud, shop_repo.url)
        await scenarios.lifecycle(http, cloud, vm)
