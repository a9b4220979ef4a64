"""Cancel and retry in any order, around workers going down: a cluster job always answers, ends,
and gives its cluster and runtime slots back.

The gateway here runs no managers: this process runs them in groups it stops and starts, so a
test can hold a task before it reaches a worker, or take the task-manager down mid-task."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import and_, or_, select
from sqlmodel import col

from openpitrix.bus.topology import TASK_MANAGER
from openpitrix.db.engine import Database
from openpitrix.jobs.models import Task
from openpitrix.managers import build_managers
from openpitrix.platform import Platform
from openpitrix.settings import Settings
from openpitrix.workers.runner import WorkerGroup
from openpitrix.workers.service import WorkerContext
from tests.conftest import LiveServer
from tests.helpers import TERMINAL, assert_error
from tests.support.deployments import deploy, owned, prepare_runtime, task_reaches
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube

OTHER_MANAGERS = ("repo-indexer", "repo-manager", "job-manager")
SEED_ENV = "JOB_CONTROLS_SEED"


class Workers:
    """The managers, one group each, in this process; stopping the task-manager's group is a
    worker going down (its running tasks are given back after a short drain)."""

    def __init__(self, settings: Settings, platform: Platform) -> None:
        self._settings = settings
        self._platform = platform
        self._groups: dict[str, WorkerGroup] = {}

    def _context(self, name: str) -> WorkerContext:
        settings = self._settings
        if name == TASK_MANAGER:
            # Down quickly, as if killed: what runs is cancelled and goes back to the stream.
            worker = settings.worker.model_copy(update={"drain_seconds": 0.3})
            settings = settings.model_copy(update={"worker": worker})
        p = self._platform
        return WorkerContext(
            settings=settings, db=p.db, js=p.js, http=p.http, executor=f"test/{name}"
        )

    async def start(self, *names: str) -> None:
        for name in names:
            if name not in self._groups:
                group = WorkerGroup(self._context(name), build_managers([name]))
                group.start()
                self._groups[name] = group

    async def stop(self, *names: str) -> None:
        for name in names:
            group = self._groups.pop(name, None)
            if group is not None:
                await group.stop()

    async def idle(self, name: str, timeout: float = 15.0) -> None:
        """Wait until the manager has taken every command meant for it (stale ones too)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            info = await self._platform.js.consumer_info(self._settings.bus.commands_stream, name)
            if info.num_pending == 0 and info.num_ack_pending == 0:
                return
            assert asyncio.get_running_loop().time() < deadline, info
            await asyncio.sleep(0.1)

    async def stop_all(self) -> None:
        await self.stop(*list(self._groups))


@pytest.fixture
def cap() -> int:
    """worker.runtime_concurrency of the test (0: no cap)."""
    return 0


@pytest.fixture
def settings(settings: Settings, cap: int) -> Settings:
    worker = settings.worker.model_copy(update={"runtime_concurrency": cap})
    return settings.model_copy(update={"worker": worker})


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[LiveServer]:
    async with LiveServer(settings, run_workers=False) as live:
        yield live


@pytest.fixture
async def workers(settings: Settings) -> AsyncIterator[Workers]:
    """Every manager but the task-manager running; tests start that one when they want it."""
    platform = Platform(settings, role="worker")
    await platform.start(relay=False)
    group = Workers(settings, platform)
    await group.start(*OTHER_MANAGERS)
    try:
        yield group
    finally:
        await group.stop_all()
        await platform.stop()


@pytest.fixture
async def setup(
    client: httpx.AsyncClient, kube: FakeKube, shop_repo: RepoServer, workers: Workers
) -> dict[str, Any]:
    return await prepare_runtime(client, kube, shop_repo.url)


