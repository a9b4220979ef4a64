"""Real `openpitrix` processes for end-to-end tests: start, wait until ready, signal, clean up.

Every process gets its settings from OPENPITRIX_* variables only (nothing is inherited from the
test runner's environment), writes stdout and stderr to a log file under the test's tmp_path,
and is killed at teardown if still running. The logs are printed at teardown, so pytest shows
them for a failed test (captured output of passing tests is dropped).
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import httpx

from tests.helpers import TERMINAL
from tests.support.auth import TEST_JWT_SECRET

TEST_SECRET_KEY = "m9pC2fCqkKzJm3YV0l3QXh3yq8Yv3W4z0ZbqNnJw1fE="  # a Fernet key, tests only

_SCRIPT = Path(sys.executable).parent / "openpitrix"
# The console script of the virtualenv running the tests (or the same entry point through it).
OPENPITRIX: list[str] = (
    [str(_SCRIPT)]
    if _SCRIPT.exists()
    else [sys.executable, "-c", "from openpitrix.cli import main; main()"]
)


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the test runner dies (Linux), so even a runner
    killed without teardown leaves no process behind."""
    if sys.platform != "linux":
        return
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


# The bus values of tests.conftest.make_settings: every process sharing the session's JetStream
# must agree on them, or each start re-writes the durable consumers' config for everyone.
BUS_ENV = {
    "OPENPITRIX_BUS__ACK_WAIT_SECONDS": "3",
    "OPENPITRIX_BUS__BACKOFF_SECONDS": json.dumps([3, 3, 6]),
    "OPENPITRIX_BUS__MAX_DELIVER": "5",
}

