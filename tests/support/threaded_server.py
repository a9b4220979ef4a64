"""HTTP servers of the tests on a loopback port, started and stopped one way: an ASGI app under
uvicorn in the running event loop (`LoopServer`) or in a thread with a loop of its own
(`ThreadServer`), and a `socketserver` (http.server, wsgiref) in a thread (`SocketServerThread`).

Each binds its socket before it starts, so `url` is known at once and no port is guessed; each
returns from `start` only once the server accepts connections, and from `stop` only once it
has let go of its socket and its thread."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import socketserver
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any, Self

import uvicorn

START_TIMEOUT = 10.0


def bind_loopback(*, nodelay: bool = False) -> socket.socket:
    """A socket bound to a free port on 127.0.0.1 (not yet listening)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if nodelay:
        # Accepted connections inherit it: without it every answer (headers, then body) waits
        # ~40 ms on the client's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


def _uvicorn(app: Any, *, lifespan: str, **config: Any) -> uvicorn.Server:
    # Fakes keep quiet; the app under test (LiveServer) asks for its access log.
    config.setdefault("access_log", False)
    return uvicorn.Server(uvicorn.Config(app, log_config=None, lifespan=lifespan, **config))


class Served:
    """`with server:` starts it and stops it on the way out, whatever happened inside."""

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AsyncServed:
    """`async with server:` starts it and stops it on the way out, whatever happened inside."""

    async def start(self) -> Self:
        raise NotImplementedError

    async def stop(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class _Serving:
    """uvicorn's `Server.serve` in two halves, `start` and `stop`, for a test's server.

    The same startup (lifespan, listening) and the same shutdown steps (stop listening, ask
    every connection to close, wait for them and their tasks up to the graceful timeout,
    lifespan shutdown), without the waits of a server stopped by a signal: uvicorn looks at
    `should_exit` every 0.1 s and sleeps 0.1 s more before it waits for connections, which
    adds ~0.2 s to every test that starts a server. Its 0.1 s ticks still run meanwhile (they
    keep the `Date` header current)."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self._ticks: asyncio.Task[None] | None = None

    async def start(self) -> None:
        server, config = self.server, self.server.config
        if not config.loaded:
            config.load()
        server.lifespan = config.lifespan_class(config)
        try:
            await server.startup(sockets=[self.sock])
        except SystemExit as exc:  # uvicorn's way of saying the lifespan startup failed
            raise RuntimeError("the server failed to start") from exc
        self._ticks = asyncio.create_task(server.main_loop())

    async def stop(self) -> None:
        server = self.server
        server.should_exit = True
        if self._ticks is None:
            return
        self._ticks.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._ticks
        self._ticks = None
        for listening in server.servers:
            listening.close()
        for connection in list(server.server_state.connections):
            connection.shutdown()
        state = server.server_state
        try:
            async with asyncio.timeout(server.config.timeout_graceful_shutdown):
                while state.connections or state.tasks:
                    await asyncio.sleep(0.01)
        except TimeoutError:
            for task in state.tasks:
                task.cancel(msg="Task cancelled, timeout graceful shutdown exceeded")
        for listening in server.servers:
            await listening.wait_closed()
        await server.lifespan.shutdown()


class LoopServer(AsyncServed):
    """`app` served by uvicorn in the running event loop."""

    def __init__(
        self,
        app: Any,
        *,
        lifespan: str = "off",
        sock: socket.socket | None = None,
        **config: Any,
    ) -> None:
        self.sock = sock if sock is not None else bind_loopback()
        self.port: int = self.sock.getsockname()[1]
        self.server = _uvicorn(app, lifespan=lifespan, **config)
        self._serving = _Serving(self.server, self.sock)

    async def start(self) -> Self:
        await self._serving.start()
        return self

    async def stop(self) -> None:
        try:
            await self._serving.stop()
        finally:
            self.sock.close()


class ThreadServer(Served):
    """`app` served by uvicorn in a daemon thread with an event loop of its own, for fakes
    that synchronous test code steers, or that must answer while the test's loop is busy.

    `on_exit(loop)` runs on that loop after the server has stopped, before the loop closes
    (to close clients or cancel tasks the app made there)."""

    def __init__(
        self,
        app: Any,
        *,
        name: str,
        nodelay: bool = False,
        on_exit: Callable[[asyncio.AbstractEventLoop], None] | None = None,
        **config: Any,
    ) -> None:
        self.sock = bind_loopback(nodelay=nodelay)
        self.port: int = self.sock.getsockname()[1]
        self.server = _uvicorn(app, lifespan="off", **config)
        self._serving = _Serving(self.server, self.sock)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._serve, name=name, daemon=True)

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        try:
            loop.run_until_complete(self._main(loop))
        finally:
            try:
                if self._on_exit is not None:
                    self._on_exit(loop)
            finally:
                loop.close()
                self.sock.close()

    async def _main(self, loop: asyncio.AbstractEventLoop) -> None:
        self._stop_requested = asyncio.Event()
        self._loop = loop
        try:
            await self._serving.start()
            await self._stop_requested.wait()
        finally:
            await self._serving.stop()

    def start(self) -> Self:
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self._thread.name} did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        loop, requested = self._loop, self._stop_requested
        if loop is not None and requested is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop has closed meanwhile
                loop.call_soon_threadsafe(requested.set)
        if self._thread.is_alive():
            self._thread.join(timeout=START_TIMEOUT)


class SocketServerThread(Served):
    """A `socketserver` server (already bound, e.g. ThreadingHTTPServer(("127.0.0.1", 0), ...))
    serving in a daemon thread.

    `before_close()` runs between shutdown and server_close: the place to wake handler
    threads parked on idle keep-alive connections, so that closing can join them."""

    def __init__(
        self,
        server: socketserver.BaseServer,
        *,
        poll_interval: float = 0.05,
        before_close: Callable[[], None] | None = None,
    ) -> None:
        self.server = server
        address = server.server_address
        assert isinstance(address, tuple)
        self.host: str = str(address[0])
        self.port: int = int(address[1])
        self.url = f"http://{self.host}:{self.port}"
        self._before_close = before_close
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": poll_interval}, daemon=True
        )

    def start(self) -> Self:
        # serve_forever answers as soon as the thread runs: the socket already listens.
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self.server.shutdown()
        if self._before_close is not None:
            self._before_close()
        self.server.server_close()
        if self._thread.ident is not None:
            self._thread.join()


# --------------------------------------------------------------- for the fakes' bare ASGI apps


async def read_body(receive: Callable[[], Awaitable[dict[str, Any]]]) -> bytes:
    """A request's whole body, from however many `http.request` messages it came in."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def send_response(
    send: Callable[[dict[str, Any]], Awaitable[None]],
    status: int,
    body: bytes,
    headers: list[tuple[str, str]],
) -> None:
    """One complete response: `headers` and a Content-Length, then `body`."""
    raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
    raw.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})
