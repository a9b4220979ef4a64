"""Probes and request plumbing operators rely on: liveness, readiness, request ids, docs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from openpitrix.bus.embedded import EmbeddedNats
from tests.conftest import LiveServer, make_settings


async def test_healthz_and_readyz_answer_when_everything_is_up(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok", "checks": {}}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["checks"] == {"database": "ok", "nats": "ok"}


async def test_readyz_is_503_while_nats_is_down_and_recovers(
    database_url: str, tmp_path: Path
) -> None:
    nats_server = EmbeddedNats(tmp_path / "nats")
    await nats_server.start()
    settings = make_settings(database_url, nats_server.url, tmp_path / "data")
    try:
        async with (
            LiveServer(settings, run_workers=False) as live,
            httpx.AsyncClient(base_url=live.url, timeout=10) as http,
        ):
            assert (await http.get("/readyz")).status_code == 200
            nats_server.stop()
            resp = await http.get("/readyz")
            assert resp.status_code == 503
            body = resp.json()
            assert body["error"] == "not_ready"
            assert body["details"]["checks"]["nats"].startswith("error")
            assert body["details"]["checks"]["database"] == "ok"
            assert (await http.get("/healthz")).status_code == 200  # alive, just not ready

            restarted = EmbeddedNats(tmp_path / "nats", port=nats_server.port)
            await restarted.start()
            try:
                for _ in range(100):  # the client reconnects on its own
                    if (await http.get("/readyz")).status_code == 200:
                        break
                    await asyncio.sleep(0.1)
                assert (await http.get("/readyz")).status_code == 200
            finally:
                restarted.stop()
    finally:
        nats_server.stop()


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "trace-123"})
    assert given.headers["x-request-id"] == "trace-123"
    made = await client.get("/healthz")
    assert len(made.headers["x-request-id"]) == 32
    unsafe = await client.get("/healthz", headers={"X-Request-ID": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


async def test_swagger_ui_and_openapi_are_served(client: httpx.AsyncClient) -> None:
    docs = await client.get("/docs")
    assert docs.status_code == 200
    assert "swagger-ui" in docs.text.lower()
    spec = (await client.get("/openapi.json")).json()
    assert "/v1/repos" in spec["paths"]


async def test_unknown_route_and_method_use_the_error_shape(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.json()["error"] == "not_found"
    wrong = await client.put("/v1/repos")
    assert wrong.status_code == 405
    assert wrong.json()["error"] == "method_not_allowed"


async def test_reads_answer_while_another_process_holds_the_write_lock(
    client: httpx.AsyncClient, database_url: str
) -> None:
    """A long write elsewhere (a big index sync, another worker process) must not stall GETs."""
    from sqlalchemy import text

    from openpitrix.db.engine import Database

    other_process = Database(database_url)
    try:
        async with other_process.transaction() as session:
            await session.execute(text("UPDATE repos SET description = description"))
            for path in ("/v1/repos", "/v1/apps", "/v1/jobs", "/v1/tasks"):
                # A GET stalled by the lock would wait as long as this transaction lasts, that
                # is for ever: any bound tells it apart, and a generous one does not mistake a
                # loaded machine (two xdist workers beside other work) for a stall.
                resp = await asyncio.wait_for(client.get(path), 30)
                assert resp.status_code == 200, path
    finally:
        await other_process.dispose()
