"""The fake QingCloud server: uvicorn in a thread of its own, the wire checks, and the handles
tests steer it by."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import orjson

from tests.support.qingcloud_fake.cloud import Cloud
from tests.support.qingcloud_fake.resources import FakeInstance, FakeJob, FakeVolume
from tests.support.qingcloud_fake.wire import (
    PATH,
    ApiError,
    arguments,
    check_time,
    parse_query,
    respond,
    verify_signature,
)
from tests.support.threaded_server import Served, ThreadServer, read_body


@dataclass(frozen=True)
class Request:
    """One request as the fake received it (parameters decoded, signature left out)."""

    method: str
    action: str
    params: dict[str, str]


class QingCloudFake(Served):
    """The fake server. `url` is the endpoint (`http://127.0.0.1:PORT/iaas/`); requests signed
    with `access_key_id`/`secret_access_key` (or a key added with `add_key`) are accepted."""

    def __init__(
        self,
        *,
        zones: tuple[str, ...] = ("pek3a", "pek3b", "sh1a"),
        images: tuple[str, ...] = ("centos7x64d", "bionic1x64"),
        job_delay: float = 0.05,
        max_clock_skew: float = 60.0,
    ) -> None:
        self.cloud = Cloud(zones=zones, images=images, job_delay=job_delay)
        self.max_clock_skew = max_clock_skew
        self.access_key_id = "QYFAKEACCESSKEY" + secrets.token_hex(3).upper()
        self.secret_access_key = secrets.token_urlsafe(30)
        self.requests: list[Request] = []  # requests with the common parameters, in order
        self.hits = 0  # every HTTP request that reached the server, whatever it held
        self.url = ""
        self._lock = self.cloud.lock
        self._keys = {self.access_key_id: self.secret_access_key}
        self._failures: dict[str, list[ApiError]] = {}
        self._gates: dict[str, int] = {}  # action -> how many more of it pass before a hold
        self._gate_open = threading.Event()
        self.waiting_requests = 0  # requests held at a gate, unanswered
        self._http_statuses: list[int] = []
        self._server: ThreadServer | None = None

    @property
    def quota(self) -> dict[str, int]:
        """What the account may hold, by resource type; tests change it in place."""
        return self.cloud.quota

    # --------------------------------------------------------------------------- lifecycle

    def start(self) -> QingCloudFake:
        def cancel_jobs(loop: asyncio.AbstractEventLoop) -> None:
            self.cloud.cancel_jobs()
            loop.run_until_complete(asyncio.sleep(0))

        self._server = ThreadServer(
            self,
            name="qingcloud-fake",
            nodelay=True,
            on_exit=cancel_jobs,
            timeout_graceful_shutdown=1,
        )
        self.url = f"http://127.0.0.1:{self._server.port}{PATH}"
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

    # ------------------------------------------------------------------- steering by tests

    def add_key(self, access_key_id: str, secret_access_key: str) -> None:
        with self._lock:
            self._keys[access_key_id] = secret_access_key

    def fail_next(self, action: str, ret_code: int, message: str) -> None:
        """The next call of `action` (signed correctly) gets this QingCloud error."""
        with self._lock:
            self._failures.setdefault(action, []).append(ApiError(ret_code, message))

    def fail_jobs(self, action: str, count: int = 1) -> None:
        """The next `count` jobs of `action` end `failed` (what they made is terminated)."""
        with self._lock:
            self.cloud.failing_jobs[action] = self.cloud.failing_jobs.get(action, 0) + count

    def http_status_next(self, status: int) -> None:
        """The next request gets this HTTP status and a non-JSON body (a proxy's 502...)."""
        with self._lock:
            self._http_statuses.append(status)

    def pause_jobs(self) -> None:
        """Jobs stay where they are (pending, or working) until `resume_jobs`."""
        with self._lock:
            self.cloud.paused = True

    def resume_jobs(self) -> None:
        with self._lock:
            self.cloud.paused = False

    def hold_jobs(self, action: str) -> None:
        """Jobs of `action` stay `pending` until `release_jobs` (RunInstances' instances stay
        unlisted meanwhile: a launch accepted, not yet visible)."""
        with self._lock:
            self.cloud.held_jobs.add(action)

    def release_jobs(self, action: str) -> None:
        with self._lock:
            self.cloud.held_jobs.discard(action)

    def hold_requests(self, action: str, *, after: int = 0) -> None:
        """Requests of `action` after the next `after` wait unanswered (not yet taken by the
        cloud) until `release_requests`: a request in flight when its sender dies."""
        with self._lock:
            self._gates[action] = after
            self._gate_open.clear()

    def release_requests(self) -> None:
        """Let held requests through: QingCloud takes them, as it would a request it got
        just before its sender died."""
        with self._lock:
            self._gates.clear()
            self._gate_open.set()

    def instances(self) -> list[FakeInstance]:
        with self._lock:
            return [
                replace(i, volume_ids=list(i.volume_ids)) for i in self.cloud.instances.values()
            ]

    def volumes(self) -> list[FakeVolume]:
        with self._lock:
            return [replace(v) for v in self.cloud.volumes.values()]

    def jobs(self) -> list[FakeJob]:
        with self._lock:
            return [replace(j, resource_ids=list(j.resource_ids)) for j in self.cloud.jobs.values()]

    def actions(self) -> list[str]:
        with self._lock:
            return [r.action for r in self.requests]

    # ------------------------------------------------------------------------------- ASGI

    async def __call__(
        self,
        scope: dict[str, Any],
        receive: Callable[[], Any],
        send: Callable[[dict[str, Any]], Any],
    ) -> None:
        if scope["type"] != "http":
            return
        body = await read_body(receive)
        with self._lock:
            self.hits += 1
            status = self._http_statuses.pop(0) if self._http_statuses else None
        if status is not None:
            await respond(send, status, b"<html>upstream trouble</html>", "text/html")
            return
        if scope["path"] != PATH:
            await respond(send, 404, b"not found", "text/plain")
            return
        method = scope["method"]
        if method == "GET":
            raw = scope["query_string"].decode("latin-1")
        elif method == "POST":
            raw = body.decode("latin-1")
        else:
            await respond(send, 405, b"method not allowed", "text/plain")
            return
        if self._gates:
            with contextlib.suppress(ApiError):  # a malformed request is refused below
                await self._gate(parse_query(raw).get("action", ""))
        try:
            answer = self._handle(method, raw)
        except ApiError as exc:
            answer = {"ret_code": exc.ret_code, "message": exc.message}
        await respond(send, 200, orjson.dumps(answer), "application/json")

    async def _gate(self, action: str) -> None:
        with self._lock:
            if action not in self._gates:
                return
            if self._gates[action] > 0:
                self._gates[action] -= 1
                return
            self.waiting_requests += 1
        try:
            # On the fake's loop: other requests go on while this one waits.
            while not self._gate_open.is_set():
                await asyncio.sleep(0.01)
        finally:
            with self._lock:
                self.waiting_requests -= 1

    def _handle(self, method: str, raw: str) -> dict[str, Any]:
        params = parse_query(raw)
        with self._lock:
            unsigned = {k: v for k, v in params.items() if k != "signature"}
            self.requests.append(Request(method, params["action"], unsigned))
            secret = self._keys.get(params["access_key_id"])
        verify_signature(method, params, secret)
        check_time(params, self.max_clock_skew)
        action = params["action"]
        args = arguments(action, params, self.cloud.zones)
        with self._lock:
            queued = self._failures.get(action)
            if queued:
                raise queued.pop(0)
            result = self.cloud.handle(action, args)
        return {"action": f"{action}Response", "ret_code": 0, **result}


@contextmanager
def running_fake(**options: Any) -> Iterator[QingCloudFake]:
    """A started fake, stopped on exit."""
    fake = QingCloudFake(**options)
    fake.start()
    try:
        yield fake
    finally:
        fake.stop()
