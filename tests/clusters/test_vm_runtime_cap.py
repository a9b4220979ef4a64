"""The per-runtime cap holds for a VM runtime as for a Kubernetes one: with
`worker.runtime_concurrency` 1, the tasks of several cluster creates on one qingcloud runtime
(the fake QingCloud) run one at a time across the jobs, the later jobs saying they wait for a
free slot, and every job ends."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import httpx
import pytest

from openpitrix.settings import Settings
from tests.helpers import read_sse, wait_job, when
from tests.support.deployments import deploy, task_reaches
from tests.support.http_repo import RepoServer
from tests.support.qingcloud_fake import QingCloudFake
from tests.support.qingcloud_vm import in_cloud, prepare_qingcloud_runtime, write_shop_repo


@pytest.fixture
def settings(settings: Settings) -> Settings:
    worker = settings.worker.model_copy(update={"runtime_concurrency": 1})
    return settings.model_copy(update={"worker": worker})


@pytest.fixture
async def vm(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, repo_dir: Path, repo_server: RepoServer
) -> dict[str, Any]:
    write_shop_repo(repo_dir)
    return await prepare_qingcloud_runtime(client, qingcloud, repo_server.url)


async def test_vm_cluster_tasks_beyond_the_runtimes_cap_wait_their_turn(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, vm: dict[str, Any]
) -> None:
    # The cloud's jobs stay pending: the first create's launch, which waits until QingCloud
    # lists the instances it launched (once their jobs start), holds the runtime's one slot
    # for as long as the test wants.
    qingcloud.pause_jobs()
    first = await deploy(client, vm, "shop@1.0.0", values={})
    await task_reaches(client, first["job_id"], "launch")
    later = [await deploy(client, vm, "shop@1.0.0", values={}) for _ in range(2)]
    runtime_id = vm["runtime"]["runtime_id"]
    for made in later:
        events = await read_sse(client, f"/v1/jobs/{made['job_id']}/events", max_events=3)
        waiting = [e["data"]["message"] for e in events if "waiting" in e["data"]["message"]]
        assert waiting == [f"waiting for a free slot on {runtime_id} (at most 1 tasks at once)"]
        tasks = (await client.get(f"/v1/jobs/{made['job_id']}")).json()["tasks"]
        assert tasks and {t["status"] for t in tasks} == {"pending"}, tasks
    # Nothing of the later clusters reached the cloud while the slot was held.
    assert [in_cloud(qingcloud, m["cluster_id"]) for m in later] == [{}, {}]

    qingcloud.resume_jobs()
    spans = []
    for made in [first, *later]:
        job = await wait_job(client, made["job_id"])
        assert job["status"] == "successful", job
        assert len(job["tasks"]) == 6, job["tasks"]
        spans += [(when(t["start_time"]), when(t["end_time"])) for t in job["tasks"]]
        assert sorted(in_cloud(qingcloud, made["cluster_id"])) == ["db-1", "web-1", "web-2"]
    # One at a time on the runtime: no two tasks of the three jobs overlapped.
    assert len(spans) == 18
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans
