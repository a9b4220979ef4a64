"""A task worker SIGKILLed while it launches an aws cluster's instances: the launch runs again
on redelivery in a new worker, and the job ends once, successful, with exactly one instance per
node in moto (counted by the cluster's tag, terminated ones too: nothing launched twice).

moto's server runs here behind a gate that holds every RunInstances after the first: the doomed
worker launches the first node, then waits on the second; it is killed there. The held request
is then let through, as a request AWS received just before the crash would be, so the new
worker must find that instance (by its tag, or by its client token) rather than launch again.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

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

pytestmark = pytest.mark.e2e

StartResponse = Callable[..., Any]


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
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        moto = MotoAws(url=f"http://{host!s}:{port}")
        # moto's backends are global to this process: forget what earlier tests made there.
        moto.reset()
        yield moto, gate
    finally:
        gate.open.set()
        server.shutdown()
        thread.join()


async def _until(check: Callable[[], bool], what: str, timeout: float = 60) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.1)


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
    api, _, doomed = await asyncio.gather(
        procs.api(),
        procs.worker(managers=["repo-indexer", "repo-manager", "job-manager"]),
        procs.worker(managers=["task-manager"]),
    )
    async with procs.http(api) as http:
        vm = await prepare_aws_runtime(http, moto, repo_server.url, images[1])
        made = await deploy(http, vm, "shop@1.0.0", values={})
        job_id, cid = made["job_id"], made["cluster_id"]

        # The first node's instance exists and the second's launch waits at the gate: the
        # doomed worker is inside its launch task.
        await _until(gate.held.is_set, f"a second RunInstances (job {job_id})")
        first = await asyncio.to_thread(all_instances, moto, cid)
        assert len(first) == 1, first
        doomed.kill()
        assert await doomed.wait(10) == -9
        gate.open.set()  # AWS answers the request it got before the crash

        fresh = await procs.worker(managers=["task-manager"])
        done = await wait_job(http, job_id, timeout=120)
        assert done["status"] == "successful", done
        attempts = {t["action"]: t["attempts"] for t in done["tasks"]}
        assert attempts["launch"] == 2 and attempts["render_spec"] == 1, attempts
        launch = next(t for t in done["tasks"] if t["action"] == "launch")
        assert launch["executor"] == fresh.executor, launch

        made_instances = await asyncio.to_thread(all_instances, moto, cid)
        per_node = Counter(
            next(t["Value"] for t in i["Tags"] if t["Key"] == "openpitrix:node-id")
            for i in made_instances
        )
        assert per_node == {"web-1": 1, "web-2": 1, "db-1": 1}, made_instances
        assert {i["State"]["Name"] for i in made_instances} == {"running"}
        assert first[0]["InstanceId"] in {i["InstanceId"] for i in made_instances}

        events = await read_sse(http, f"/v1/jobs/{job_id}/events")
        terminal = [e for e in events if e["data"]["type"] == "job.status"]
        assert [e["data"]["status"] for e in terminal][-1] == "successful"
        assert sum(e["data"]["status"] == "successful" for e in terminal) == 1
        ids = [e["data"]["id"] for e in events]
        assert len(ids) == len(set(ids)), "an event was delivered twice"
