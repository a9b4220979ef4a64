"""CORS: off unless origins are configured, and then only for those origins."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.conftest import LiveServer, make_settings

PREFLIGHT = {
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization",
}


async def test_cors_is_off_by_default(anon: httpx.AsyncClient) -> None:
    resp = await anon.options("/v1/repos", headers={"Origin": "https://evil.example", **PREFLIGHT})
    assert "access-control-allow-origin" not in resp.headers
    plain = await anon.get("/healthz", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in plain.headers


async def test_configured_origins_may_call_the_api_and_others_may_not(
    database_url: str, nats_url: str, tmp_path: Path
) -> None:
    console = "https://console.example.org"
    settings = make_settings(database_url, nats_url, tmp_path / "data", cors_origins=[console])
    async with (
        LiveServer(settings, run_workers=False) as live,
        httpx.AsyncClient(base_url=live.url) as http,
    ):
        ok = await http.options("/v1/repos", headers={"Origin": console, **PREFLIGHT})
        assert ok.status_code == 200
        assert ok.headers["access-control-allow-origin"] == console
        assert "authorization" in ok.headers["access-control-allow-headers"].lower()
        # Bearer tokens, not cookies: browsers are never told to send credentials.
        assert "access-control-allow-credentials" not in ok.headers

        other = await http.options(
            "/v1/repos", headers={"Origin": "https://evil.example", **PREFLIGHT}
        )
        assert "access-control-allow-origin" not in other.headers
        # A real request still needs its token; CORS only decides what a browser may read.
        resp = await http.get("/v1/repos", headers={"Origin": console})
        assert resp.status_code == 401
        assert resp.headers["access-control-allow-origin"] == console