async def job_of(client: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/jobs/{job_id}")
    assert resp.status_code == 200, resp.text
    job: dict[str, Any] = resp.json()
    return job


async def job_reaches(
    client: httpx.AsyncClient, job_id: str, statuses: set[str], timeout: float = 30.0
) -> dict[str, Any]:
    """Poll the job (the run it is in now, unlike a stream that ends at a run's end) until its
    status is one of `statuses`; fail the test if it is not within `timeout` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        job = await job_of(client, job_id)
        if job["status"] in statuses:
            return job
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"job {job_id} not {statuses} in {timeout}s: {job}")
        await asyncio.sleep(0.1)


async def cluster_of(client: httpx.AsyncClient, cluster_id: str) -> dict[str, Any]:
    cluster: dict[str, Any] = (await client.get(f"/v1/clusters/{cluster_id}")).json()
    return cluster


def make_ready(kube: FakeKube, setup: dict[str, Any]) -> None:
    """Every workload of the runtime ready, now and from now on."""
    kube.auto_ready = True
    ns = setup["runtime"]["zone"]
    for deployment in kube.objects("Deployment", ns):
        kube.make_ready(ns, "Deployment", deployment["metadata"]["name"])


async def busy_slots(db: Database, target: str) -> list[tuple[str, str, str, str]]:
    """Tasks holding or waiting for one of the target's slots: running, or pending with a
    slot mark (dispatched or queued)."""
    async with db.read_session() as session:
        rows = await session.execute(
            select(col(Task.job_id), col(Task.action), col(Task.status), col(Task.slot)).where(
                col(Task.target) == target,
                or_(
                    col(Task.status) == "working",
                    and_(col(Task.status) == "pending", col(Task.slot) != ""),
                ),
            )
        )
        return [tuple(r) for r in rows.all()]


async def test_cancel_then_retry_then_cancel_answers_each_time_and_frees_the_cluster(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any], workers: Workers
) -> None:
    await workers.start(TASK_MANAGER)
    kube.auto_ready = False
    made = await deploy(client, setup, "shop@1.0.0")
    job_id, cluster_id = made["job_id"], made["cluster_id"]

    await task_reaches(client, job_id, "wait")
    cancel = await client.post(f"/v1/jobs/{job_id}/actions/cancel")
    assert cancel.status_code == 202, cancel.text
    assert (await job_reaches(client, job_id, TERMINAL))["status"] == "cancelled"
    assert (await cluster_of(client, cluster_id))["transition_status"] == ""

    retry = await client.post(f"/v1/jobs/{job_id}/actions/retry")
    assert retry.status_code == 202, retry.text
    assert (await cluster_of(client, cluster_id))["transition_status"] == "creating"
    await task_reaches(client, job_id, "wait")
    # Asked twice in the second run (the job-manager held back, so both land before the job
    # ends): both are accepted.
    await workers.stop("job-manager")
    for _ in range(2):
        again = await client.post(f"/v1/jobs/{job_id}/actions/cancel")
        assert again.status_code == 202, again.text
    await workers.start("job-manager")
    job = await job_reaches(client, job_id, TERMINAL)
    assert job["status"] == "cancelled", job
    assert {t["action"]: t["status"] for t in job["tasks"]}["wait"] == "cancelled"
    cluster = await cluster_of(client, cluster_id)
    assert (cluster["status"], cluster["transition_status"]) == ("pending", "")
    assert_error(await client.post(f"/v1/jobs/{job_id}/actions/cancel"), 409, "job_ended")

    # The cluster is free: it can be deleted at once.
    make_ready(kube, setup)
    gone = await client.delete(f"/v1/clusters/{cluster_id}")
    assert gone.status_code == 202, gone.text
    assert (await job_reaches(client, gone.json()["job_id"], TERMINAL))["status"] == "successful"


@pytest.mark.parametrize("task_manager_back", ["before the retry", "after the retry"])
async def test_a_job_cancelled_before_its_task_reached_a_worker_runs_when_retried(
    client: httpx.AsyncClient, setup: dict[str, Any], workers: Workers, task_manager_back: str
) -> None:
    # No task-manager: the job-manager dispatches the first task, which waits in the stream.
    made = await deploy(client, setup, "shop@1.0.0")
    job_id, cluster_id = made["job_id"], made["cluster_id"]
    await job_reaches(client, job_id, {"working"})
    cancel = await client.post(f"/v1/jobs/{job_id}/actions/cancel")
    assert cancel.status_code == 202, cancel.text
    job = await job_reaches(client, job_id, TERMINAL)
    assert job["status"] == "cancelled", job
    assert {t["status"] for t in job["tasks"]} == {"cancelled"}

    if task_manager_back == "before the retry":
        # The cancelled task's dispatch reaches the task-manager and is dropped.
        await workers.start(TASK_MANAGER)
        await workers.idle(TASK_MANAGER)
        assert (await job_of(client, job_id))["tasks"][0]["attempts"] == 0
    retry = await client.post(f"/v1/jobs/{job_id}/actions/retry")
    assert retry.status_code == 202, retry.text
    await workers.start(TASK_MANAGER)

    job = await job_reaches(client, job_id, TERMINAL)
    assert job["status"] == "successful", job
    # The first task ran once: the dispatch from before the cancel did not run it again.
    assert next((t["action"], t["attempts"]) for t in job["tasks"]) == ("render", 1)
    cluster = await cluster_of(client, cluster_id)
    assert (cluster["status"], cluster["transition_status"]) == ("active", "")


# Cancel and retry twice as likely as the rest: their interleavings are what is under test.
STEPS = (
    *("cancel", "retry") * 2,
    *("restart task-manager", "stop task-manager", "ready", "pause"),
)


async def _scenario(
    rng: random.Random,
    client: httpx.AsyncClient,
    kube: FakeKube,
    setup: dict[str, Any],
    workers: Workers,
    db: Database,
    trace: list[str],
) -> None:
    kube.auto_ready = rng.random() < 0.5
    if rng.random() < 0.7:
        await workers.start(TASK_MANAGER)
    made = [await deploy(client, setup, "shop@1.0.0") for _ in range(rng.randint(1, 2))]
    trace.append(f"deploy {[m['job_id'] for m in made]} ready={kube.auto_ready}")
    for _ in range(rng.randint(3, 7)):
        step = rng.choice(STEPS)
        job_id = rng.choice(made)["job_id"]
        trace.append(f"{step} {job_id}")
        if step == "cancel":
            resp = await client.post(f"/v1/jobs/{job_id}/actions/cancel")
            if resp.status_code != 202:
                assert_error(resp, 409, "job_ended")
        elif step == "retry":
            resp = await client.post(f"/v1/jobs/{job_id}/actions/retry")
            if resp.status_code != 202:
                assert_error(resp, 409, "job_not_retryable")
        elif step == "restart task-manager":
            await workers.stop(TASK_MANAGER)
            await workers.start(TASK_MANAGER)
        elif step == "stop task-manager":
            await workers.stop(TASK_MANAGER)
        elif step == "ready":
            make_ready(kube, setup)
        # Let the engine move on a random while, so steps land at different points of a job.
        await asyncio.sleep(rng.uniform(0.0, 1.0 if step == "pause" else 0.3))

    await workers.start(TASK_MANAGER)
    make_ready(kube, setup)
    for m in made:
        job = await job_reaches(client, m["job_id"], TERMINAL, timeout=45)
        trace.append(f"{m['job_id']} {job['status']}")
        cluster = await cluster_of(client, m["cluster_id"])
        assert cluster["transition_status"] == "", cluster
        if job["status"] == "successful":
            assert cluster["status"] == "active", cluster
    assert await busy_slots(db, setup["runtime"]["runtime_id"]) == []


@pytest.mark.parametrize("cap", [0, 1])
async def test_any_sequence_of_cancel_retry_and_worker_restarts_ends_and_frees_everything(
    client: httpx.AsyncClient,
    kube: FakeKube,
    setup: dict[str, Any],
    workers: Workers,
    db: Database,
    cap: int,
) -> None:
    """Random short sequences (seeded; the seed is printed, and JOB_CONTROLS_SEED replays one):
    every job reaches a terminal status, its cluster is unlocked, and no task holds or waits
    for a runtime slot."""
    seed = int(os.environ.get(SEED_ENV) or random.randrange(2**32))
    print(f"{SEED_ENV}={seed}")
    rng = random.Random(seed)
    trace: list[str] = []
    try:
        for _ in range(3):
            await _scenario(rng, client, kube, setup, workers, db, trace)
    except BaseException:
        print("\n".join(trace))
        raise
    # Nothing was left holding the runtime: a new deploy runs through.
    last = await deploy(client, setup, "shop@1.0.0")
    assert (await job_reaches(client, last["job_id"], TERMINAL))["status"] == "successful"


async def _wait_task(db: Database, job_id: str) -> tuple[str, str, int]:
    """(status, slot mark, attempts) of the job's readiness wait task (empty: not planned)."""
    async with db.read_session() as session:
        row = (
            await session.execute(
                select(col(Task.status), col(Task.slot), col(Task.attempts)).where(
                    col(Task.job_id) == job_id, col(Task.action) == "wait"
                )
            )
        ).first()
    return (str(row[0]), str(row[1]), int(row[2])) if row is not None else ("", "", 0)


async def _wait_task_reaches(
    db: Database, job_id: str, want: tuple[str, str, int], timeout: float = 30.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (found := await _wait_task(db, job_id)) != want:
        assert asyncio.get_running_loop().time() < deadline, found
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("cap", [1])
async def test_a_readiness_wait_resumed_after_its_worker_went_down_leaves_the_runtime_free(
    client: httpx.AsyncClient,
    kube: FakeKube,
    setup: dict[str, Any],
    workers: Workers,
    db: Database,
    cap: int,
) -> None:
    """With one slot on the runtime: a deploy's wait gives the slot back, its task-manager goes
    down mid-wait, and the wait resumed on the next one still watches without the slot, so
    another deploy runs through meanwhile; both end and no slot stays held."""
    await workers.start(TASK_MANAGER)
    kube.auto_ready = False
    ns = setup["runtime"]["zone"]
    first = await deploy(client, setup, "shop@1.0.0")
    await _wait_task_reaches(db, first["job_id"], ("working", "free", 1))

    await workers.stop(TASK_MANAGER)
    await workers.start(TASK_MANAGER)
    await _wait_task_reaches(db, first["job_id"], ("working", "free", 2))

    second = await deploy(client, setup, "shop@1.0.0")
    await task_reaches(client, second["job_id"], "wait")
    for made in owned(kube, "Deployment", ns, second["cluster_id"]):
        kube.make_ready(ns, "Deployment", made["metadata"]["name"])
    done = await job_reaches(client, second["job_id"], TERMINAL)
    assert done["status"] == "successful", done
    assert (await _wait_task(db, first["job_id"]))[:2] == ("working", "free")

    make_ready(kube, setup)
    job = await job_reaches(client, first["job_id"], TERMINAL)
    assert job["status"] == "successful", job
    assert await busy_slots(db, setup["runtime"]["runtime_id"]) == []