# Liveness of a worker: logged once its pull subscription is bound to the durable consumer.
CONSUMING = "manager=repo-indexer consuming"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Proc:
    """One child process with its combined stdout/stderr in `log_path`."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.popen = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=log_path.parent,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.popen.pid
        self.executor = f"{socket.gethostname()}/{self.pid}"

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def signal(self, sig: signal.Signals) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no handler, no drain, no flush."""
        self.signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.signal(signal.SIGTERM)

    async def wait(self, timeout: float) -> int:
        """The exit code; raises TimeoutError if the process is still running after `timeout`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (code := self.popen.poll()) is None:
            if loop.time() > deadline:
                raise TimeoutError(f"{self.name} (pid {self.pid}) still running after {timeout}s")
            await asyncio.sleep(0.05)
        return code

    async def wait_for_log(self, text: str, timeout: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while text not in self.log():
            if self.popen.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.popen.returncode} before logging {text!r}"
                )
            if loop.time() > deadline:
                raise TimeoutError(f"{self.name} did not log {text!r} within {timeout}s")
            await asyncio.sleep(0.05)

    def close(self) -> None:
        """Kill (if running) and reap; never leaves a process behind."""
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait()
        self._log.close()


class Api(Proc):
    def __init__(self, name: str, port: int, env: dict[str, str], log_path: Path) -> None:
        super().__init__(name, [*OPENPITRIX, "api", "--port", str(port)], env, log_path)
        self.url = f"http://127.0.0.1:{port}"

    async def wait_ready(self, timeout: float = 30.0) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        async with httpx.AsyncClient(base_url=self.url, timeout=2) as http:
            while True:
                if self.popen.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.popen.returncode}")
                try:
                    if (await http.get("/readyz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                if loop.time() > deadline:
                    raise TimeoutError(f"{self.name} not ready within {timeout}s")
                await asyncio.sleep(0.1)


class Processes:
    """Starts api and worker processes for one test and cleans all of them up afterwards."""

    def __init__(
        self, database_url: str, nats_url: str, tmp_path: Path, headers: Mapping[str, str]
    ) -> None:
        self.database_url = database_url
        self.headers = dict(headers)
        self.nats_url = nats_url
        self.dir = tmp_path / "procs"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.started: list[Proc] = []
        self._counter = 0

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("OPENPITRIX_")}
        self._counter += 1
        base.update(
            {
                "OPENPITRIX_DATABASE_URL": self.database_url,
                "OPENPITRIX_NATS_URL": self.nats_url,
                "OPENPITRIX_DATA_DIR": str(self.dir / f"data-{self._counter}"),
                "OPENPITRIX_OUTBOX_POLL_SECONDS": "0.2",
                "OPENPITRIX_SSE_KEEPALIVE_SECONDS": "1",
                "OPENPITRIX_WORKER__FETCH_TIMEOUT_SECONDS": "0.2",
                "OPENPITRIX_WORKER__CONCURRENCY": "4",
                "OPENPITRIX_WORKER__DRAIN_SECONDS": "5",
                "OPENPITRIX_INDEXER__SCHEDULER_TICK_SECONDS": "0.5",
                "OPENPITRIX_INDEXER__FETCH_TIMEOUT_SECONDS": "10",
                # Test repos and the fake Kubernetes API are on loopback, which production refuses.
                "OPENPITRIX_NETWORK__ALLOW_PRIVATE_ADDRESSES": "true",
                "OPENPITRIX_AUTH__JWT_SECRET": TEST_JWT_SECRET,
                # Each process has its own data dir; the split processes share the keys that
                # seal stored secrets, as a production deployment must.
                "OPENPITRIX_AUTH__SECRET_KEYS": json.dumps([TEST_SECRET_KEY]),
                "PYTHONUNBUFFERED": "1",
                **BUS_ENV,
            }
        )
        base.update(extra or {})
        return base

    def http(self, api: Api) -> httpx.AsyncClient:
        """A client of that gateway, authorized as the test session's admin."""
        return httpx.AsyncClient(base_url=api.url, timeout=30, headers=self.headers)

    def _log_path(self, name: str) -> Path:
        return self.dir / f"{len(self.started):02d}-{name}.log"

    async def api(self, *, ready: bool = True, **env: str) -> Api:
        """`openpitrix api` on a free port (relay on unless OPENPITRIX_RELAY_ENABLED says no)."""
        name = f"api-{len(self.started)}"
        proc = Api(name, free_port(), self.env(env), self._log_path(name))
        self.started.append(proc)
        if ready:
            await proc.wait_ready()
        return proc

    async def worker(
        self,
        *,
        concurrency: int | None = None,
        ready: bool = True,
        managers: Sequence[str] = ("repo-indexer", "job-manager"),
        **env: str,
    ) -> Proc:
        """`openpitrix worker --manager ...`, ready once its consumers are bound. By default
        what index jobs need: the job-manager advances them, the repo-indexer runs their task."""
        name = f"worker-{len(self.started)}"
        args = [*OPENPITRIX, "worker"]
        for manager in managers:
            args += ["--manager", manager]
        if concurrency is not None:
            args += ["--concurrency", str(concurrency)]
        proc = Proc(name, args, self.env(env), self._log_path(name))
        self.started.append(proc)
        if ready:
            for manager in managers:
                await proc.wait_for_log(f"manager={manager} consuming", timeout=30)
        return proc

    def close(self) -> None:
        for proc in self.started:
            proc.close()

    def dump_logs(self) -> None:
        for proc in self.started:
            print(f"===== {proc.name} pid={proc.pid} exit={proc.returncode} {proc.args}")
            print(proc.log())

    async def __aenter__(self) -> Processes:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
        self.dump_logs()


async def job(http: httpx.AsyncClient, job_id: str) -> dict[str, Any]:
    resp = await http.get(f"/v1/jobs/{job_id}")
    assert resp.status_code == 200, resp.text
    data: dict[str, Any] = resp.json()
    return data


async def wait_job_status(
    http: httpx.AsyncClient, job_id: str, statuses: set[str], timeout: float = 30.0
) -> dict[str, Any]:
    """Poll GET /v1/jobs/{id} until its status is one of `statuses`. "working" waits until a
    worker runs one of its tasks: the job-manager starts a job before any worker claims a task
    of it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        data = await job(http, job_id)
        running = any(t["status"] == "working" for t in data.get("tasks") or [])
        if data["status"] in statuses and (data["status"] != "working" or running):
            return data
        if data["status"] in TERMINAL:
            raise AssertionError(f"job {job_id} ended {data['status']}, wanted {statuses}: {data}")
        if loop.time() > deadline:
            raise TimeoutError(f"job {job_id} still {data['status']} after {timeout}s: {data}")
        await asyncio.sleep(0.05)
