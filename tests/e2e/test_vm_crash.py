"""A task worker SIGKILLed while it launches a VM cluster's instances: the launch runs again on
redelivery in a new worker, and the job ends once, successful, with exactly one instance per
node in the cloud (terminated ones counted too: nothing launched twice). One scenario
(`_crash_mid_launch`), run on aws and on qingcloud, each cloud holding a launch in flight:

- aws (moto behind a gate that holds every RunInstances after the first): the doomed worker
  launches the first node, then waits on the second; it is killed there. The held request is
  then let through, as a request AWS received just before the crash would be, so the new
  worker must find that instance (by its tag, or by its client token) rather than launch again.
- qingcloud (the fake, whose RunInstances answers with a job id while the instance is listed
  only once that job starts): every RunInstances job is held pending, so nothing launched is
  listed, and the second RunInstances request is held unanswered; the doomed worker is killed
  there, and QingCloud then takes the held request. The new worker finds no instance by name,
  for a launch answered (its job id kept) and one never answered: it must wait for those jobs,
  not launch again. The jobs are let start only once the new worker has shown what it does
  (asked DescribeJobs, or sent RunInstances as a launch found by name alone did).
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from tests.e2e.procs import Processes
from tests.helpers import read_sse, wait_job
from tests.support.aws import MotoAws
from tests.support.aws_vm import all_instances, ec2, prepare_aws_runtime, write_aws_shop_repo
from tests.support.deployments import deploy
from tests.support.http_repo import RepoServer
from tests.support.qingcloud_fake import QingCloudFake, running_fake
from tests.support.qingcloud_vm import prepare_qingcloud_runtime, write_shop_repo
from tests.support.threaded_server import SocketServerThread

pytestmark = pytest.mark.e2e

StartResponse = Callable[..., Any]
NODES = {"web-1": 1, "web-2": 1, "db-1": 1}  # the shop package's nodes, each made once


class Gate:
    """WSGI middleware: RunInstances requests after the first wait until `open` is set."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.open = threading.Event()
        self.held = threading.Event()  # a RunInstances is waiting at the gate
        self._runs = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        if b"Action=RunInstances" in body:
            with self._lock:
                self._runs += 1
                first = self._runs == 1
            if not first:
                self.held.set()
                self.open.wait(120)
        result: Iterable[bytes] = self.app(environ, start_response)
        return result


@pytest.fixture
def gated_moto() -> Iterator[tuple[MotoAws, Gate]]:
    gate = Gate(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, gate, True, request_handler=MotoRequestHandler)
    # A held RunInstances is let go before the server stops, so stopping can join its thread.
    with SocketServerThread(server, before_close=gate.open.set) as serving:
        moto = MotoAws(url=serving.url)
        # moto's backends are global to this process: forget what earlier tests made there.
        moto.reset()
        yield moto, gate


@pytest.fixture
def held_qingcloud() -> Iterator[QingCloudFake]:
    with running_fake(job_delay=0.05) as fake:
        fake.hold_jobs("RunInstances")
        fake.hold_requests("RunInstances", after=1)
        try:
            yield fake
        finally:
            fake.release_requests()
            fake.release_jobs("RunInstances")


async def _until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.1)


@dataclass
class Cloud:
    """How the scenario steers one cloud around the crash."""

    launch_held: Callable[[], bool]  # the doomed worker's second launch waits, unanswered
    made: Callable[[str], list[str]]  # every instance of a cluster (gone too), by node id
    let_through: Callable[[], Awaitable[None]]  # the cloud takes the held request
    # Once the fresh worker runs (its executor given): until it has acted, and what then.
    fresh_started: Callable[[], Awaitable[None]] | None = None


async def _crash_mid_launch(
    procs: Processes, http: httpx.AsyncClient, doomed: Any, runtime: dict[str, Any], cloud: Cloud
) -> str:
    """Deploy the shop, SIGKILL the task worker inside its launch task (one node launched,
    the second's request held), let a fresh worker finish: the job is successful once, its
    launch ran twice (the second time in the fresh worker) and render_spec once, and every
    event came once. Returns the cluster id."""
    made = await deploy(http, runtime, "shop@1.0.0", values={})
    job_id, cid = made["job_id"], made["cluster_id"]
    await _until(cloud.launch_held, f"a second RunInstances (job {job_id})")
    first = cloud.made(cid)
    assert first == ["web-1"], first
    doomed.kill()
    assert await doomed.wait(10) == -9
    await cloud.let_through()  # the cloud answers the request it got before the crash

    fresh = await procs.worker(managers=["task-manager"])
    if cloud.fresh_started is not None:
        await cloud.fresh_started()
    done = await wait_job(http, job_id, timeout=120)
    assert done["status"] == "successful", done
    attempts = {t["action"]: t["attempts"] for t in done["tasks"]}
    assert attempts["launch"] == 2 and attempts["render_spec"] == 1, attempts
    launch = next(t for t in done["tasks"] if t["action"] == "launch")
    assert launch["executor"] == fresh.executor, launch

    events = await read_sse(http, f"/v1/jobs/{job_id}/events")
    terminal = [e for e in events if e["data"]["type"] == "job.status"]
    assert [e["data"]["status"] for e in terminal][-1] == "successful"
    assert sum(e["data"]["status"] == "successful" for e in terminal) == 1
    ids = [e["data"]["id"] for e in events]
    assert len(ids) == len(set(ids)), "an event was delivered twice"
    return cid


