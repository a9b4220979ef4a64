"""The events benchmark's baseline: a minimal in-process broadcaster (no auth, no bus).

`GET /events` holds a text/event-stream open; `POST /publish` with a JSON list of SSE frames
puts every frame on every open stream's queue, in order. A raw ASGI app served by uvicorn with
the settings `openpitrix api` uses (see openpitrix.cli._serve_http).

usage: python bench/bare_broadcast.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

import orjson
import uvicorn

CLIENTS: set[asyncio.Queue[bytes]] = set()


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/publish":
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        frames = [frame.encode() for frame in orjson.loads(body)]
        for client in CLIENTS:
            for frame in frames:
                client.put_nowait(frame)
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/events":
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        CLIENTS.add(queue)
        try:
            headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send(
                {"type": "http.response.body", "body": b"retry: 2000\n\n", "more_body": True}
            )
            while True:
                frame = await queue.get()
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        finally:
            CLIENTS.discard(queue)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


if __name__ == "__main__":
    config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), log_config=None)
    uvicorn.Server(config).run()
