"""The per-runtime cap: at most `worker.runtime_concurrency` job tasks act on one runtime at
once, across jobs; the others wait in order and start as running ones end, or as a running one
only watches (a readiness wait gives its slot back)."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import httpx
import pytest
from sqlmodel import col, select

from openpitrix.db.engine import Database
from openpitrix.jobs.models import Task
from openpitrix.settings import Settings
from tests.helpers import read_sse, wait_job, when
from tests.support.deployments import deploy, owned, task_reaches
from tests.support.kube import FakeKube


@pytest.fixture
def settings(settings: Settings) -> Settings:
    worker = settings.worker.model_copy(update={"runtime_concurrency": 1})
    return settings.model_copy(update={"worker": worker})


async def _tasks(client: httpx.AsyncClient, job_id: str) -> list[dict[str, Any]]:
    tasks: list[dict[str, Any]] = (await client.get(f"/v1/jobs/{job_id}")).json()["tasks"]
    return tasks


async def _occupy(client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]) -> str:
    """Deploy a cluster whose apply stays in the middle of its writes: it holds the runtime's
    one slot until `_release` lets the cluster answer. Returns its job id."""
    kube.hold_writes()
    first = await deploy(client, setup, "shop@1.0.0")
    await task_reaches(client, first["job_id"], "apply")
    return str(first["job_id"])


def _release(kube: FakeKube) -> None:
    kube.release_writes()


async def _slot_of(db: Database, job_id: str, action: str) -> tuple[str, str]:
    """(status, slot mark) of the job's `action` task, as the database has it."""
    async with db.read_session() as session:
        row = (
            await session.execute(
                select(col(Task.status), col(Task.slot)).where(
                    col(Task.job_id) == job_id, col(Task.action) == action
                )
            )
        ).one()
    return str(row[0]), str(row[1])


def _acting_spans(job: dict[str, Any]) -> list[tuple[Any, Any]]:
    """Start and end of the job's tasks that act on the runtime (all but the readiness wait)."""
    return [
        (when(t["start_time"]), when(t["end_time"])) for t in job["tasks"] if t["action"] != "wait"
    ]


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

    _release(kube)
    spans = []
    for job_id in [first, *(m["job_id"] for m in later)]:
        job = await wait_job(client, job_id)
        assert job["status"] == "successful", job
        spans += _acting_spans(job)
    # One at a time: no two tasks acting on the runtime overlapped.
    assert len(spans) == 3 * 5
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

    _release(kube)
    assert (await wait_job(client, first))["status"] == "successful"
    # Nothing holds the runtime's one slot any more: the next deploy runs through.
    later = await deploy(client, setup, "shop@1.0.0")
    assert (await wait_job(client, later["job_id"], timeout=30))["status"] == "successful"


async def test_a_deploy_waiting_for_readiness_leaves_the_runtime_to_other_deploys(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any], db: Database
) -> None:
    """A rollout that does not become ready keeps its job waiting, not the runtime: with one
    slot, a second deploy renders, applies and finishes while the first still waits."""
    kube.auto_ready = False
    ns = setup["runtime"]["zone"]
    first = await deploy(client, setup, "shop@1.0.0")
    await task_reaches(client, first["job_id"], "wait")
    second = await deploy(client, setup, "shop@1.0.0")
    await task_reaches(client, second["job_id"], "wait")
    # The first's wait gave its slot back: that is how the second could act at all.
    assert await _slot_of(db, first["job_id"], "wait") == ("working", "free")
    for made in owned(kube, "Deployment", ns, second["cluster_id"]):
        kube.make_ready(ns, "Deployment", made["metadata"]["name"])
    done = await wait_job(client, second["job_id"])
    assert done["status"] == "successful", done
    waiting = (await client.get(f"/v1/jobs/{first['job_id']}")).json()
    assert waiting["status"] == "working"
    assert {t["action"]: t["status"] for t in waiting["tasks"]}["wait"] == "working"

    for made in owned(kube, "Deployment", ns, first["cluster_id"]):
        kube.make_ready(ns, "Deployment", made["metadata"]["name"])
    job = await wait_job(client, first["job_id"])
    assert job["status"] == "successful", job
    # Still one action at a time on the runtime: only the waits overlapped other tasks.
    spans = sorted(_acting_spans(job) + _acting_spans(done))
    assert len(spans) == 10
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end <= start, spans


async def test_a_started_job_goes_on_before_jobs_queued_behind_it_start(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    """Slots go by age: as the first job's apply ends, its next task takes the runtime's one
    slot ahead of the second job's queued render (the second job was planned later), so a
    started job runs on to its end instead of queueing behind every later job's first task."""
    first = await _occupy(client, kube, setup)
    second = await deploy(client, setup, "shop@1.0.0")
    events = await read_sse(client, f"/v1/jobs/{second['job_id']}/events", max_events=3)
    assert any("waiting for a free slot" in e["data"]["message"] for e in events), events
    _release(kube)
    jobs = [await wait_job(client, job_id) for job_id in (first, second["job_id"])]
    assert [j["status"] for j in jobs] == ["successful", "successful"], jobs
    started = [{t["action"]: when(t["start_time"]) for t in j["tasks"]} for j in jobs]
    assert started[0]["wait"] < started[1]["render"], started


class TestOneTaskSlot:
    """One task-manager slot as well as one runtime slot: a task dispatched to the runtime's
    slot can sit in the bus while the task-manager's slot runs another job."""

    @pytest.fixture
    def settings(self, settings: Settings) -> Settings:
        worker = settings.worker.model_copy(update={"task_concurrency": 1})
        return settings.model_copy(update={"worker": worker})

    async def test_a_started_job_takes_back_the_slot_of_a_later_job_not_started(
        self, client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
    ) -> None:
        """The first job's wait gives the runtime's slot back, so the second job's render is
        dispatched with it; but the task-manager's one slot still runs the first job, so the
        render waits in the bus. As the wait ends, the first job's next task takes the slot
        back (the render was not started: it acts on nothing yet), and the render is queued
        again and runs, once, after it."""
        kube.auto_ready = False
        ns = setup["runtime"]["zone"]
        first = await deploy(client, setup, "shop@1.0.0")
        await task_reaches(client, first["job_id"], "wait")
        second = await deploy(client, setup, "shop@1.0.0")
        events = await read_sse(client, f"/v1/jobs/{second['job_id']}/events", max_events=2)
        assert events, "the second job is under way"
        for made in owned(kube, "Deployment", ns, first["cluster_id"]):
            kube.make_ready(ns, "Deployment", made["metadata"]["name"])
        kube.auto_ready = True
        jobs = [await wait_job(client, job_id) for job_id in (first["job_id"], second["job_id"])]
        assert [j["status"] for j in jobs] == ["successful", "successful"], jobs
        started = [{t["action"]: when(t["start_time"]) for t in j["tasks"]} for j in jobs]
        assert started[0]["prune"] < started[1]["render"], started
        assert {t["action"]: t["attempts"] for t in jobs[1]["tasks"]}["render"] == 1
