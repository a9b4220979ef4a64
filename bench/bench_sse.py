"""Benchmark: event fan-out to many SSE watchers of one gateway, against a minimal broadcaster.

Starts its own nats-server, an empty database, one `openpitrix api` (uvicorn, the production
settings; its outbox relay publishes the events) and a minimal in-process broadcaster
(bench/bare_broadcast.py: the same frames to the same number of clients, no auth, no bus).

A load generator in its own process opens --watchers connections to `GET /v1/events` (as the
bootstrap admin, whose token is checked like any other) and waits until each has its stream.
With every watcher connected and nothing happening, the gateway's CPU is read from /proc over
--idle-seconds (idle CPU, % of one core). Then --events job events (each the terminal event of
its own job) are written straight into the outbox (one transaction); the gateway's relay
publishes them on the bus, and every watcher must receive every one (zero lost). Latency is
from the event's arrival on the bus (a probe subscription in the load generator, same clock)
to its receipt by a watcher: first event of the burst per watcher, and every event. Delivery
throughput is frames received per second from the first publish to the last receipt; the
baseline's, from its publish request.

usage: python bench/bench_sse.py [--watchers 1000] [--events 20] [--idle-seconds 10] [--keep]
       python bench/bench_sse.py --loadgen ...  (internal)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import resource
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    OPENPITRIX,
    Children,
    admin_env,
    clean_env,
    database_label,
    exit_on_sigterm,
    free_port,
    fresh_database,
    login,
    wait_http_ok,
    wait_ready,
)

MARK = re.compile(rb'"message":"bench-(\d+)"')
OWNER, KIND, RESOURCE, JOB = "usr-bench", "repo", "repo-bench", "job-bench"


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def raise_fd_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


# ------------------------------------------------------------------------------ load generator


class Watcher:
    def __init__(self, events: int) -> None:
        self.received: dict[int, float] = {}
        self.events = events
        self.done = asyncio.Event()
        self.connected = asyncio.Event()
        self.error: str | None = None


async def _watch(
    host: str, port: int, request: bytes, watcher: Watcher, connected: asyncio.Semaphore
) -> None:
    try:
        async with connected:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if head[9:12] != b"200":
                watcher.error = head[:40].decode(errors="replace")
                watcher.done.set()
                watcher.connected.set()
                return
            buf = b""
            while b"retry:" not in buf:
                buf += await reader.read(65536)
        watcher.connected.set()
        buf = b""
        while True:
            chunk = await reader.read(65536)
            if not chunk:
                watcher.error = "closed"
                watcher.done.set()
                return
            now = time.perf_counter()
            buf += chunk
            end = buf.rfind(b"\n\n")
            if end < 0:
                continue
            for match in MARK.finditer(buf, 0, end):
                watcher.received.setdefault(int(match.group(1)), now)
            buf = buf[end + 2 :]
            if len(watcher.received) >= watcher.events:
                watcher.done.set()
                writer.close()
                return
    except Exception as exc:  # reported, counted as lost
        watcher.error = repr(exc)
        watcher.done.set()
    finally:
        watcher.connected.set()


async def _loadgen(args: argparse.Namespace) -> dict[str, Any]:
    parts = urlsplit(args.url)
    lines = [f"GET {parts.path} HTTP/1.1", f"Host: {parts.netloc}", *args.header]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    published: dict[int, float] = {}
    probe = None
    if args.nats:
        import nats

        probe = await nats.connect(args.nats)

        async def on_msg(msg: Any) -> None:
            match = MARK.search(msg.data)
            if match:
                published.setdefault(int(match.group(1)), time.perf_counter())

        await probe.subscribe("op.evt.>", cb=on_msg)
    watchers = [Watcher(args.events) for _ in range(args.watchers)]
    connecting = asyncio.Semaphore(200)
    tasks = [asyncio.create_task(_watch(host, port, request, w, connecting)) for w in watchers]
    # Connected: every watcher past its `retry:` line (or failed).
    await asyncio.gather(*(w.connected.wait() for w in watchers))
    await asyncio.sleep(0.5)
    refused = [w.error for w in watchers if w.error]
    print("ready", len(refused), flush=True)
    line = await asyncio.to_thread(sys.stdin.readline)
    if line.strip() == "publish" and args.publish:
        frames = json.loads(await asyncio.to_thread(Path(args.publish).read_bytes))
        _reader, writer = await asyncio.open_connection(host, port)
        body = json.dumps(frames).encode()
        t0 = time.perf_counter()
        for i in range(len(frames)):
            published[i] = t0
        writer.write(
            f"POST /publish HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        await writer.drain()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(w.done.wait() for w in watchers)), timeout=args.timeout
        )
    for task in tasks:
        task.cancel()
    if probe is not None:
        await probe.close()
    first: list[float] = []
    every: list[float] = []
    last = 0.0
    frames_received = 0
    complete = 0
    for w in watchers:
        frames_received += len(w.received)
        if len(w.received) >= args.events:
            complete += 1
        if not w.received:
            continue
        last = max(last, *w.received.values())
        if 0 in w.received and 0 in published:
            first.append(w.received[0] - published[0])
        every += [t - published[i] for i, t in w.received.items() if i in published]
    start = min(published.values()) if published else float("nan")
    errors = [w.error for w in watchers if w.error and len(w.received) < args.events]
    return {
        "watchers": args.watchers,
        "complete": complete,
        "frames": frames_received,
        "expected": args.watchers * args.events,
        "first_p50": percentile(first, 50),
        "first_p99": percentile(first, 99),
        "every_p50": percentile(every, 50),
        "every_p99": percentile(every, 99),
        "wall": last - start,
        "bus_span": (max(published.values()) - start) if published else float("nan"),
        "errors": len(errors),
        "error_sample": errors[:3],
    }


def loadgen_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--watchers", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--nats", default="")
    parser.add_argument("--publish", default="")
    parser.add_argument("--header", action="append", default=[])
    args = parser.parse_args(argv)
    raise_fd_limit()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    print(json.dumps(asyncio.run(_loadgen(args))), flush=True)


class LoadGen:
    """The load generator in its own process: `ready()` once every watcher is connected,
    `go()` to let it time the burst, `result()` when every watcher is done."""

    def __init__(self, args: list[str]) -> None:
        self.popen = subprocess.Popen(
            [sys.executable, __file__, "--loadgen", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def ready(self) -> int:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line.startswith("ready"):
            raise RuntimeError(f"load generator failed: {line!r}")
        return int(line.split()[1])

    def go(self, word: str = "go") -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(word + "\n")
        self.popen.stdin.flush()

    def result(self) -> dict[str, Any]:
        out, _ = self.popen.communicate()
        if self.popen.returncode != 0:
            raise RuntimeError("load generator failed")
        return cast(dict[str, Any], json.loads(out.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------ the run


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def idle_cpu(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


async def write_events(database_url: str, count: int) -> None:
    """`count` events into the outbox in one transaction: the relay publishes them. Each is
    the terminal event of its own job on its own resource, so the relay (which keeps order
    per resource, one message of a key per wave) puts the burst on the bus in one wave."""
    from openpitrix.db.engine import Database
    from openpitrix.events.publisher import emit_event
    from openpitrix.events.schemas import EventType

    db = Database(database_url)
    try:
        async with db.transaction() as session:
            for i in range(count):
                emit_event(
                    session,
                    type=EventType.JOB_STATUS,
                    owner=OWNER,
                    owner_path=f":{OWNER}",
                    resource_kind=KIND,
                    resource_id=f"{RESOURCE}-{i}",
                    job_id=f"{JOB}-{i}",
                    status="successful",
                    message=f"bench-{i}",
                )
    finally:
        await db.dispose()


def sample_frames(count: int) -> list[str]:
    """Frames of the same size as the gateway's: an event document like the real ones."""
    from openpitrix.db.types import utcnow
    from openpitrix.events.schemas import Event, EventType, ResourceRef
    from openpitrix.events.sse import format_sse

    frames = []
    for i in range(count):
        event = Event(
            id=secrets.token_hex(16),
            type=EventType.JOB_STATUS,
            ts=utcnow(),
            job_id=f"{JOB}-{i}",
            resource=ResourceRef(kind=KIND, id=f"{RESOURCE}-{i}"),
            owner=OWNER,
            owner_path=f":{OWNER}",
            status="successful",
            message=f"bench-{i}",
        )
        frames.append(format_sse(i + 1, event.type, event.model_dump_json().encode()).decode())
    return frames


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--watchers", type=int, default=1000)
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the work dir (process logs)")
    return parser.parse_args()


