"""Benchmark: event fan-out to many SSE watchers of one gateway, against a minimal broadcaster.

Starts its own nats-server, an empty database, one `openpitrix api` (uvicorn, the production
settings; its outbox relay publishes the events) and a minimal in-process broadcaster
(bench/bare_broadcast.py: the same frames to the same number of clients, no auth, no bus).

For each watcher count (`--watchers 1000,10000`: one round each, the gateway first measured
against the baseline), --clients load generator processes each open their share of the
connections to `GET /v1/events` (as the bootstrap admin, whose token is checked like any other)
and wait until each has its stream. Several processes, so that reading 10,000 streams in one
Python event loop does not become the figure: each stamps what it receives with
CLOCK_MONOTONIC (`time.monotonic()`), one clock for every process on the machine.

With every watcher connected and nothing happening, the gateway's CPU is read from /proc over
--idle-seconds (idle CPU, % of one core). Then --events job events (each the terminal event of
its own job) are written straight into the outbox (one transaction); the gateway's relay
publishes them on the bus, and every watcher must receive every one (zero lost). Latency is
from the event's arrival on the bus (a probe subscription in this process, same clock) to its
receipt by a watcher: first event of the burst per watcher, and every event. Delivery
throughput is frames received per second from the first arrival on the bus to the last
receipt; the baseline's, from its publish request.

usage: python bench/bench_sse.py [--watchers 1000,10000] [--events 20] [--clients 4]
                                 [--idle-seconds 10] [--keep]
       python bench/bench_sse.py --loadgen ...  (internal)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    BIN,
    OPENPITRIX,
    Child,
    Children,
    WorkDir,
    admin_env,
    clean_env,
    cpu_seconds,
    database_label,
    exit_on_sigterm,
    free_port,
    fresh_database,
    login,
    migrate,
    percentile,
    raise_fd_limit,
    start_nats,
    wait_http_ok,
    wait_ready,
)

MARK = re.compile(rb'"message":"bench-(\d+)"')
OWNER, KIND, RESOURCE, JOB = "usr-bench", "repo", "repo-bench", "job-bench"
# Connections a load generator opens at once (each waits for its stream's `retry:` line).
CONNECTING = 200


# ------------------------------------------------------------------------------ load generator


class Watch(asyncio.Protocol):
    """One SSE connection: the request, the response head up to the `retry:` line, then the
    time (CLOCK_MONOTONIC) each marked event arrived, by its number."""

    def __init__(self, gen: Gen) -> None:
        self.gen = gen
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.streaming = False
        self.finished = False
        self.received: dict[int, float] = {}
        self.error: str | None = None
        self.started: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.gen.request)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        buf = self.buf + data if self.buf else data
        if not self.streaming:
            head = buf.find(b"\r\n\r\n")
            if head < 0:
                self.buf = buf
                return
            if buf[9:12] != b"200":
                self._fail(buf[:40].decode(errors="replace"))
                return
            retry = buf.find(b"retry:", head)
            end = buf.find(b"\n\n", retry) if retry >= 0 else -1
            if end < 0:
                self.buf = buf
                return
            self.streaming = True
            buf = buf[end + 2 :]
            if not self.started.done():
                self.started.set_result(None)
        end = buf.rfind(b"\n\n")
        if end < 0:
            self.buf = buf
            return
        first = self.gen.first
        for match in MARK.finditer(buf, 0, end):
            self.received.setdefault(int(match.group(1)) - first, now)
        self.buf = buf[end + 2 :]
        if len(self.received) >= self.gen.events and not self.finished:
            # Kept open until every watcher is done: a watcher leaving mid-burst would make
            # the server tear connections down while it still delivers to the others.
            self.finished = True
            self.gen.finished()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished:
            self._fail(repr(exc) if exc else "closed")

    def _fail(self, why: str) -> None:
        if self.finished:
            return
        self.error = why
        self.finished = True
        self.gen.finished()
        if not self.started.done():
            self.started.set_result(None)
        if self.transport is not None:
            self.transport.close()


class Gen:
    """One load generator process's watchers."""

    def __init__(self, request: bytes, watchers: int, events: int, first: int) -> None:
        self.request = request
        self.events = events
        self.first = first
        self.left = watchers
        self.all_finished = asyncio.Event()

    def finished(self) -> None:
        self.left -= 1
        if self.left <= 0:
            self.all_finished.set()


