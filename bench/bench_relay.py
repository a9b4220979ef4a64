"""Benchmark: messages per second through the outbox relay, against a bare JetStream publisher.

Each round inserts N outbox rows with the real writer (`outbox.writer.enqueue`, not timed):
`--jobs` jobs x `--per-job` messages, every fourth a task-manager command and the others events
of the job's cluster, the jobs' messages interleaved at random (each job's in its own order),
as many jobs progressing at once write them. Then it starts the relay processes (`--relays`, each
its own process with its own database engine and NATS connection, as gateway and workers run
them) and measures from "go" until a consumer has every message. The consumer checks each
message against its key (the job for commands, the resource for events): every message exactly
once, in the order written.

The baseline, measured in the same run: one process publishing the same messages (same
subjects, payloads, Nats-Msg-Id) with nats-py's pipelined `publish_async`, in the order written,
no database. The ratio shows what the relay costs on top of JetStream itself.

Both on one nats-server and on a 3-node JetStream cluster whose streams keep 3 replicas.
The database is SQLite in a temp dir, or a fresh PostgreSQL database beside the one in
OPENPITRIX_BENCH_DATABASE_URL.

usage: python bench/bench_relay.py [--jobs 1000] [--per-job 20] [--relays 1] [--rounds 2]
                                   [--nodes 1,3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import nats
import orjson
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import APIError, ServiceUnavailableError

sys.path.insert(0, str(Path(__file__).parent))
from common import (
    BIN,
    Child,
    Children,
    clean_env,
    database_label,
    exit_on_sigterm,
    free_port,
    fresh_database,
    wait_http_ok,
)
from openpitrix.bus.embedded import nats_server_binary
from openpitrix.bus.topology import (
    COMMAND_PREFIX,
    EVENT_PREFIX,
    TASK_MANAGER,
    build_topology,
    command_subject,
    event_subject,
)
from openpitrix.db.engine import Database
from openpitrix.db.migrate import upgrade
from openpitrix.outbox.acks import AckInbox
from openpitrix.outbox.relay import BATCH_SIZE
from openpitrix.outbox.writer import enqueue
from openpitrix.settings import BusSettings

PYTHON = str(BIN / "python")
OWNER = "usr-bench"
INSERT_CHUNK = 500
COMMANDS_CONSUMER = "bench-commands"


@dataclass(frozen=True)
class Message:
    subject: str
    payload: bytes
    msg_id: str
    key: str
    n: int


def messages(run: str, jobs: int, per_job: int, seed: int = 7) -> list[Message]:
    """The round's messages in the order they are written; `run` keeps msg ids unique."""
    order = [j for j in range(jobs) for _ in range(per_job)]
    random.Random(seed).shuffle(order)
    step = [0] * jobs
    per_key: dict[str, int] = {}
    out: list[Message] = []
    for j in order:
        i = step[j]
        step[j] += 1
        job_id, cluster_id = f"job-{run}-{j:05d}", f"cl-{run}-{j:05d}"
        if i % 4 == 0:
            subject, key = command_subject(TASK_MANAGER, "run"), f"job.{job_id}"
        else:
            subject, key = (
                event_subject(OWNER, "cluster", cluster_id, job_id),
                f"cluster.{cluster_id}",
            )
        n = per_key.get(key, 0)
        per_key[key] = n + 1
        body: dict[str, object] = {"job_id": job_id, "key": key, "n": n}
        if i % 4 == 0:
            body |= {"task_id": f"t-{run}-{j:05d}-{i}", "dispatch": 1}
        else:
            body |= {
                "type": "task.progress",
                "owner": OWNER,
                "owner_path": f":{OWNER}",
                "resource": {"kind": "cluster", "id": cluster_id},
                "message": f"step {i} of the bench job, a message about as long as a real one",
                "progress": i * 5,
            }
        out.append(Message(subject, orjson.dumps(body), f"{run}-{j}-{i}", key, n))
    return out


# --- NATS: one server or a 3-node cluster ----------------------------------------------------


