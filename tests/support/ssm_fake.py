"""An AWS endpoint for tests whose Systems Manager commands can fail: moto's server behind a
forwarding proxy that answers `GetCommandInvocation` itself for the commands a test made fail.

moto runs every SSM command at once and reports `Success` on every instance; a real SSM agent
runs the script and reports `Failed` with its exit code and output when the script fails. The
proxy keeps everything else moto's (EC2, STS, the commands themselves, which `ListCommands` on
moto still shows): each request goes to moto unchanged and moto's answer comes back unchanged,
except that, for a command whose script contains what `fail_commands` names, on the instances
it names, `GetCommandInvocation` answers in SSM's own JSON shape, first `InProgress` (as the
agent reports a running script), then `Failed` with the exit code and output given. Requests
are signed for the proxy's address; moto does not check signatures, so forwarding them is
transparent to it."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson

from tests.support.aws import MotoAws
from tests.support.threaded_server import ThreadServer, read_body, send_response

SSM_JSON = "application/x-amz-json-1.1"
HOP_HEADERS = frozenset({"host", "content-length", "connection", "transfer-encoding"})


@dataclass(frozen=True)
class Failure:
    """What a script containing `containing` does on `instance_ids` (all, when None)."""

    containing: str
    instance_ids: frozenset[str] | None
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class Sent:
    """One command moto accepted: its script and targets, and how often each instance's
    invocation was asked for."""

    command_id: str
    instance_ids: list[str]
    script: str
    comment: str
    asked: dict[str, int]


class FailingSsm:
    """moto's AWS server, reached through this proxy at `url`."""

    def __init__(self, moto: MotoAws) -> None:
        self.moto = moto
        self.url = ""
        self.sent: dict[str, Sent] = {}
        self._failures: list[Failure] = []
        self._lock = threading.Lock()
        self._server: ThreadServer | None = None
        self._http: httpx.AsyncClient | None = None

    # ------------------------------------------------------------------- steering by tests

    def fail_commands(
        self,
        containing: str,
        *,
        instance_ids: set[str] | None = None,
        exit_code: int = 1,
        stdout: str = "",
        stderr: str = "",
    ) -> None:
        """Scripts containing `containing` fail on these instances (every one, if None)."""
        with self._lock:
            self._failures.append(
                Failure(
                    containing,
                    frozenset(instance_ids) if instance_ids is not None else None,
                    exit_code,
                    stdout,
                    stderr,
                )
            )

    def heal(self) -> None:
        """Scripts stop failing: every later command runs as moto runs it."""
        with self._lock:
            self._failures.clear()

    def commands(self) -> list[Sent]:
        with self._lock:
            return list(self.sent.values())

    # --------------------------------------------------------------------------- lifecycle

    def start(self) -> FailingSsm:
        def close_client(loop: asyncio.AbstractEventLoop) -> None:
            if self._http is not None:
                loop.run_until_complete(self._http.aclose())

        self._server = ThreadServer(self, name="ssm-fake", on_exit=close_client)
        self.url = f"http://127.0.0.1:{self._server.port}"
        self._server.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()

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
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        target = headers.get("x-amz-target", "")
        if target == "AmazonSSM.GetCommandInvocation":
            answer = self._invocation(orjson.loads(body))
            if answer is not None:
                await send_response(send, 200, orjson.dumps(answer), [("content-type", SSM_JSON)])
                return
        status, out_headers, out = await self._forward(scope, headers, body)
        if target == "AmazonSSM.SendCommand" and status == 200:
            self._record(orjson.loads(body), orjson.loads(out))
        await send_response(send, status, out, out_headers)

    async def _forward(
        self, scope: dict[str, Any], headers: dict[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=30.0)
        query = scope["query_string"].decode("latin-1")
        url = f"{self.moto.url}{scope['path']}" + (f"?{query}" if query else "")
        answer = await self._http.request(
            scope["method"],
            url,
            content=body,
            headers={k: v for k, v in headers.items() if k not in HOP_HEADERS},
        )
        kept = [
            (k, v)
            for k, v in answer.headers.items()
            if k.lower() not in HOP_HEADERS and k.lower() != "content-encoding"
        ]
        return answer.status_code, kept, answer.content

    def _record(self, request: dict[str, Any], answer: dict[str, Any]) -> None:
        command = answer["Command"]
        with self._lock:
            self.sent[command["CommandId"]] = Sent(
                command_id=command["CommandId"],
                instance_ids=list(request.get("InstanceIds") or []),
                script="\n".join((request.get("Parameters") or {}).get("commands") or []),
                comment=str(request.get("Comment", "")),
                asked={},
            )

    def _invocation(self, request: dict[str, Any]) -> dict[str, Any] | None:
        """SSM's answer for an invocation that fails, or None to let moto answer."""
        command_id, instance_id = request.get("CommandId", ""), request.get("InstanceId", "")
        with self._lock:
            sent = self.sent.get(command_id)
            if sent is None or instance_id not in sent.instance_ids:
                return None
            failure = next(
                (
                    f
                    for f in self._failures
                    if f.containing in sent.script
                    and (f.instance_ids is None or instance_id in f.instance_ids)
                ),
                None,
            )
            if failure is None:
                return None
            asked = sent.asked[instance_id] = sent.asked.get(instance_id, 0) + 1
        now = datetime.now(UTC).isoformat()
        running = asked == 1  # the agent reports the script running before it ends
        return {
            "CommandId": command_id,
            "InstanceId": instance_id,
            "Comment": sent.comment,
            "DocumentName": "AWS-RunShellScript",
            "DocumentVersion": "$DEFAULT",
            "PluginName": "aws:runShellScript",
            "ResponseCode": -1 if running else failure.exit_code,
            "ExecutionStartDateTime": now,
            "ExecutionElapsedTime": "PT0.1S",
            "ExecutionEndDateTime": "" if running else now,
            "Status": "InProgress" if running else "Failed",
            "StatusDetails": "InProgress" if running else "Failed",
            "StandardOutputContent": "" if running else failure.stdout,
            "StandardOutputUrl": "",
            "StandardErrorContent": "" if running else failure.stderr,
            "StandardErrorUrl": "",
            "CloudWatchOutputConfig": {
                "CloudWatchLogGroupName": "",
                "CloudWatchOutputEnabled": False,
            },
        }


@contextmanager
def failing_ssm(moto: MotoAws) -> Iterator[FailingSsm]:
    """A started proxy in front of `moto`, stopped on exit."""
    proxy = FailingSsm(moto).start()
    try:
        yield proxy
    finally:
        proxy.stop()
