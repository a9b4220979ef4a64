"""Shared fixtures: a real nats-server, a real database (SQLite, or PostgreSQL when
OPENPITRIX_TEST_DATABASE_URL is set), and the real app served by uvicorn on loopback."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from openpitrix.bus.embedded import EmbeddedNats
from openpitrix.db.engine import Database
from openpitrix.db.migrate import upgrade
from openpitrix.gateway import create_app
from openpitrix.iam.schemas import Role
from openpitrix.settings import (
    AuthSettings,
    BusSettings,
    GcSettings,
    IndexerSettings,
    NetworkSettings,
    Settings,
    WorkerSettings,
)
from tests.support import plugins
from tests.support.auth import TEST_JWT_SECRET, headers_for
from tests.support.charts import SHOP_CHARTS, ChartSpec, write_index
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube
from tests.support.threaded_server import LoopServer

PG_ENV = "OPENPITRIX_TEST_DATABASE_URL"
PLUGINS = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    # The test cloud provider, installed as a third-party plugin would be, before anything
    # reads the provider registry (tests/support/plugins.py).
    config.stash[PLUGINS] = plugins.install()


def pytest_unconfigure(config: pytest.Config) -> None:
    site = config.stash.get(PLUGINS, None)
    if site is not None:
        plugins.uninstall(site)


@pytest.fixture(scope="session")
def tmp_session(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openpitrix")


@pytest.fixture(scope="session")
async def nats_url(tmp_session: Path) -> AsyncIterator[str]:
    server = EmbeddedNats(tmp_session / "nats")
    await server.start()
    yield server.url
    server.stop()


async def _admin_connection(base_url: str) -> asyncpg.Connection:
    url = make_url(base_url)
    return await asyncpg.connect(
        host=url.host,
        port=url.port or 5432,
        user=url.username,
        password=url.password,
        database=url.database or "postgres",
    )


async def _create_pg_database(base_url: str) -> tuple[str, str]:
    """A fresh database beside `base_url`'s, so a run never sees an earlier run's rows."""
    name = f"op_test_{uuid.uuid4().hex[:10]}"
    conn = await _admin_connection(base_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    url = make_url(base_url).set(database=name)
    return url.render_as_string(hide_password=False), name


async def _drop_pg_database(base_url: str, name: str) -> None:
    conn = await _admin_connection(base_url)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture(scope="session")
async def database_url(tmp_session: Path) -> AsyncIterator[str]:
    """A migrated, empty database for the whole test session."""
    base = os.environ.get(PG_ENV)
    if base:
        url, name = await _create_pg_database(base)
        await asyncio.to_thread(upgrade, url)
        yield url
        await _drop_pg_database(base, name)
    else:
        url = f"sqlite+aiosqlite:///{tmp_session / 'openpitrix.db'}"
        await asyncio.to_thread(upgrade, url)
        yield url


@pytest.fixture
async def empty_database(tmp_path: Path) -> AsyncIterator[str]:
    """A database of its own with no schema (for migration tests)."""
    base = os.environ.get(PG_ENV)
    if base:
        url, name = await _create_pg_database(base)
        yield url
        await _drop_pg_database(base, name)
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / f'own-{uuid.uuid4().hex[:6]}.db'}"


@pytest.fixture
async def fresh_database(empty_database: str) -> str:
    """A migrated database of its own, with no rows (bootstrap acts only on an empty one)."""
    await asyncio.to_thread(upgrade, empty_database)
    return empty_database


def make_settings(
    database_url: str, nats_url: str, data_dir: Path, **overrides: object
) -> Settings:
    """Settings tuned for tests: short redelivery timers so crash recovery is quick."""
    settings = Settings(
        data_dir=data_dir,
        database_url=database_url,
        nats_url=nats_url,
        outbox_poll_seconds=0.2,
        sse_keepalive_seconds=1.0,
        bus=BusSettings(ack_wait_seconds=3.0, backoff_seconds=[3.0, 3.0, 6.0], max_deliver=5),
        indexer=IndexerSettings(fetch_timeout_seconds=3.0, scheduler_tick_seconds=0.5),
        # Test repos and the fake Kubernetes API are served on loopback.
        network=NetworkSettings(allow_private_addresses=True),
        worker=WorkerSettings(fetch_timeout_seconds=0.2, drain_seconds=5.0, concurrency=4),
        # Every test logs in from 127.0.0.1: the per-address login limit would trip; its own
        # tests (tests/iam/test_rate_limit.py) set it.
        auth=AuthSettings(jwt_secret=SecretStr(TEST_JWT_SECRET), login_attempts_per_address=0),
        # The test process starts hundreds of apps: frozen, each one's cyclic garbage would be
        # kept for the whole run.
        gc=GcSettings(freeze_at_start=False),
    )
    return settings.model_copy(update=overrides) if overrides else settings


@pytest.fixture
def settings(database_url: str, nats_url: str, tmp_path: Path) -> Settings:
    return make_settings(database_url, nats_url, tmp_path / "data")


@pytest.fixture(scope="session")
async def admin_headers(database_url: str) -> dict[str, str]:
    """Authorization of one admin for the whole session: most tests act as the operator."""
    return await headers_for(database_url, Role.ADMIN)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    database = Database(database_url)
    yield database
    await database.dispose()


class LiveServer(LoopServer):
    """The app (gateway plus in-process workers unless disabled) served by uvicorn."""

    def __init__(self, settings: Settings, *, run_workers: bool = True) -> None:
        self.settings = settings
        self.app = create_app(settings, run_workers=run_workers)
        super().__init__(self.app, lifespan="on", access_log=True, timeout_graceful_shutdown=5)
        self.url = f"http://127.0.0.1:{self.port}"


@pytest.fixture
async def server(settings: Settings) -> AsyncIterator[LiveServer]:
    async with LiveServer(settings) as live:
        yield live


@pytest.fixture
async def client(
    server: LiveServer, admin_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's client of the live server."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30, headers=admin_headers) as http:
        yield http


@pytest.fixture
async def anon(server: LiveServer) -> AsyncIterator[httpx.AsyncClient]:
    """A client without credentials."""
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
        yield http


@pytest.fixture
def repo_dir(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


@pytest.fixture
def repo_server(repo_dir: Path) -> Iterator[RepoServer]:
    with RepoServer(repo_dir) as srv:
        yield srv


def unique(prefix: str = "repo") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


DEFAULT_CHARTS = [
    ChartSpec("nginx", "1.0.0", app_version="1.25.0", keywords=["web"]),
    ChartSpec("nginx", "1.1.0", app_version="1.26.0", keywords=["web", "proxy"]),
    ChartSpec("redis", "7.0.1", app_version="7.0.1", keywords=["cache"]),
]


@pytest.fixture
def chart_repo(repo_dir: Path, repo_server: RepoServer) -> RepoServer:
    """A served Helm repo with real packages: nginx 1.0.0 and 1.1.0, redis 7.0.1."""
    write_index(repo_dir, DEFAULT_CHARTS)
    return repo_server


@pytest.fixture
def shop_repo(repo_dir: Path, repo_server: RepoServer) -> RepoServer:
    """A served Helm repo of the charts cluster tests deploy (tests.support.charts.SHOP_CHARTS)."""
    write_index(repo_dir, SHOP_CHARTS)
    return repo_server


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    """The fake Kubernetes API server, making workloads ready at once (tests may turn it off)."""
    async with FakeKube() as fake:
        fake.auto_ready = True
        yield fake