def start_nats(children: Children, nodes: int, work: Path) -> str:
    ports = [free_port() for _ in range(nodes)]
    routes = [free_port() for _ in range(nodes)]
    started: list[tuple[Child, int]] = []
    for i in range(nodes):
        store = work / f"nats-{i}"
        store.mkdir()
        monitor = free_port()
        args = [nats_server_binary(), "-a", "127.0.0.1", "-p", str(ports[i]), "-m", str(monitor)]
        args += ["-js", "-sd", str(store), "-n", f"bench-{i}"]
        if nodes > 1:
            others = ",".join(f"nats://127.0.0.1:{routes[k]}" for k in range(nodes) if k != i)
            args += ["--cluster_name", "bench", "--cluster", f"nats://127.0.0.1:{routes[i]}"]
            args += ["--routes", others]
        started.append((children.start(f"nats-{i}", args, clean_env({})), monitor))
    # A cluster's nodes are healthy only once they see each other: start all, then wait.
    for child, monitor in started:
        wait_http_ok(f"http://127.0.0.1:{monitor}/healthz", child, timeout=60)
    return ",".join(f"nats://127.0.0.1:{p}" for p in ports)


async def make_streams(js: JetStreamContext, replicas: int) -> None:
    topo = build_topology(BusSettings())
    deadline = time.monotonic() + 60
    for stream in (topo.commands_stream, topo.events_stream):
        while True:
            try:
                await js.add_stream(config=stream.evolve(num_replicas=replicas))
                break
            except (ServiceUnavailableError, APIError, TimeoutError):
                # A new cluster answers once its meta leader is elected.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)


# --- the consumer that checks order and loss ------------------------------------------------


class Verifier:
    def __init__(self, expected: list[Message]) -> None:
        self.expected = {m.msg_id: m for m in expected}
        self.total = len(expected)
        self.next_n: dict[str, int] = {}
        self.got = 0
        self.errors: list[str] = []
        self.done = asyncio.Event()

    def take(self, data: bytes, msg_id: str) -> None:
        want = self.expected.get(msg_id)
        if want is None:
            return  # another round's message
        body = orjson.loads(data)
        key, n = body["key"], body["n"]
        expect = self.next_n.get(key, 0)
        if n != expect and len(self.errors) < 10:
            kind = "duplicate" if n < expect else "gap/out of order"
            self.errors.append(f"{kind}: key {key} got n={n}, expected {expect}")
        self.next_n[key] = max(expect, n + 1)
        self.got += 1
        if self.got >= self.total:
            self.done.set()


async def consume(js: JetStreamContext, verifier: Verifier, ready: asyncio.Event) -> None:
    """Push consumers with callbacks (no per-message fetch): events through an ordered
    consumer from "now", commands through a push consumer of the work-queue stream, each
    command acked as a task-manager would."""
    topo = build_topology(BusSettings())

    async def on_event(msg: Msg) -> None:
        verifier.take(msg.data, (msg.headers or {}).get("Nats-Msg-Id", ""))

    async def on_command(msg: Msg) -> None:
        verifier.take(msg.data, (msg.headers or {}).get("Nats-Msg-Id", ""))
        await msg.ack()

    events = await js.subscribe(
        f"{EVENT_PREFIX}.>",
        stream=topo.events_stream.name,
        cb=on_event,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.NEW,
    )
    commands = await js.subscribe(
        f"{COMMAND_PREFIX}.>",
        stream=topo.commands_stream.name,
        durable=COMMANDS_CONSUMER,
        cb=on_command,
        manual_ack=True,
        config=ConsumerConfig(ack_policy=AckPolicy.EXPLICIT, max_ack_pending=-1),
    )
    ready.set()  # both consumers exist: they deliver everything published from now on
    try:
        await verifier.done.wait()
    finally:
        await events.unsubscribe()
        await commands.unsubscribe()


# --- the publishers: relay processes and the bare baseline ---------------------------------


async def child_relay(database_url: str, nats_url: str, batch_size: int) -> None:
    from openpitrix.bus.connection import connect
    from openpitrix.outbox.relay import OutboxRelay

    db = Database(database_url)
    nc = await connect(nats_url, name="bench-relay")
    relay = OutboxRelay(db, nc, poll_seconds=1.0, batch_size=batch_size)
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    cpu_at_go = time.process_time()
    task = asyncio.create_task(relay.run())
    relay.wake()
    await loop.run_in_executor(None, sys.stdin.readline)  # stop (or EOF)
    await relay.stop()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await nc.drain()
    await db.dispose()
    print(f"cpu {time.process_time() - cpu_at_go:.3f} {relay.published}", flush=True)


