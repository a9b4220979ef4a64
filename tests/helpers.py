"""Client-side helpers for tests: create repos, follow a job's SSE stream to its end."""

from __future__ import annotations

import socket
from datetime import datetime
from typing import Any

import httpx
import orjson

TERMINAL = {"successful", "failed", "cancelled"}


async def read_sse(
    client: httpx.AsyncClient,
    path: str,
    *,
    last_event_id: int | None = None,
    max_events: int | None = None,
    timeout: float = 30.0,
    params: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Read SSE frames until the server ends the stream (or max_events); each frame is
    {"id": int, "event": str, "data": dict}."""
    headers = {"Accept": "text/event-stream"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    frames: list[dict[str, Any]] = []
    async with client.stream("GET", path, headers=headers, params=params, timeout=timeout) as resp:
        assert resp.status_code == 200, await resp.aread()
        assert resp.headers["content-type"].startswith("text/event-stream")
        current: dict[str, Any] = {}
        async for line in resp.aiter_lines():
            if line == "":
                if "data" in current:
                    frames.append(current)
                    if max_events is not None and len(frames) >= max_events:
                        break
                current = {}
                continue
            if line.startswith(":"):
                continue
            field, _, value = line.partition(":")
            value = value[1:] if value.startswith(" ") else value
            if field == "id":
                current["id"] = int(value)
            elif field == "event":
                current["event"] = value
            elif field == "data":
                current["data"] = orjson.loads(value)
    return frames


async def wait_job(client: httpx.AsyncClient, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Follow the job's event stream to its end, then return the job as the API shows it."""
    frames = await read_sse(client, f"/v1/jobs/{job_id}/events", timeout=timeout)
    assert frames, "job stream ended without events"
    last = frames[-1]["data"]
    assert last["type"] == "job.status" and last["status"] in TERMINAL, last
    resp = await client.get(f"/v1/jobs/{job_id}")
    assert resp.status_code == 200
    job: dict[str, Any] = resp.json()
    return job


def repo_body(name: str, url: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "type": url.split(":", 1)[0],
        "url": url,
        "providers": ["kubernetes"],
    }
    body.update(extra)
    return body


async def create_repo(
    client: httpx.AsyncClient, name: str, url: str, **extra: Any
) -> dict[str, Any]:
    resp = await client.post("/v1/repos", json=repo_body(name, url, **extra))
    assert resp.status_code == 201, resp.text
    data: dict[str, Any] = resp.json()
    return data


def closed_url(scheme: str = "http", path: str = "") -> str:
    """A URL on a loopback port nothing listens on: connections are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base = f"{scheme}://127.0.0.1:{port}"
    return f"{base}/{path}" if path else base


def assert_error(resp: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The API's one error shape, with the expected status and stable code."""
    assert resp.status_code == status, resp.text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"error", "message", "details"}, body
    assert body["error"] == code, body
    assert isinstance(body["message"], str)
    assert body["message"]
    assert isinstance(body["details"], dict)
    return body


def when(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
