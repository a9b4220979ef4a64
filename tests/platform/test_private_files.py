"""Secrets on disk: the data dir is private (0700) and every file in it (SQLite and its -wal and
-shm, jwt.key, secret.key, the NATS store) is 0600, whatever the umask; key files are created
atomically, so processes starting together all read the same non-empty key."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from openpitrix.crypto import KEY_FILE, load_secret_box
from openpitrix.db.migrate import upgrade
from openpitrix.iam.tokens import load_signing_key
from openpitrix.outbox.writer import enqueue
from openpitrix.platform import Platform
from openpitrix.settings import AuthSettings, Settings


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The usual umask, under which files come out world-readable unless made private."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(root: Path) -> dict[str, int]:
    return {
        str(p.relative_to(root)): stat.S_IMODE(p.stat().st_mode)
        for p in [root, *root.rglob("*")]
        if not p.is_symlink()
    }


def _embedded_settings(data_dir: Path) -> Settings:
    """`openpitrix serve` defaults: SQLite file, child nats-server and key files in the data dir."""
    return Settings(data_dir=data_dir, auth=AuthSettings())


async def test_serve_defaults_keep_the_data_dir_and_every_file_in_it_private(
    tmp_path: Path, open_umask: None
) -> None:
    data_dir = tmp_path / "data"
    settings = _embedded_settings(data_dir)
    await asyncio.to_thread(upgrade, settings.effective_database_url)  # as `serve` does
    async with Platform(settings, role="serve") as platform:
        platform.secrets.seal({"k": "v"})
        load_signing_key(settings)
        async with platform.db.transaction() as session:
            enqueue(session, "op.events.t", {"n": 1})
        modes = _modes(data_dir)

    for name in (
        "openpitrix.db",
        "openpitrix.db-wal",
        "openpitrix.db-shm",
        "jwt.key",
        KEY_FILE,
        "nats/nats-server.log",
    ):
        assert modes.get(name) == 0o600, (name, oct(modes.get(name, 0)))
    assert modes["."] == 0o700
    assert any(name.startswith("nats/jetstream/") for name in modes)  # the store is in there too
    readable = {n: oct(m) for n, m in modes.items() if m & 0o077}
    assert not readable, readable


async def test_a_data_dir_left_readable_by_an_earlier_version_is_made_private(
    tmp_path: Path, open_umask: None
) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    settings = _embedded_settings(data_dir)
    await asyncio.to_thread(upgrade, settings.effective_database_url)
    db_file = data_dir / "openpitrix.db"
    db_file.chmod(0o644)
    async with Platform(settings, role="api") as platform:
        await platform.db.ping()
        assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(db_file.stat().st_mode) == 0o600


def _load_key_at(data_dir: str, start_at: float, n: int) -> str:
    """In a child process: wait for the common start, then load (or create) the secret key."""
    while time.time() < start_at:
        pass
    box = load_secret_box(Settings(data_dir=Path(data_dir), auth=AuthSettings()))
    return box.seal({"n": n})


def test_processes_starting_together_share_one_non_empty_secret_key(tmp_path: Path) -> None:
    workers = 4
    with multiprocessing.get_context("spawn").Pool(workers) as pool:
        pool.map(time.sleep, [0.0] * workers)  # children imported and ready
        for attempt in range(15):
            data_dir = tmp_path / f"data-{attempt}"
            start_at = time.time() + 0.2
            tokens = pool.starmap(
                _load_key_at, [(str(data_dir), start_at, n) for n in range(workers)]
            )
            key = (data_dir / KEY_FILE).read_bytes().strip()
            assert key
            box = load_secret_box(Settings(data_dir=data_dir, auth=AuthSettings()))
            # Every process sealed with the key on disk: one key, shared.
            assert sorted(box.open(t)["n"] for t in tokens) == list(range(workers))
            assert stat.S_IMODE((data_dir / KEY_FILE).stat().st_mode) == 0o600