async def child_baseline(nats_url: str, run: str, jobs: int, per_job: int) -> None:
    nc = await nats.connect(nats_url.split(","))
    js = nc.jetstream(publish_async_max_pending=4000)
    batch = messages(run, jobs, per_job)
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    cpu_at_go = time.process_time()
    futures = []
    for m in batch:
        futures.append(
            await js.publish_async(m.subject, m.payload, headers={"Nats-Msg-Id": m.msg_id})
        )
    for ack in await asyncio.gather(*futures):
        assert ack.stream
    cpu = time.process_time() - cpu_at_go
    await finish(nc, loop, cpu, len(batch))


async def child_bare_lean(nats_url: str, run: str, jobs: int, per_job: int) -> None:
    """The relay's own publish path (outbox.acks, up to 4,000 in flight), no database."""
    nc = await nats.connect(nats_url.split(","))
    batch = messages(run, jobs, per_job)
    inbox, window, all_acked = AckInbox(nc), asyncio.Semaphore(4000), asyncio.Event()
    left = len(batch)

    def acked(token: str, error: Exception | None) -> None:
        nonlocal left
        assert error is None, error
        window.release()
        left -= 1
        if not left:
            all_acked.set()

    inbox.sink = acked
    loop = asyncio.get_running_loop()
    print("ready", flush=True)
    await loop.run_in_executor(None, sys.stdin.readline)
    cpu_at_go = time.process_time()
    for m in batch:
        await window.acquire()
        await inbox.publish(m.subject, m.payload, {"Nats-Msg-Id": m.msg_id})
    await all_acked.wait()
    await finish(nc, loop, time.process_time() - cpu_at_go, len(batch))


async def finish(
    nc: nats.NATS, loop: asyncio.AbstractEventLoop, cpu: float, published: int
) -> None:
    await loop.run_in_executor(None, sys.stdin.readline)
    await nc.drain()
    print(f"cpu {cpu:.3f} {published}", flush=True)


