"""A database that cannot be reached is a 503 `database_unavailable` with `Retry-After`, in the
one error shape, not a 500; the gateway answers normally again once it is back."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from openpitrix.api.errors import install_error_handlers, is_database_outage
from openpitrix.db.engine import Database
from openpitrix.db.migrate import upgrade
from openpitrix.iam.schemas import Role
from openpitrix.settings import HttpSettings
from tests.conftest import LiveServer, make_settings
from tests.helpers import assert_error, repo_body
from tests.support.auth import headers_for


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens there once closed


@pytest.fixture
async def own_sqlite(tmp_path: Path) -> tuple[Path, str]:
    """A migrated SQLite database alone in its directory (so the directory can go away)."""
    folder = tmp_path / "db"
    folder.mkdir()
    url = f"sqlite+aiosqlite:///{folder / 'openpitrix.db'}"
    await asyncio.to_thread(upgrade, url)
    return folder, url


async def test_a_database_gone_away_is_503_with_retry_after_until_it_is_back(
    own_sqlite: tuple[Path, str], nats_url: str, tmp_path: Path
) -> None:
    folder, url = own_sqlite
    headers = await headers_for(url, Role.ADMIN)
    settings = make_settings(
        url,
        nats_url,
        tmp_path / "data",
        relay_enabled=False,
        http=HttpSettings(database_retry_after_seconds=9),
    )
    async with (
        LiveServer(settings, run_workers=False) as live,
        httpx.AsyncClient(base_url=live.url, timeout=30, headers=headers) as http,
    ):
        assert (await http.get("/v1/repos")).status_code == 200
        # The file's directory disappears; pooled connections go with it (as when a database
        # server restarts), so the next request must open a new one.
        folder.rename(tmp_path / "db-gone")
        await live.app.state.platform.db.dispose()
        for path in ("/v1/repos", "/v1/users/me", "/v1/jobs"):
            resp = await http.get(path)
            body = assert_error(resp, 503, "database_unavailable")
            assert resp.headers["retry-after"] == "9"
            assert "sqlite" not in resp.text.lower()  # no driver text, no SQL in the answer
            assert body["details"] == {}
        # A valid body: the token check no longer reads the database on every request (its
        # facts are cached for a second), so only a write that gets as far as SQL meets it.
        write = await http.post("/v1/repos", json=repo_body("r", "https://example.org"))
        assert_error(write, 503, "database_unavailable")

        (tmp_path / "db-gone").rename(folder)
        assert (await http.get("/v1/repos")).status_code == 200


async def test_a_refused_postgresql_connection_counts_as_an_outage() -> None:
    # asyncpg lets the socket's ConnectionRefusedError through SQLAlchemy unwrapped.
    database = Database(f"postgresql+asyncpg://op@127.0.0.1:{_closed_port()}/op")
    app = FastAPI()
    install_error_handlers(app, database_retry_after=4)

    @app.get("/ping")
    async def ping() -> dict[str, str]:
        await database.ping()
        return {"status": "ok"}

    try:
        with pytest.raises(ConnectionRefusedError) as raised:
            await database.ping()
        assert is_database_outage(raised.value)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            resp = await http.get("/ping")
    finally:
        await database.dispose()
    assert_error(resp, 503, "database_unavailable")
    assert resp.headers["retry-after"] == "4"


def test_an_os_error_outside_the_database_is_not_an_outage() -> None:
    with pytest.raises(FileNotFoundError) as raised:
        Path("/nonexistent/for/sure").read_text()
    assert not is_database_outage(raised.value)
