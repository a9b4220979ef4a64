"""The per-runtime cap: at most `worker.runtime_concurrency` job tasks run against one runtime at
once, across jobs; the others wait in order and start as running ones end."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import pytest

from openpitrix.settings import Settings
from tests.helpers import read_sse, wait_job, when
from tests.support.deployments import deploy, task_reaches
from tests.support.kube import FakeKube


@pytest.fixture
def settings(settings: Settings) -> Settings:
    worker = settings.worker.model_copy(update={"runtime_concurrency": 1})
    return settings.model_copy(update={"worker": worker})


async def _tasks(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = (await client.get(f"/v1/jobs/{job_id}")).json()["tasks"]
    return tasks


async def _occupy(client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]) -> str:
    """Deploy a cluster whose workloads stay unready: its wait task holds the runtime's one
    slot until `_release` lets it finish. Returns its job id."""
    kube.auto_ready = False
    first = await deploy(client, setup, "shop@1.0.0")
    await task_reaches(client, first["job_id"], "wait")
    return str(first["job_id"])


def _release(kube: FakeKube, setup: dict[str, Any]) -> None:
    """Make every workload of the runtime ready, now and from now on."""
    kube.auto_ready = True
    ns = setup["runtime"]["zone"]
    for deployment in kube.objects("Deployment", ns):
        kube.make_ready(ns, "Deployment", deployment["metadata"]["name"])


async def test_tasks_beyond_a_runtimes_cap_wait_their_turn(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    first = await _occupy(client, kube, setup)
    # The runtime's one slot is taken by the first job's wait: the next two jobs queue.
    later = [await deploy(client, setup, "shop@1.0.0") for _ in range(2)]
    await asyncio.sleep(2)
    for made in later:
        tasks = await _tasks(client, made["job_id"])
        assert tasks and all(t["status"] == "pending" for t in tasks), tasks
        events = await read_sse(client, f"/v1/jobs/{made['job_id']}/events", max_events=3)
        waiting = [e["data"]["message"] for e in events if "waiting" in e["data"]["message"]]
        runtime_id = setup["runtime"]["runtime_id"]
        assert waiting == [f"waiting for a free slot on {runtime_id} (at most 1 tasks at once)"]

    _release(kube, setup)
    spans = []
    for job_id in [first, *(m["job_id"] for m in later)]:
        job = await wait_job(client, job_id)
        assert job["status"] == "successful", job
        spans += [(when(t["start_time"]), when(t["end_time"])) for t in job["tasks"]]
    # One at a time: no two tasks on the runtime overlapped.
    spans.sort()
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans
    # Each job waited for the ones submitted before it.
    ends = [(await client.get(f"/v1/jobs/{m['job_id']}")).json()["end_time"] for m in later]
    assert when(ends[0]) <= when(ends[1])


async def test_a_job_cancelled_while_queued_gives_its_place_back(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    first = await _occupy(client, kube, setup)
    queued = await deploy(client, setup, "shop@1.0.0")
    events = await read_sse(client, f"/v1/jobs/{queued['job_id']}/events", max_events=3)
    assert any("waiting for a free slot" in e["data"]["message"] for e in events), events
    cancel = await client.post(f"/v1/jobs/{queued['job_id']}/actions/cancel")
    assert cancel.status_code == 202, cancel.text
    job = await wait_job(client, queued["job_id"])
    assert job["status"] == "cancelled"
    assert {t["status"] for t in job["tasks"]} == {"cancelled"}

    _release(kube, setup)
    assert (await wait_job(client, first))["status"] == "successful"
    # Nothing holds the runtime's one slot any more: the next deploy runs through.
    later = await deploy(client, setup, "shop@1.0.0")
    assert (await wait_job(client, later["job_id"], timeout=30))["status"] == "successful"