class Publishers:
    """Child processes started before the clock, released together by a line on stdin."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []
        self.cpu_seconds = 0.0  # the publishers' CPU time from "go" to the end
        self.published: list[int] = []  # how many messages each publisher sent

    def start(self, args: list[str]) -> None:
        proc = subprocess.Popen(
            [PYTHON, __file__, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        if proc.stdout.readline().strip() != "ready":
            raise RuntimeError(f"publisher {args[0]} did not start")
        self.procs.append(proc)

    def go(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()

    def stop(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        for proc in self.procs:
            assert proc.stdout is not None
            out = proc.stdout.read()  # until the child exits (it prints its CPU time last)
            proc.wait()
            for line in out.splitlines():
                if line.startswith("cpu "):
                    _, cpu, sent = line.split()
                    self.cpu_seconds += float(cpu)
                    self.published.append(int(sent))


@contextlib.contextmanager
def publishers() -> Iterator[Publishers]:
    pubs = Publishers()
    try:
        yield pubs
    finally:
        pubs.stop()


async def measure(js: JetStreamContext, expected: list[Message], pubs: Publishers) -> float:
    verifier = Verifier(expected)
    ready = asyncio.Event()
    consumer = asyncio.create_task(consume(js, verifier, ready))
    async with asyncio.timeout(60):
        await ready.wait()
    start = time.perf_counter()
    pubs.go()
    async with asyncio.timeout(600):
        await consumer
    elapsed = time.perf_counter() - start
    if verifier.errors:
        raise AssertionError("; ".join(verifier.errors))
    assert verifier.got == verifier.total, (verifier.got, verifier.total)
    return len(expected) / elapsed


async def insert_rows(database_url: str, batch: list[Message]) -> None:
    db = Database(database_url)
    try:
        for i in range(0, len(batch), INSERT_CHUNK):
            async with db.transaction() as session:
                for m in batch[i : i + INSERT_CHUNK]:
                    enqueue(session, m.subject, orjson.loads(m.payload), msg_id=m.msg_id)
    finally:
        await db.dispose()


async def run_nodes(
    args: argparse.Namespace, nodes: int, database_url: str, nats_url: str
) -> dict[str, list[float]]:
    nc = await nats.connect(nats_url.split(","))
    js = nc.jetstream()
    await make_streams(js, replicas=nodes)
    figures: dict[str, list[float]] = {
        "baseline": [],
        "lean": [],
        "relay": [],
        "baseline_cpu": [],
        "lean_cpu": [],
        "relay_cpu": [],
    }
    for r in range(args.rounds):
        for kind in ("baseline", "lean"):
            run = f"{kind[0]}{nodes}{r}{random.randrange(16**6):06x}"
            batch = messages(run, args.jobs, args.per_job)
            with publishers() as pubs:
                pubs.start([kind, nats_url, run, str(args.jobs), str(args.per_job)])
                figures[kind].append(await measure(js, batch, pubs))
            figures[f"{kind}_cpu"].append(pubs.cpu_seconds / len(batch) * 1e6)
        run = f"r{nodes}{r}{random.randrange(16**6):06x}"
        batch = messages(run, args.jobs, args.per_job)
        await insert_rows(database_url, batch)
        with publishers() as pubs:
            for _ in range(args.relays):
                pubs.start(["relay", database_url, nats_url, str(args.batch)])
            figures["relay"].append(await measure(js, batch, pubs))
        figures["relay_cpu"].append(pubs.cpu_seconds / len(batch) * 1e6)
        print(
            f"  round {r + 1}: baseline {figures['baseline'][-1]:,.0f} msg/s "
            f"({figures['baseline_cpu'][-1]:.0f} CPU-us/msg), "
            f"bare lean {figures['lean'][-1]:,.0f} msg/s "
            f"({figures['lean_cpu'][-1]:.0f} CPU-us/msg), "
            f"relay {figures['relay'][-1]:,.0f} msg/s ({figures['relay_cpu'][-1]:.0f} CPU-us/msg, "
            f"published per relay process: {pubs.published}), ratios "
            f"{figures['relay'][-1] / figures['baseline'][-1]:.2f} / "
            f"{figures['relay'][-1] / figures['lean'][-1]:.2f}",
            flush=True,
        )
    await nc.close()
    return figures


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "relay":
        asyncio.run(child_relay(sys.argv[2], sys.argv[3], int(sys.argv[4])))
        return
    if len(sys.argv) > 1 and sys.argv[1] in ("baseline", "lean"):
        child = child_baseline if sys.argv[1] == "baseline" else child_bare_lean
        asyncio.run(child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--per-job", type=int, default=20)
    parser.add_argument("--relays", type=int, default=1, help="relay processes")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch", type=int, default=BATCH_SIZE, help="the relay's batch size")
    parser.add_argument("--nodes", default="1,3", help="NATS cluster sizes to run, e.g. 1,3")
    args = parser.parse_args()
    exit_on_sigterm()
    n = args.jobs * args.per_job
    with tempfile.TemporaryDirectory(prefix="bench-relay-") as tmp:
        work = Path(tmp)
        for nodes in (int(x) for x in args.nodes.split(",")):
            node_dir = work / f"n{nodes}"
            node_dir.mkdir()
            with fresh_database(node_dir) as database_url, Children(node_dir / "logs") as children:
                upgrade(database_url)
                nats_url = start_nats(children, nodes, node_dir)
                label = "1 node" if nodes == 1 else f"{nodes}-node cluster, replicas {nodes}"
                print(
                    f"{label}, {database_label(database_url)}, {n:,} messages "
                    f"({args.jobs} jobs x {args.per_job}), {args.relays} relay process(es)",
                    flush=True,
                )
                figures = asyncio.run(run_nodes(args, nodes, database_url, nats_url))
                base = statistics.median(figures["baseline"])
                lean = statistics.median(figures["lean"])
                relay = statistics.median(figures["relay"])
                print(
                    f"  median: relay {relay:,.0f} msg/s, bare publisher {base:,.0f} msg/s "
                    f"(ratio {relay / base:.2f}), bare lean publisher {lean:,.0f} msg/s "
                    f"(ratio {relay / lean:.2f}); publisher CPU per message: relay "
                    f"{statistics.median(figures['relay_cpu']):.0f} us, bare "
                    f"{statistics.median(figures['baseline_cpu']):.0f} us, bare lean "
                    f"{statistics.median(figures['lean_cpu']):.0f} us",
                    flush=True,
                )


if __name__ == "__main__":
    main()