async def _loadgen(args: argparse.Namespace) -> dict[str, Any]:
    parts = urlsplit(args.url)
    lines = [f"GET {parts.path} HTTP/1.1", f"Host: {parts.netloc}", *args.header]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    loop = asyncio.get_running_loop()
    gen = Gen(request, args.watchers, args.events, args.first)
    watches: list[Watch] = []
    connecting = asyncio.Semaphore(CONNECTING)

    async def connect() -> None:
        async with connecting:
            watch = Watch(gen)
            watches.append(watch)
            try:
                await loop.create_connection(lambda: watch, host, port)
            except OSError as exc:
                watch._fail(repr(exc))
            await watch.started

    await asyncio.gather(*(connect() for _ in range(args.watchers)))
    print("ready", sum(1 for w in watches if w.error), flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # "go": the burst is coming
    cpu = time.process_time()
    try:
        async with asyncio.timeout(args.timeout):
            await gen.all_finished.wait()
    except TimeoutError:
        pass
    cpu = time.process_time() - cpu
    print("done", flush=True)
    await asyncio.to_thread(sys.stdin.readline)  # EOF: the server's CPU has been read
    for watch in watches:
        if watch.transport is not None:
            watch.transport.close()
    return {
        "cpu": cpu,
        "received": [[w.received.get(i) for i in range(args.events)] for w in watches],
        "errors": [w.error for w in watches if w.error and len(w.received) < args.events],
    }


def loadgen_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--watchers", type=int, required=True)
    parser.add_argument("--events", type=int, required=True)
    parser.add_argument("--first", type=int, default=0, help="number of the first event")
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--header", action="append", default=[])
    parser.add_argument("--out", required=True, help="the result (JSON) goes to this file")
    args = parser.parse_args(argv)
    raise_fd_limit()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    # A file, not stdout: the event loop leaves the inherited pipes non-blocking, and a long
    # line written to one is cut at the pipe's buffer size.
    result = asyncio.run(_loadgen(args))
    Path(args.out).write_text(json.dumps(result))


class LoadGens:
    """--clients load generator processes, the watchers split between them: `ready()` once
    every watcher is connected, `go()` just before the burst, `result()` when every watcher
    is done (or the timeout passed)."""

    def __init__(self, clients: int, watchers: int, work: Path, args: list[str]) -> None:
        shares = [
            watchers // clients + (1 if i < watchers % clients else 0) for i in range(clients)
        ]
        self.outs = [work / f"loadgen-{i}.json" for i, share in enumerate(shares) if share]
        self.popens = [
            subprocess.Popen(
                [
                    *(sys.executable, __file__, "--loadgen", "--watchers", str(share)),
                    *("--out", str(work / f"loadgen-{i}.json"), *args),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i, share in enumerate(shares)
            if share
        ]

    def ready(self) -> int:
        refused = 0
        for popen in self.popens:
            assert popen.stdout is not None
            line = popen.stdout.readline()
            if not line.startswith("ready"):
                raise RuntimeError(f"load generator failed: {line!r}")
            refused += int(line.split()[1])
        return refused

    def go(self) -> None:
        for popen in self.popens:
            assert popen.stdin is not None
            popen.stdin.write("go\n")
            popen.stdin.flush()

    def wait_done(self) -> None:
        """Until every watcher has every event or the timeout passed (connections still
        open: the server's CPU for the burst is read before they are torn down)."""
        for popen in self.popens:
            assert popen.stdout is not None
            line = popen.stdout.readline()
            if not line.startswith("done"):
                raise RuntimeError(f"load generator failed: {line!r}")

    def result(self) -> tuple[list[list[float | None]], list[str], float]:
        """Per watcher, when each event arrived (None: lost); the errors; the CPU seconds the
        load generators spent from `go` to the end."""
        received: list[list[float | None]] = []
        errors: list[str] = []
        cpu = 0.0
        for popen, out in zip(self.popens, self.outs, strict=True):
            assert popen.stdin is not None
            popen.stdin.close()
            if popen.wait() != 0:
                raise RuntimeError("load generator failed")
            result = json.loads(out.read_text())
            out.unlink()
            received += result["received"]
            errors += result["errors"]
            cpu += result["cpu"]
        return received, errors, cpu


# ------------------------------------------------------------------------------ the run


@dataclass
class Burst:
    """What the watchers of one server received, against when each event was published."""

    received: list[list[float | None]]
    published: dict[int, float]
    errors: list[str]
    loadgen_cpu: float

    def summarise(self, events: int) -> dict[str, Any]:
        first: list[float] = []
        every: list[float] = []
        frames = complete = 0
        last = 0.0
        p0 = self.published.get(0)
        for times in self.received:
            got = [(i, t) for i, t in enumerate(times) if t is not None]
            frames += len(got)
            complete += len(got) == events
            if not got:
                continue
            last = max(last, *(t for _, t in got))
            if times[0] is not None and p0 is not None:
                first.append(times[0] - p0)
            every += [t - self.published[i] for i, t in got if i in self.published]
        start = min(self.published.values()) if self.published else float("nan")
        return {
            "watchers": len(self.received),
            "complete": complete,
            "frames": frames,
            "expected": len(self.received) * events,
            "first_p50": percentile(first, 50),
            "first_p99": percentile(first, 99),
            "first_max": max(first, default=float("nan")),
            "every_p99": percentile(every, 99),
            "wall": last - start,
            "bus_span": (max(self.published.values()) - start) if self.published else 0.0,
            "errors": len(self.errors),
            "error_sample": self.errors[:3],
            "loadgen_cpu": self.loadgen_cpu,
        }


async def write_events(database_url: str, first: int, count: int) -> None:
    """`count` events into the outbox in one transaction: the relay publishes them. Each is
    the terminal event of its own job on its own resource, so the relay (which keeps order
    per resource, one message of a key per wave) puts the burst on the bus in one wave."""
    from openpitrix.db.engine import Database
    from openpitrix.events.publisher import emit_event
    from openpitrix.events.schemas import EventType

    db = Database(database_url)
    try:
        async with db.transaction() as session:
            for i in range(first, first + count):
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


async def gateway_burst(
    gens: LoadGens, nats_url: str, database_url: str, first: int, events: int, pid: int
) -> tuple[Burst, float]:
    """The events through the outbox; when each reached the bus, by a probe subscription.
    Also the CPU seconds of process `pid` (the gateway) from just before the write to the
    moment every watcher is done."""
    import nats

    published: dict[int, float] = {}

    async def on_msg(msg: Any) -> None:
        match = MARK.search(msg.data)
        if match:
            published.setdefault(int(match.group(1)) - first, time.monotonic())

    probe = await nats.connect(nats_url)
    try:
        await probe.subscribe("op.evt.>", cb=on_msg)
        await probe.flush()
        gens.go()
        server_cpu = cpu_seconds(pid)
        await write_events(database_url, first, events)
        await asyncio.to_thread(gens.wait_done)
        server_cpu = cpu_seconds(pid) - server_cpu
        received, errors, cpu = await asyncio.to_thread(gens.result)
    finally:
        await probe.close()
    return Burst(received, published, errors, cpu), server_cpu


def baseline_burst(gens: LoadGens, url: str, frames: list[str], pid: int) -> tuple[Burst, float]:
    """The same frames handed to the minimal broadcaster (process `pid`) in one request;
    its CPU seconds until every watcher is done."""
    body = json.dumps(frames).encode()
    with httpx.Client(base_url=url, timeout=60) as http:
        http.get("/")  # connected before the clock starts
        gens.go()
        server_cpu = cpu_seconds(pid)
        t0 = time.monotonic()
        http.post("/publish", content=body).raise_for_status()
    gens.wait_done()
    server_cpu = cpu_seconds(pid) - server_cpu
    received, errors, cpu = gens.result()
    return Burst(received, dict.fromkeys(range(len(frames)), t0), errors, cpu), server_cpu


def sample_frames(first: int, count: int) -> list[str]:
    """Frames of the same size as the gateway's: an event document like the real ones."""
    from openpitrix.db.types import utcnow
    from openpitrix.events.schemas import Event, EventType, ResourceRef
    from openpitrix.events.sse import format_sse

    frames = []
    for i in range(first, first + count):
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


@contextlib.contextmanager
def profiled(child: Child, path: str | None) -> Iterator[None]:
    """With a path: py-spy samples the process meanwhile (collapsed stacks, --profile)."""
    if not path:
        yield
        return
    spy = subprocess.Popen(
        [
            *(str(BIN / "py-spy"), "record", "--pid", str(child.pid), "--rate", "500"),
            *("--format", "raw", "--output", path, "--nonblocking"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # attached
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait()
        print(f"profile of the gateway during the burst: {path}")


def idle_cpu(pid: int, seconds: float) -> float:
    before = cpu_seconds(pid)
    time.sleep(seconds)
    return (cpu_seconds(pid) - before) / seconds


def report(label: str, result: dict[str, Any]) -> float:
    rate = result["frames"] / result["wall"] if result["wall"] > 0 else float("nan")
    print(
        f"{label:<22} {result['complete']:>6}/{result['watchers']:<6} "
        f"{result['frames']:>7}/{result['expected']:<7} "
        f"{result['first_p50'] * 1000:7.0f} {result['first_p99'] * 1000:7.0f} "
        f"{result['first_max'] * 1000:7.0f} {result['every_p99'] * 1000:7.0f} "
        f"{rate:9.0f} {result['wall']:6.2f} {result['loadgen_cpu']:6.2f}  {result['errors']} "
        f"{result['error_sample'] if result['errors'] else ''}"
    )
    return rate


@dataclass
class Servers:
    gateway: Child
    bare: Child
    gateway_url: str
    bare_url: str
    nats_url: str
    database_url: str
    headers: dict[str, str]
    work: Path


def round_of(servers: Servers, args: argparse.Namespace, watchers: int, first: int) -> bool:
    events, clients = args.events, min(args.clients, watchers)
    common = ["--events", str(events), "--first", str(first)]
    print(
        f"\n{watchers} watchers, {events} events, load generated by {clients} processes "
        f"({watchers // clients}+ connections each)"
    )

    # The baseline first: the same frames to the same number of clients.
    base_gens = LoadGens(
        clients, watchers, servers.work, ["--url", f"{servers.bare_url}/events", *common]
    )
    base_gens.ready()
    base_idle = idle_cpu(servers.bare.pid, min(args.idle_seconds, 3.0))
    base, base_cpu = baseline_burst(
        base_gens, servers.bare_url, sample_frames(first, events), servers.bare.pid
    )
    base_summary = base.summarise(events)

    headers = [f"--header={k}: {v}" for k, v in servers.headers.items()]
    gens = LoadGens(
        clients,
        watchers,
        servers.work,
        ["--url", f"{servers.gateway_url}/v1/events", *common, *headers],
    )
    refused = gens.ready()
    servers.gateway.check_running()
    gw_idle = idle_cpu(servers.gateway.pid, args.idle_seconds)
    with profiled(servers.gateway, args.profile and f"{args.profile}-{watchers}.txt"):
        burst, gw_cpu = asyncio.run(
            gateway_burst(
                gens, servers.nats_url, servers.database_url, first, events, servers.gateway.pid
            )
        )
    servers.gateway.check_running()
    summary = burst.summarise(events)

    print(
        f"idle CPU with every watcher connected: gateway {gw_idle * 100:.1f}% of a core "
        f"over {args.idle_seconds:.0f} s ({refused} refused), baseline {base_idle * 100:.1f}%"
    )
    print(
        f"{'server':<22} {'complete':>13} {'frames':>15} {'first':>7} {'first':>7} "
        f"{'first':>7} {'all':>7} {'frames/s':>9} {'wall':>6} {'client':>6}  errors"
    )
    print(
        f"{'':<22} {'':>13} {'':>15} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7} {'p99 ms':>7} "
        f"{'':>9} {'s':>6} {'CPU-s':>6}"
    )
    base_rate = report("minimal broadcaster", base_summary)
    rate = report("gateway /v1/events", summary)
    print(
        f"the relay put the {events} events on the bus within {summary['bus_span'] * 1000:.1f} ms;"
        f" server CPU from the write to the last receipt: gateway {gw_cpu:.2f} s, baseline "
        f"{base_cpu:.2f} s"
    )
    print(f"delivery throughput ratio to the minimal broadcaster: {rate / base_rate:.3f}")
    return bool(summary["complete"] == watchers)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--watchers", default="1000,10000", help="watcher counts, comma-separated (one round each)"
    )
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--clients", type=int, default=4, help="load generator processes")
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the work dir (process logs)")
    parser.add_argument(
        "--profile",
        metavar="PREFIX",
        help="sample the gateway with py-spy during each burst into PREFIX-<watchers>.txt",
    )
    return parser.parse_args()


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        loadgen_main(sys.argv[2:])
        return
    args = parse_args()
    rounds = [int(n) for n in args.watchers.split(",")]
    exit_on_sigterm()
    raise_fd_limit()
    with (
        WorkDir("op-bench-sse-", keep=args.keep) as work_dir,
        fresh_database(work_dir.path) as database_url,
        Children(work_dir.path / "logs") as children,
    ):
        work = work_dir.path
        nats_url, _ = start_nats(children, work)
        env = clean_env(
            {
                "OPENPITRIX_DATABASE_URL": database_url,
                "OPENPITRIX_NATS_URL": nats_url,
                "OPENPITRIX_DATA_DIR": str(work / "data"),
                "OPENPITRIX_LOG_LEVEL": "WARNING",
                "OPENPITRIX_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
                "OPENPITRIX_AUTH__ACCESS_TOKEN_TTL_SECONDS": "21600",
                "OPENPITRIX_HTTP__SSE_STREAMS_PER_CALLER": str(max(rounds) + 10),
                "OPENPITRIX_HTTP__SSE_STREAMS_PER_PROCESS": str(max(rounds) + 10),
                **admin_env(),
            }
        )
        migrate(env)
        print(
            f"events benchmark: watchers of /v1/events on one gateway, "
            f"database {database_label(database_url)}"
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
        servers = Servers(
            gateway, bare, gw_url, bare_url, nats_url, database_url, login(gw_url), work
        )
        ok = True
        for number, watchers in enumerate(rounds):
            ok = round_of(servers, args, watchers, number * args.events) and ok
        work_dir.ok = ok


if __name__ == "__main__":
    main()
