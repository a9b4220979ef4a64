"""Deploying through real processes: a gateway, a worker for the repo and job managers, a
task-manager worker, nats-server, the database and the fake Kubernetes API server. The same
scenarios as tests/clusters, where everything runs in the test process."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.procs import Processes
from tests.support import cluster_scenarios as scenarios
from tests.support.deployments import prepare_runtime
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube

pytestmark = pytest.mark.e2e


@pytest.mark.timeout(240)
async def test_clusters_deploy_and_live_through_the_split_processes(
    procs: Processes, kube: FakeKube, shop_repo: RepoServer
) -> None:
    api, _, _ = await asyncio.gather(
        procs.api(),
        procs.worker(managers=["repo-indexer", "repo-manager", "job-manager"]),
        procs.worker(managers=["task-manager"]),
    )
    async with procs.http(api) as http:
        setup = await prepare_runtime(http, kube, shop_repo.url)
        await scenarios.ineligible_runtime_is_refused(http, setup)
        await scenarios.lifecycle(http, kube, setup)
        await scenarios.missing_required_value_fails_fast(http, setup)
        await scenarios.failing_image_surfaces_then_retry_succeeds(http, kube, setup)