def report(label: str, result: dict[str, Any]) -> float:
    rate = result["frames"] / result["wall"] if result["wall"] > 0 else float("nan")
    print(
        f"{label:<26} {result['complete']:>6}/{result['watchers']:<6} "
        f"{result['frames']:>8}/{result['expected']:<8} "
        f"{result['first_p50'] * 1000:8.1f} {result['first_p99'] * 1000:8.1f} "
        f"{result['every_p99'] * 1000:8.1f} {rate:10.0f}  {result['errors']} "
        f"{result['error_sample'] if result['errors'] else ''}"
    )
    return rate


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        loadgen_main(sys.argv[2:])
        return
    args = parse_args()
    exit_on_sigterm()
    raise_fd_limit()
    work = Path(tempfile.mkdtemp(prefix="op-bench-sse-"))
    ok = False
    try:
        with fresh_database(work) as database_url, Children(work / "logs") as children:
            from bench_reads import start_nats

            nats_url = start_nats(children, work)
            env = clean_env(
                {
                    "OPENPITRIX_DATABASE_URL": database_url,
                    "OPENPITRIX_NATS_URL": nats_url,
                    "OPENPITRIX_DATA_DIR": str(work / "data"),
                    "OPENPITRIX_LOG_LEVEL": "WARNING",
                    "OPENPITRIX_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
                    "OPENPITRIX_AUTH__ACCESS_TOKEN_TTL_SECONDS": "21600",
                    "OPENPITRIX_HTTP__SSE_STREAMS_PER_CALLER": str(args.watchers + 10),
                    "OPENPITRIX_HTTP__SSE_STREAMS_PER_PROCESS": str(args.watchers + 10),
                    **admin_env(),
                }
            )
            migrated = subprocess.run(
                [*OPENPITRIX, "migrate"], env=env, capture_output=True, text=True, check=False
            )
            if migrated.returncode != 0:
                raise SystemExit(f"openpitrix migrate failed:\n{migrated.stderr}")
            print(
                f"events benchmark: {args.watchers} watchers of /v1/events on one gateway, "
                f"{args.events} job events, database {database_label(database_url)}"
            )
            gw_port, bare_port = free_port(), free_port()
            gateway = children.start(
                "api", [*OPENPITRIX, "api", "--host", "127.0.0.1", "--port", str(gw_port)], env
            )
            bare_script = str(Path(__file__).resolve().parent / "bare_broadcast.py")
            bare = children.start("bare", [sys.executable, bare_script, str(bare_port)], env)
            gw_url, bare_url = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{bare_port}"
            wait_ready(gw_url, gateway)
            wait_http_ok(f"{bare_url}/", bare)
            headers = login(gw_url)
            common = ["--watchers", str(args.watchers), "--events", str(args.events)]

            # The baseline first: the same frames to the same number of clients.
            frames_file = work / "frames.json"
            frames_file.write_text(json.dumps(sample_frames(args.events)))
            base_gen = LoadGen(
                ["--url", f"{bare_url}/events", *common, "--publish", str(frames_file)]
            )
            base_gen.ready()
            base_idle = idle_cpu(bare.pid, min(args.idle_seconds, 3.0))
            base_gen.go("publish")
            base = base_gen.result()

            gen = LoadGen(
                [
                    "--url",
                    f"{gw_url}/v1/events",
                    *common,
                    "--nats",
                    nats_url,
                    *[f"--header={k}: {v}" for k, v in headers.items()],
                ]
            )
            refused = gen.ready()
            gateway.check_running()
            gw_idle = idle_cpu(gateway.pid, args.idle_seconds)
            asyncio.run(write_events(database_url, args.events))
            gen.go()
            result = gen.result()
            gateway.check_running()

            print(
                f"\nidle CPU with every watcher connected: gateway {gw_idle * 100:.1f}% of a "
                f"core ({refused} refused), baseline {base_idle * 100:.1f}%"
            )
            print(
                f"\n{'server':<26} {'complete':>13} {'frames':>17} {'first p50':>8} "
                f"{'first p99':>8} {'all p99':>8} {'frames/s':>10}  errors"
            )
            base_rate = report("minimal broadcaster", base)
            rate = report("gateway /v1/events", result)
            print(
                f"\nthe relay put the {args.events} events on the bus within "
                f"{result['bus_span'] * 1000:.1f} ms"
            )
            print(f"delivery throughput ratio to the minimal broadcaster: {rate / base_rate:.3f}")
            ok = result["complete"] == args.watchers
    finally:
        if args.keep or not ok:
            print(f"\nwork dir (process logs) kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
