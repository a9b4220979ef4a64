"""The embedded nats-server: it dies with its parent, and one store never gets two servers (a
second start refuses while the first owner lives, and stops a stale server left behind)."""

from __future__ import annotations

import asyncio
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from openpitrix.bus.embedded import (
    LOCK_FILE,
    PID_FILE,
    EmbeddedNats,
    StoreInUse,
    free_port,
    nats_server_binary,
    servers_on,
)

# A process that starts the embedded server, prints its pid, and waits to be killed.
OWNER = """
import asyncio, sys
from pathlib import Path
from openpitrix.bus.embedded import EmbeddedNats

async def main():
    server = EmbeddedNats(Path(sys.argv[1]))
    await server.start()
    print(server.pid, flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""


async def _gone(pid: int, timeout: float = 15.0) -> bool:
    async with asyncio.timeout(timeout):
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            await asyncio.sleep(0.05)
    return True


def _store_servers(store: Path) -> list[int]:
    """nats-server processes on `store`, found by their command line (psutil, not our code)."""
    found = []
    for proc in psutil.process_iter(["name", "cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["status"] == psutil.STATUS_ZOMBIE or not cmd:
            continue
        if Path(cmd[0]).name == "nats-server" and str(store) in cmd:
            found.append(proc.pid)
    return found


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Path]:
    path = (tmp_path / "nats").resolve()
    yield path
    for pid in _store_servers(path):  # never leave a server behind a failed test
        os.kill(pid, signal.SIGKILL)


async def test_the_child_server_dies_when_its_parent_is_killed(store: Path) -> None:
    owner = await asyncio.create_subprocess_exec(
        sys.executable, "-c", OWNER, str(store), stdout=asyncio.subprocess.PIPE
    )
    assert owner.stdout is not None
    line = await asyncio.wait_for(owner.stdout.readline(), 30)
    child = int(line)
    assert _store_servers(store) == [child]

    owner.kill()  # kill -9: no cleanup code runs in the parent
    await owner.wait()
    assert await _gone(child)

    # The store is free again: the next start runs the one and only server on it.
    server = EmbeddedNats(store)
    await server.start()
    try:
        assert _store_servers(store) == [server.pid]
    finally:
        server.stop()


async def test_a_second_start_on_a_store_in_use_refuses(store: Path) -> None:
    first = EmbeddedNats(store)
    await first.start()
    try:
        second = EmbeddedNats(store)
        with pytest.raises(StoreInUse, match=str(first.pid)):
            await second.start()
        assert _store_servers(store) == [first.pid]
        assert servers_on(store) == [first.pid]
    finally:
        first.stop()


def _orphan_server(store: Path) -> subprocess.Popen[bytes]:
    """What an earlier version (no lock, no parent-death signal) left after a kill -9."""
    store.mkdir()
    return subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(free_port()), "-js", "-sd", str(store)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def test_a_stale_server_left_on_the_store_is_stopped_before_starting(store: Path) -> None:
    stale = _orphan_server(store)
    try:
        assert _store_servers(store) == [stale.pid]
        server = EmbeddedNats(store)
        await server.start()
        try:
            assert await asyncio.to_thread(stale.wait, 15) is not None
            assert _store_servers(store) == [server.pid]
        finally:
            server.stop()
    finally:
        if stale.poll() is None:
            stale.kill()
            stale.wait()


def _orphan_holding_the_lock(store: Path) -> subprocess.Popen[bytes]:
    """A server that still holds the store lock after its owner died (no parent-death signal,
    e.g. another OS): its pid file names an owner that no longer exists."""
    store.mkdir()
    dead_owner = int(
        subprocess.check_output([sys.executable, "-c", "import os; print(os.getpid())"])
    )
    fd = os.open(store / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        proc = subprocess.Popen(
            [
                nats_server_binary(),
                "-a",
                "127.0.0.1",
                "-p",
                str(free_port()),
                "-js",
                "-sd",
                str(store),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=(fd,),
            start_new_session=True,
        )
    finally:
        os.close(fd)  # only the server holds the lock now
    (store / PID_FILE).write_text(f"{proc.pid} {dead_owner}\n")
    return proc


async def test_a_server_holding_the_lock_for_a_dead_owner_is_stopped_before_starting(
    store: Path,
) -> None:
    stale = _orphan_holding_the_lock(store)
    try:
        server = EmbeddedNats(store)
        await server.start()
        try:
            assert await asyncio.to_thread(stale.wait, 15) is not None
            assert _store_servers(store) == [server.pid]
        finally:
            server.stop()
    finally:
        if stale.poll() is None:
            stale.kill()
            stale.wait()
