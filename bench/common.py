"""Shared benchmark plumbing: child processes, readiness, a fresh database, the admin login,
nats-server, migrations, the work directory, percentiles and process CPU."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import FrameType
from typing import IO

import asyncpg
import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
OPENPITRIX = [str(BIN / "openpitrix")]
# Every process a benchmark starts takes its database from here when it is set (PostgreSQL:
# a fresh database is made beside the one named and dropped afterwards).
DATABASE_ENV = "OPENPITRIX_BENCH_DATABASE_URL"
# The first admin of a fresh install (OPENPITRIX_BOOTSTRAP_ADMIN_*), logged in with for real.
ADMIN_EMAIL = "bench-admin@example.org"
# A throwaway install on loopback, gone when the benchmark ends.
ADMIN_PASSWORD = "bench-admin-password-0123456789"  # noqa: S105


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without any OPENPITRIX_* variable (a child gets exactly the settings
    the benchmark gives it), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPITRIX_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def admin_env() -> dict[str, str]:
    """Settings of a gateway that creates the benchmark's admin on an empty database."""
    return {
        "OPENPITRIX_BOOTSTRAP_ADMIN_EMAIL": ADMIN_EMAIL,
        "OPENPITRIX_BOOTSTRAP_ADMIN_PASSWORD": ADMIN_PASSWORD,
    }


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it if the benchmark dies without cleaning up."""
    if sys.platform == "linux":
        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)


def exit_on_sigterm() -> None:
    """SIGTERM unwinds like Ctrl-C, so `finally` blocks stop the children."""

    def handler(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, handler)


class Child:
    """One child process, stdout and stderr in `<log_dir>/<name>.log`."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}.log"
        self._log: IO[bytes] = self.log_path.open("wb")
        self.popen = subprocess.Popen(
            args,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=log_dir,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def check_running(self) -> None:
        if self.popen.poll() is not None:
            tail = "\n".join(self.log().splitlines()[-20:])
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def wait_for_log(self, text: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log():
            self.check_running()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name} did not log {text!r} within {timeout:.0f} s")
            time.sleep(0.05)

    def stop(self, grace: float = 15.0) -> None:
        """SIGTERM, then SIGKILL after `grace` seconds; always reaps."""
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.popen.kill()
        self.popen.wait()
        self._log.close()


class Children:
    """The processes of one benchmark run (or round): `stop_all` never leaves one behind."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        log_dir.mkdir(parents=True, exist_ok=True)
        self.started: list[Child] = []

    def start(self, name: str, args: list[str], env: dict[str, str]) -> Child:
        child = Child(name, args, env, self.log_dir)
        self.started.append(child)
        return child

    def stop_all(self) -> None:
        # SIGTERM to all first, so they shut down side by side, then reap each.
        for child in self.started:
            if child.popen.poll() is None:
                child.popen.terminate()
        for child in reversed(self.started):
            child.stop()

    def __enter__(self) -> Children:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def wait_ready(url: str, child: Child, timeout: float = 60.0) -> None:
    """Until `GET <url>/readyz` answers 200 (the gateway reaches its database and NATS)."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=2) as http:
        while True:
            child.check_running()
            with contextlib.suppress(httpx.TransportError):
                if http.get("/readyz").status_code == 200:
                    return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{child.name} not ready within {timeout:.0f} s")
            time.sleep(0.1)


def wait_http_ok(url: str, child: Child, timeout: float = 30.0) -> None:
    """Until `GET url` answers 200 (e.g. nats-server's /healthz: JetStream is up)."""
    deadline = time.monotonic() + timeout
    while True:
        child.check_running()
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=2).status_code == 200:
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"{child.name} not healthy within {timeout:.0f} s")
        time.sleep(0.05)


def login(url: str, email: str = ADMIN_EMAIL, password: str = ADMIN_PASSWORD) -> dict[str, str]:
    """Headers with an access token from the password grant of POST /v1/oauth2/token."""
    resp = httpx.post(
        f"{url}/v1/oauth2/token",
        data={"grant_type": "password", "username": email, "password": password},
        timeout=30,
    )
    if resp.status_code != 200:
        raise RuntimeError(f"login failed: {resp.status_code} {resp.text}")
    return {"Authorization": f"Bearer {resp.json()['access_token']}"}


async def _admin_execute(base_url: str, statement: str) -> None:
    url = make_url(base_url)
    conn = await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database or "postgres",
    )
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@contextlib.contextmanager
def fresh_database(work_dir: Path) -> Iterator[str]:
    """An empty database for one run: a SQLite file in `work_dir`, or, when
    OPENPITRIX_BENCH_DATABASE_URL names a PostgreSQL database, a new database beside it
    (dropped afterwards), so no run sees an earlier run's users or repos."""
    base = os.environ.get(DATABASE_ENV)
    if not base:
        yield f"sqlite+aiosqlite:///{work_dir / 'openpitrix.db'}"
        return
    if not base.startswith("postgresql"):
        yield base  # some other database: used as given
        return
    name = f"op_bench_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin_execute(base, f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin_execute(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def database_label(url: str) -> str:
    return "PostgreSQL" if url.startswith("postgresql") else "SQLite"


def start_nats(children: Children, work: Path) -> tuple[str, int]:
    """nats-server with JetStream (its store under `work`), ready (its /healthz checks
    JetStream); (URL, pid)."""
    from openpitrix.bus.embedded import nats_server_binary

    port, monitor = free_port(), free_port()
    nats = children.start(
        "nats-server",
        [
            nats_server_binary(),
            *("-a", "127.0.0.1", "-p", str(port), "-m", str(monitor)),
            *("-js", "-sd", str(work / "jetstream")),
        ],
        clean_env({}),
    )
    wait_http_ok(f"http://127.0.0.1:{monitor}/healthz?js-enabled-only=true", nats)
    return f"nats://127.0.0.1:{port}", nats.pid


def migrate(env: dict[str, str]) -> None:
    """`openpitrix migrate` with these settings; exits with its error output if it fails."""
    done = subprocess.run(
        [*OPENPITRIX, "migrate"], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"openpitrix migrate failed:\n{done.stderr}")


class WorkDir:
    """A run's scratch directory (database, JetStream store, process logs): removed at the
    end of a run that set `ok`, kept and its path printed when asked (`keep`) or when the run
    failed."""

    def __init__(self, prefix: str, *, keep: bool = False) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self.keep = keep
        self.ok = False

    def __enter__(self) -> WorkDir:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.keep or not self.ok:
            print(f"\nwork dir (process logs) kept: {self.path}")
        else:
            shutil.rmtree(self.path, ignore_errors=True)


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p99 of 100 samples is the 99th smallest); nan when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def raise_fd_limit() -> None:
    """The soft limit on open files up to the hard one (children inherit it): thousands of
    connections need more than the usual 1024."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds the process has used so far (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