async def _start(procs: Processes) -> tuple[Any, Any]:
    """The API, a worker of the job managers and the task worker to be killed."""
    api, _, doomed = await asyncio.gather(
        procs.api(),
        procs.worker(managers=["repo-indexer", "repo-manager", "job-manager"]),
        procs.worker(managers=["task-manager"]),
    )
    return api, doomed


@pytest.mark.timeout(240)
async def test_task_worker_killed_mid_launch_makes_each_instance_once(
    procs: Processes,
    gated_moto: tuple[MotoAws, Gate],
    repo_dir: Path,
    repo_server: RepoServer,
) -> None:
    moto, gate = gated_moto
    answer = await asyncio.to_thread(ec2(moto).describe_images, Owners=["amazon"])
    images = sorted(i["ImageId"] for i in answer["Images"] if i["Architecture"] == "x86_64")
    write_aws_shop_repo(repo_dir, images[0])
    api, doomed = await _start(procs)

    def made(cluster_id: str) -> list[str]:
        return [
            next(t["Value"] for t in i["Tags"] if t["Key"] == "openpitrix:node-id")
            for i in all_instances(moto, cluster_id)
        ]

    async def let_through() -> None:
        gate.open.set()

    async with procs.http(api) as http:
        vm = await prepare_aws_runtime(http, moto, repo_server.url, images[1])
        cloud = Cloud(launch_held=gate.held.is_set, made=made, let_through=let_through)
        cid = await _crash_mid_launch(procs, http, doomed, vm, cloud)

        instances = await asyncio.to_thread(all_instances, moto, cid)
        assert Counter(made(cid)) == NODES, instances
        assert {i["State"]["Name"] for i in instances} == {"running"}


@pytest.mark.timeout(240)
async def test_qingcloud_task_worker_killed_before_its_launches_are_listed_makes_each_once(
    procs: Processes,
    held_qingcloud: QingCloudFake,
    repo_dir: Path,
    repo_server: RepoServer,
) -> None:
    fake = held_qingcloud
    write_shop_repo(repo_dir)
    api, doomed = await _start(procs)

    def made(cluster_id: str) -> list[str]:
        prefix = f"{cluster_id}-"
        return [
            i.instance_name.removeprefix(prefix)
            for i in fake.instances()
            if i.instance_name.startswith(prefix)
        ]

    def run_instances_jobs() -> int:
        return sum(j.job_action == "RunInstances" for j in fake.jobs())

    seen = 0

    async def let_through() -> None:
        nonlocal seen
        # Nothing launched is listed yet: the window a launch found by name alone misses.
        assert [i.listed for i in fake.instances()] == [False]
        fake.release_requests()
        await _until(lambda: run_instances_jobs() == 2, "QingCloud takes the held RunInstances")
        seen = len(fake.requests)  # what the fresh worker asks comes after

    async def fresh_started() -> None:
        # The fresh worker found nothing by name; the jobs start once it has shown whether it
        # waits for the launches sent before (DescribeJobs) or launches again.
        def acted() -> bool:
            return any(r.action in ("DescribeJobs", "RunInstances") for r in fake.requests[seen:])

        await _until(acted, "the fresh worker's launch acts")
        fake.release_jobs("RunInstances")

    async with procs.http(api) as http:
        vm = await prepare_qingcloud_runtime(http, fake, repo_server.url)

        def held() -> bool:
            return fake.waiting_requests == 1

        cloud = Cloud(
            launch_held=held, made=made, let_through=let_through, fresh_started=fresh_started
        )
        cid = await _crash_mid_launch(procs, http, doomed, vm, cloud)

        assert Counter(made(cid)) == NODES, fake.instances()
        assert sum(r.action == "RunInstances" for r in fake.requests) == 3
        assert {i.status for i in fake.instances()} == {"running"}
