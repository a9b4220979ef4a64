"""Benchmark: many cluster deploys submitted at once, through split processes, end to end.

Starts its own nats-server (JetStream), an empty database (SQLite file, or a fresh database
beside the PostgreSQL one in OPENPITRIX_BENCH_DATABASE_URL), one `openpitrix api`, one worker
for repo-indexer + repo-manager + job-manager and N `openpitrix worker --manager task-manager`;
a one-chart Helm repo over HTTP and the fake Kubernetes API server (in this process, workloads
ready at once, or after --ready-seconds). After logging in as the bootstrap admin it creates a
repo, a credential and a runtime, then POSTs every /v1/clusters at once and follows each job's
SSE stream, timing from just before the POST to the first event and to the terminal event (and
from the 202 to the first event: the event's own way, without the gateway's queue of POSTs).
Each round (one per
--task-managers value, so `1,2,1,2,1,2` alternates one and two task-managers back to back) has
fresh processes, a fresh fake cluster and its runtimes; the scale-out ratio is the mean jobs/s
of the rounds with the most task-managers over that of the rounds with the fewest. --runtimes N
spreads the deploys over N runtimes (namespaces of the fake cluster, each with its own
`worker.runtime_concurrency` cap), as an installation that scales out its task-managers has.

With --ready-seconds S every workload becomes ready S seconds after it is applied (a rollout
that takes a while, as on a real cluster) instead of at once: the scale-out mode, where the
readiness waits, not the CPU, bound what one task-manager finishes per second.

usage: python bench/bench_deploy.py [--clusters 100] [--task-managers 1,2] [--concurrency 8]
                                    [--task-concurrency 32] [--ready-seconds 0] [--runtimes 1]
                                    [--profile DIR] [--keep]
--profile DIR records each of our processes with py-spy while deploying: collapsed stacks per
round and process in DIR (`round-1-task-manager-1.txt`, for flamegraph.pl or speedscope);
py-spy must be installed (it is not a project dependency).
OPENPITRIX_WORKER__RUNTIME_CONCURRENCY, when set, is passed to every worker.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import multiprocessing
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import orjson
import psutil
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    OPENPITRIX,
    ROOT,
    Children,
    admin_env,
    clean_env,
    database_label,
    exit_on_sigterm,
    free_port,
    fresh_database,
    login,
    percentile,
    start_nats,
    wait_ready,
)

sys.path.insert(0, str(ROOT))
from tests.support.charts import ChartSpec, write_index
from tests.support.deployments import kubeconfig
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube

from openpitrix.settings import WorkerSettings

TERMINAL = {"successful", "failed", "cancelled"}
RUNTIME_CONCURRENCY_ENV = "OPENPITRIX_WORKER__RUNTIME_CONCURRENCY"
CONTROL_MANAGERS = ("repo-indexer", "repo-manager", "job-manager")
CHART = ChartSpec("bench-web", "1.0.0", app_version="1.0")
# Our processes: the CPU a deploy costs is theirs (nats-server, the benchmark and the fake
# Kubernetes API server in it are not counted).
OURS = ("api", "worker-control", "task-manager")


@dataclass
class Run:
    """What every round shares: the database, NATS, the chart repo, the processes' secrets."""

    work: Path
    database_url: str
    nats_url: str
    nats_pid: int
    repo_url: str
    concurrency: int
    task_concurrency: int
    runtime_concurrency: str | None
    ready_seconds: float
    runtimes: int
    secret_env: dict[str, str]
    profile_dir: Path | None = None

    def env(self, name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
        """Settings of one split process: shared database, NATS and keys, its own data dir."""
        settings = {
            "OPENPITRIX_DATABASE_URL": self.database_url,
            "OPENPITRIX_NATS_URL": self.nats_url,
            "OPENPITRIX_DATA_DIR": str(self.work / "data" / name),
            "OPENPITRIX_LOG_LEVEL": "INFO",  # the workers' `consuming` line is INFO
            # The chart repo and the fake Kubernetes API server listen on loopback.
            "OPENPITRIX_NETWORK__ALLOW_PRIVATE_ADDRESSES": "true",
            "OPENPITRIX_WORKER__CONCURRENCY": str(self.concurrency),
            "OPENPITRIX_WORKER__TASK_CONCURRENCY": str(self.task_concurrency),
            **self.secret_env,
        }
        if self.runtime_concurrency is not None:
            settings[RUNTIME_CONCURRENCY_ENV] = self.runtime_concurrency
        settings.update(extra or {})
        return clean_env(settings)


@dataclass
class Deploy:
    """One POST /v1/clusters and its job, times from time.perf_counter()."""

    name: str
    posted: float
    accepted: float | None = None
    stream_open: float | None = None  # the events stream's response headers arrived
    first_event: float | None = None
    terminal: float | None = None
    job_id: str = ""
    runtime_id: str = ""
    status: str = "no terminal event"
    detail: str = ""


@dataclass
class Round:
    task_managers: int
    deploys: list[Deploy]
    wall: float
    cpu_seconds: dict[str, float]
    kube_requests: list[str]
    log_findings: dict[str, list[str]] = field(default_factory=dict)
    # Mean seconds each task action ran, and between one task's end and the next one's start
    # (advance, dispatch, and the wait for a free task slot): where a job's time goes.
    task_seconds: dict[str, float] = field(default_factory=dict)
    # Most tasks running at once on one runtime: all of them, and all but the readiness
    # waits (those act on it; `worker.runtime_concurrency` caps them).
    peak_tasks: tuple[int, int] = (0, 0)
    # Share of the machine's CPU time that was busy (every process, the database's too).
    machine_busy: float = float("nan")
    # The 1-minute load average as the round began and as it ended.
    load: tuple[float, float] = (float("nan"), float("nan"))

    @property
    def jobs_per_second(self) -> float:
        return len(self.deploys) / self.wall if self.wall > 0 else float("nan")

    @property
    def cpu_per_deploy(self) -> float:
        """CPU seconds of our processes (gateway and workers) per deploy."""
        ours = sum(v for name, v in self.cpu_seconds.items() if name.startswith(OURS))
        return ours / len(self.deploys) if self.deploys else float("nan")

    @property
    def failures(self) -> list[Deploy]:
        return [d for d in self.deploys if d.status != "successful"]


def machine_busy(before: Any, after: Any) -> float:
    """Busy share of all CPUs between two psutil.cpu_times() readings."""
    idle_fields = ("idle", "iowait")
    total = sum(after) - sum(before)
    idle = sum(getattr(after, f, 0.0) - getattr(before, f, 0.0) for f in idle_fields)
    return (total - idle) / total if total > 0 else float("nan")


def is_discovery(path: str) -> bool:
    """/api, /api/v1, /apis, /apis/<group>/<version> (and /version, /openapi/...)."""
    parts = path.strip("/").split("/")
    if parts[0] == "api":
        return len(parts) <= 2
    if parts[0] == "apis":
        return len(parts) <= 3
    return parts[0] in ("version", "openapi")


def cpu_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.NoSuchProcess:
        return float("nan")
    return float(times.user + times.system)


# ------------------------------------------------------------------------------ one round


def start_processes(run: Run, children: Children, task_managers: int) -> str:
    """The api, the control worker and the task-managers, all ready; the api's URL."""
    port = free_port()
    api = children.start(
        "api",
        [*OPENPITRIX, "api", "--port", str(port)],
        run.env(
            f"api-{port}",
            {
                "OPENPITRIX_LOG_LEVEL": "WARNING",  # else one line per request
                # Tokens outlive a slow round (the default is 15 minutes).
                "OPENPITRIX_AUTH__ACCESS_TOKEN_TTL_SECONDS": "21600",
                **admin_env(),
            },
        ),
    )
    control_args = [arg for m in CONTROL_MANAGERS for arg in ("--manager", m)]
    control = children.start(
        "worker-control", [*OPENPITRIX, "worker", *control_args], run.env(f"control-{port}")
    )
    tms = [
        children.start(
            f"task-manager-{i + 1}",
            [*OPENPITRIX, "worker", "--manager", "task-manager"],
            run.env(f"tm-{port}-{i + 1}"),
        )
        for i in range(task_managers)
    ]
    url = f"http://127.0.0.1:{port}"
    wait_ready(url, api, timeout=180)  # a shared, busy machine starts processes slowly
    for manager in CONTROL_MANAGERS:
        control.wait_for_log(f"manager={manager} consuming")
    for tm in tms:
        tm.wait_for_log("manager=task-manager consuming")
    return url


async def follow_to_end(http: aiohttp.ClientSession, url: str, deploy: Deploy) -> None:
    """Read the job's SSE stream, stamping the first event and the terminal one."""
    headers = {"Accept": "text/event-stream"}
    async with http.get(f"{url}/v1/jobs/{deploy.job_id}/events", headers=headers) as resp:
        deploy.stream_open = time.perf_counter()
        if resp.status != 200:
            deploy.status, deploy.detail = f"events {resp.status}", await resp.text()
            return
        async for line in resp.content:
            if not line.startswith(b"data:"):
                continue
            now = time.perf_counter()
            if deploy.first_event is None:
                deploy.first_event = now
            event = orjson.loads(line[5:])
            if event.get("type") == "job.status" and event.get("status") in TERMINAL:
                deploy.terminal, deploy.status = now, str(event["status"])
                return


async def deploy_one(
    http: aiohttp.ClientSession, url: str, body: dict[str, str], name: str
) -> Deploy:
    """One user's deploy, timed from its POST."""
    deploy = Deploy(name=name, posted=time.perf_counter(), runtime_id=body["runtime_id"])
    try:
        async with http.post(f"{url}/v1/clusters", json={**body, "name": name}) as resp:
            deploy.accepted = time.perf_counter()
            if resp.status != 202:
                deploy.status, deploy.detail = f"POST {resp.status}", (await resp.text())[:300]
                return deploy
            deploy.job_id = (await resp.json())["job_id"]
        # Opened right after the POST returns: the stream replays what the job did meanwhile.
        await follow_to_end(http, url, deploy)
    except aiohttp.ClientError as exc:
        deploy.status, deploy.detail = "client error", repr(exc)
    return deploy


def burst(
    url: str, headers: dict[str, str], bodies: list[dict[str, str]], tag: str
) -> list[Deploy]:
    """Every deploy at once, from a process of its own (see `run_round`), with aiohttp.

    The clients' own time is in every figure, so they must cost little. The fake cluster's
    server and controllers run on the benchmark's main loop: clients sharing that loop read
    their 202s and streams seconds late once the task-managers kept it busy, and clients on a
    thread of the same process still read each first event 40-210 ms after the gateway had
    sent it (waiting for the interpreter's lock). httpx, used before, cost ~1 ms of the
    client's CPU per request, so the hundredth POST left well after the first, and its pool,
    shared by a hundred streams, scanned every connection for each request."""

    async def all_at_once() -> list[Deploy]:
        connector = aiohttp.TCPConnector(limit=0)
        timeout = aiohttp.ClientTimeout(total=120)
        async with aiohttp.ClientSession(
            headers=headers, connector=connector, timeout=timeout
        ) as http:
            return list(
                await asyncio.gather(
                    *(
                        deploy_one(http, url, body, f"{tag}-{i:03d}")
                        for i, body in enumerate(bodies)
                    )
                )
            )

    return asyncio.run(all_at_once())


async def wait_index(http: httpx.AsyncClient, job_id: str) -> str:
    status = ""
    async with http.stream("GET", f"/v1/jobs/{job_id}/events") as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if line.startswith("data:"):
                status = str(orjson.loads(line[5:]).get("status") or status)
    return status


async def prepare(
    http: httpx.AsyncClient, run: Run, kube: FakeKube, tag: str
) -> list[dict[str, str]]:
    """Repo (indexed), credential and `run.runtimes` runtimes; a POST /v1/clusters body minus
    the name for each runtime."""
    repo = await http.post(
        "/v1/repos",
        json={"name": tag, "type": "http", "url": run.repo_url, "providers": ["kubernetes"]},
    )
    repo.raise_for_status()
    status = await wait_index(http, repo.json()["index_job_id"])
    if status != "successful":
        raise RuntimeError(f"index job ended {status!r}")
    apps = await http.get("/v1/apps", params={"repo_id": repo.json()["repo_id"]})
    app_id = apps.json()["items"][0]["app_id"]
    versions = await http.get(f"/v1/apps/{app_id}/versions")
    cred = await http.post(
        "/v1/runtime-credentials",
        json={"name": tag, "provider": "kubernetes", "content": kubeconfig(kube)},
    )
    if cred.status_code != 201:
        raise RuntimeError(f"credential: {cred.status_code} {cred.text}")
    bodies = []
    for number in range(run.runtimes):
        runtime = await http.post(
            "/v1/runtimes",
            json={
                "name": f"{tag}-{number}",
                "credential_id": cred.json()["credential_id"],
                "zone": f"{tag}-{number}-{secrets.token_hex(3)}",
                "create_zone": True,
            },
        )
        if runtime.status_code != 201:
            raise RuntimeError(f"runtime: {runtime.status_code} {runtime.text}")
        bodies.append(
            {
                "version_id": versions.json()["items"][0]["version_id"],
                "runtime_id": runtime.json()["runtime_id"],
            }
        )
    return bodies


def peak_at_once(spans: list[tuple[float, float]]) -> int:
    """Most of the (start, end) spans open at one moment (one ending as another starts: not
    both)."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    peak = running = 0
    for _, step in edges:
        running += step
        peak = max(peak, running)
    return peak


async def task_timings(
    http: httpx.AsyncClient, deploys: list[Deploy]
) -> tuple[dict[str, float], tuple[int, int]]:
    """Mean run time per task action, and "(between tasks)", from the jobs' task records; the
    most tasks running at once on one runtime, all and all but the waits."""
    runs: dict[str, list[float]] = {}
    gaps: list[float] = []
    pairs: dict[str, list[float]] = {}
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for deploy in deploys:
        if deploy.status != "successful":
            continue
        tasks = (await http.get(f"/v1/jobs/{deploy.job_id}")).json()["tasks"]
        tasks.sort(key=lambda t: t["layer"])
        for task in tasks:
            start, end = _when(task["start_time"]), _when(task["end_time"])
            runs.setdefault(task["action"], []).append(end - start)
            spans.setdefault(deploy.runtime_id, []).append((start, end, task["action"]))
        for before, after in itertools.pairwise(tasks):
            gap = _when(after["start_time"]) - _when(before["end_time"])
            gaps.append(gap)
            pairs.setdefault(f"{before['action']}>{after['action']}", []).append(gap)
    means = {action: sum(v) / len(v) for action, v in runs.items()}
    if gaps:
        means["(between tasks)"] = sum(gaps) / len(gaps)
        for pair, values in pairs.items():
            means[f"({pair})"] = sum(values) / len(values)
    every = max((peak_at_once([(a, b) for a, b, _ in s]) for s in spans.values()), default=0)
    acting = max(
        (peak_at_once([(a, b) for a, b, action in s if action != "wait"]) for s in spans.values()),
        default=0,
    )
    return means, (every, acting)


def _when(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def describe_failures(http: httpx.AsyncClient, deploys: list[Deploy]) -> None:
    """Fill in the job's error for failed deploys (the terminal event says only the status)."""
    for deploy in deploys:
        if deploy.job_id and deploy.status in TERMINAL - {"successful"}:
            job = (await http.get(f"/v1/jobs/{deploy.job_id}")).json()
            deploy.detail = json.dumps(job.get("error"))


def log_findings(children: Children, running: dict[str, str]) -> dict[str, list[str]]:
    """Warnings, errors and tracebacks each process logged while running (`running`: its log
    before it was stopped), and errors and tracebacks from its shutdown. Each process warns
    "nats disconnected" when it closes its own connection on the way out: not a finding."""
    serious = ("level=error", "level=critical", "Traceback")
    found: dict[str, list[str]] = {}
    for child in children.started:
        before = running.get(child.name, "")
        lines = [
            line
            for line in before.splitlines()
            if "level=warning" in line or any(mark in line for mark in serious)
        ]
        shutdown = child.log()[len(before) :].splitlines()
        lines += [f"(shutdown) {line}" for line in shutdown if any(m in line for m in serious)]
        if lines:
            found[child.name] = lines
    return found


def start_profilers(run: Run, number: int, children: Children) -> list[subprocess.Popen[bytes]]:
    """py-spy on each of our processes until stop_profilers (with --profile)."""
    if run.profile_dir is None:
        return []
    run.profile_dir.mkdir(parents=True, exist_ok=True)
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or "py-spy"
    return [
        subprocess.Popen(
            [
                *(
                    py_spy,
                    "record",
                    "--pid",
                    str(child.pid),
                    "--rate",
                    "100",
                    "--format",
                    "raw",
                ),
                *("--output", str(run.profile_dir / f"round-{number}-{child.name}.txt")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for child in children.started
        if child.name.startswith(OURS)
    ]


def stop_profilers(profilers: list[subprocess.Popen[bytes]]) -> None:
    """SIGINT makes py-spy write its flame graph."""
    for profiler in profilers:
        profiler.send_signal(signal.SIGINT)
    for profiler in profilers:
        profiler.wait(timeout=60)


async def run_round(run: Run, number: int, clusters: int, task_managers: int) -> Round:
    """Fresh processes and fake cluster; every deploy at once; processes stopped after."""
    children = Children(run.work / "logs" / f"round-{number}")
    spawn = multiprocessing.get_context("spawn")
    async with contextlib.AsyncExitStack() as stack:
        clients = stack.enter_context(ProcessPoolExecutor(max_workers=1, mp_context=spawn))
        kube = await stack.enter_async_context(
            FakeKube(auto_ready=True, ready_after=run.ready_seconds)
        )
        try:
            url = await asyncio.to_thread(start_processes, run, children, task_managers)
            headers = await asyncio.to_thread(login, url)
            limits = httpx.Limits(max_connections=None, max_keepalive_connections=clusters)
            async with httpx.AsyncClient(
                base_url=url, headers=headers, timeout=120, limits=limits
            ) as http:
                bodies = await prepare(http, run, kube, f"bench-r{number}")
                # The deploys' clients run in a process of their own (`burst`), started and
                # warmed (its imports done) before the clock runs.
                await asyncio.get_running_loop().run_in_executor(clients, int)
                watched = {c.name: c.pid for c in children.started}
                watched.update({"nats-server": run.nats_pid, "benchmark": os.getpid()})
                profilers = start_profilers(run, number, children)
                cpu_before = {name: cpu_seconds(pid) for name, pid in watched.items()}
                machine_before = psutil.cpu_times()
                load_before = os.getloadavg()[0]
                kube_before = len(kube.requests)
                deploys = await asyncio.get_running_loop().run_in_executor(
                    clients,
                    burst,
                    url,
                    headers,
                    [bodies[i % len(bodies)] for i in range(clusters)],
                    f"bench-r{number}",
                )
                load = (load_before, os.getloadavg()[0])
                cpu = {n: cpu_seconds(pid) - cpu_before[n] for n, pid in watched.items()}
                stop_profilers(profilers)
                machine = machine_busy(machine_before, psutil.cpu_times())
                kube_paths = [r.path for r in kube.requests[kube_before:]]
                first_post = min(d.posted for d in deploys)
                wall = max(d.terminal or d.accepted or d.posted for d in deploys) - first_post
                await describe_failures(http, deploys)
                timings, peaks = await task_timings(http, deploys)
        finally:
            running = {child.name: child.log() for child in children.started}
            children.stop_all()
    findings = log_findings(children, running)
    return Round(
        task_managers, deploys, wall, cpu, kube_paths, findings, timings, peaks, machine, load
    )


# ------------------------------------------------------------------------------ reporting


def seconds(values: list[float | None], starts: list[float]) -> list[float]:
    return [v - s for v, s in zip(values, starts, strict=True) if v is not None]


def print_round(result: Round) -> None:
    deploys = result.deploys
    posted = [d.posted for d in deploys]
    ok = len(deploys) - len(result.failures)
    print(f"\ntask-managers: {result.task_managers}")
    print(f"  clusters: {len(deploys)} (successful {ok})")
    print(f"  wall time, first POST to last terminal event: {result.wall:.2f} s")
    print(f"  jobs/s end to end: {result.jobs_per_second:.2f}")
    print(f"  load average (1 min) at start / end: {result.load[0]:.1f} / {result.load[1]:.1f}")
    for label, values in (
        ("POST -> 202", seconds([d.accepted for d in deploys], posted)),
        ("POST -> first event", seconds([d.first_event for d in deploys], posted)),
        # The part of it after the gateway answered: the event's own way (outbox, relay,
        # stream), without the wait for the gateway to get to the POST.
        (
            "202 -> first event",
            seconds([d.first_event for d in deploys], [d.accepted or d.posted for d in deploys]),
        ),
        (
            "  of which 202 -> stream open",
            seconds([d.stream_open for d in deploys], [d.accepted or d.posted for d in deploys]),
        ),
        ("POST -> terminal event", seconds([d.terminal for d in deploys], posted)),
    ):
        print(
            f"  {label}: p50 {percentile(values, 50):.3f} s, p99 {percentile(values, 99):.3f} s"
            f" (max {max(values, default=float('nan')):.3f} s)"
        )
    timings = ", ".join(f"{name} {value:.2f}" for name, value in result.task_seconds.items())
    print(f"  mean task seconds: {timings}")
    print(
        f"  most tasks running at once on one runtime: {result.peak_tasks[0]} "
        f"({result.peak_tasks[1]} but the readiness waits)"
    )
    cpu = ", ".join(f"{name} {value:.1f}" for name, value in result.cpu_seconds.items())
    print(f"  CPU seconds while deploying: {cpu}")
    per_deploy = ", ".join(
        f"{name} {value / len(deploys):.3f}"
        for name, value in result.cpu_seconds.items()
        if name.startswith(OURS)
    )
    print(f"  CPU seconds per deploy: {result.cpu_per_deploy:.3f} ({per_deploy})")
    print(f"  machine CPU busy while deploying: {result.machine_busy:.0%} of {psutil.cpu_count()}")
    print(
        "  CPU cores used per process (CPU seconds / wall): "
        + ", ".join(
            f"{name} {value / result.wall:.2f}"
            for name, value in result.cpu_seconds.items()
            if result.wall > 0
        )
    )
    requests = len(result.kube_requests)
    discovery = sum(is_discovery(path) for path in result.kube_requests)
    print(
        f"  fake Kubernetes API requests while deploying: {requests} "
        f"({requests / len(deploys):.0f} per cluster, {discovery} of them API discovery)"
    )
    for deploy in result.failures[:10]:
        print(f"  FAILED {deploy.name} job={deploy.job_id} {deploy.status}: {deploy.detail}")
    if len(result.failures) > 10:
        print(f"  ... and {len(result.failures) - 10} more failures")
    if not result.log_findings:
        print("  process logs: no warnings or errors")
    for name, lines in result.log_findings.items():
        print(f"  {name} log: {len(lines)} warning/error lines, e.g.")
        for line in dict.fromkeys(lines[:3]):
            print(f"    {line[:300]}")


# ------------------------------------------------------------------------------ the run


def describe_runtime_concurrency(from_env: str | None) -> str:
    if from_env is not None:
        return f"{from_env} (from {RUNTIME_CONCURRENCY_ENV})"
    default = getattr(WorkerSettings(), "runtime_concurrency", None)
    return "(no such setting)" if default is None else f"{default} (default)"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clusters", type=int, default=100, help="deploys per round")
    parser.add_argument(
        "--task-managers",
        default="1,2",
        help="task-manager processes per round, comma-separated (one round each)",
    )
    parser.add_argument(
        "--concurrency",
        type=int,
        default=WorkerSettings().concurrency,
        help="OPENPITRIX_WORKER__CONCURRENCY of every worker process",
    )
    parser.add_argument(
        "--task-concurrency",
        type=int,
        default=WorkerSettings().task_concurrency,
        help="OPENPITRIX_WORKER__TASK_CONCURRENCY: job tasks one task-manager runs at once",
    )
    parser.add_argument(
        "--ready-seconds",
        type=float,
        default=0.0,
        help="workloads become ready this long after they are applied (0: at once)",
    )
    parser.add_argument(
        "--runtimes",
        type=int,
        default=1,
        help="runtimes (namespaces of the fake cluster) the deploys are spread over",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        metavar="DIR",
        help="record our processes with py-spy while deploying, collapsed stacks in DIR",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (process logs)")
    return parser.parse_args()


async def run_rounds(run: Run, clusters: int, rounds: list[int]) -> list[Round]:
    results = []
    for number, task_managers in enumerate(rounds, start=1):
        result = await run_round(run, number, clusters, task_managers)
        print_round(result)
        results.append(result)
    return results


def main() -> None:
    args = parse_args()
    rounds = [int(n) for n in args.task_managers.split(",") if n.strip()]
    runtime_concurrency = os.environ.get(RUNTIME_CONCURRENCY_ENV)
    exit_on_sigterm()
    began = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="op-bench-deploy-"))
    repo_dir = work / "repo"
    write_index(repo_dir, [CHART])
    secret_env = {
        "OPENPITRIX_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
        "OPENPITRIX_AUTH__SECRET_KEYS": json.dumps([Fernet.generate_key().decode()]),
    }
    results: list[Round] = []
    try:
        with (
            fresh_database(work) as database_url,
            Children(work / "logs" / "shared") as shared,
            RepoServer(repo_dir) as repo,
        ):
            nats_url, nats_pid = start_nats(shared, work)
            run = Run(
                work=work,
                database_url=database_url,
                nats_url=nats_url,
                nats_pid=nats_pid,
                repo_url=repo.url,
                concurrency=args.concurrency,
                task_concurrency=args.task_concurrency,
                runtime_concurrency=runtime_concurrency,
                ready_seconds=args.ready_seconds,
                runtimes=args.runtimes,
                secret_env=secret_env,
                profile_dir=args.profile,
            )
            migrated = subprocess.run(
                [*OPENPITRIX, "migrate"], env=run.env("migrate"), capture_output=True, text=True
            )
            if migrated.returncode != 0:
                raise SystemExit(f"openpitrix migrate failed:\n{migrated.stderr}")
            print(
                f"deploy benchmark: {args.clusters} clusters per round, chart {CHART.name} "
                f"{CHART.version}, database {database_label(database_url)}, "
                f"worker concurrency {args.concurrency}, "
                f"task-manager concurrency {args.task_concurrency}, "
                f"runtime concurrency {describe_runtime_concurrency(runtime_concurrency)}, "
                f"readiness after {args.ready_seconds:g} s, "
                f"{args.runtimes} runtimes, "
                f"{psutil.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}"
            )
            results = asyncio.run(run_rounds(run, args.clusters, rounds))
    finally:
        failed = any(r.failures or r.log_findings for r in results) or len(results) < len(rounds)
        if args.keep or failed:
            print(f"\nwork dir (process logs) kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    print(
        "\ntask-managers  jobs/s  wall s  first p50/p99 s  202->first p50/p99 s"
        "  terminal p50/p99 s  failed  CPU-s/deploy  load start/end"
    )
    for r in results:
        posted = [d.posted for d in r.deploys]
        first = seconds([d.first_event for d in r.deploys], posted)
        accepted = [d.accepted or d.posted for d in r.deploys]
        own = seconds([d.first_event for d in r.deploys], accepted)
        done = seconds([d.terminal for d in r.deploys], posted)
        print(
            f"{r.task_managers:>13}  {r.jobs_per_second:6.2f}  {r.wall:6.1f}  "
            f"{percentile(first, 50):6.2f} / {percentile(first, 99):6.2f}  "
            f"{percentile(own, 50):9.2f} / {percentile(own, 99):6.2f}  "
            f"{percentile(done, 50):8.2f} / {percentile(done, 99):6.2f}  {len(r.failures):>6}"
            f"  {r.cpu_per_deploy:12.3f}  {r.load[0]:5.1f} / {r.load[1]:4.1f}"
        )
    counts = sorted({r.task_managers for r in results})
    if len(counts) >= 2:
        low, high = counts[0], counts[-1]
        means = {
            n: statistics.fmean(r.jobs_per_second for r in results if r.task_managers == n)
            for n in (low, high)
        }
        each = {
            n: " ".join(f"{r.jobs_per_second:.2f}" for r in results if r.task_managers == n)
            for n in (low, high)
        }
        print(
            f"scale-out, mean jobs/s: {high} task-managers {means[high]:.2f} ({each[high]}) / "
            f"{low} {means[low]:.2f} ({each[low]}) = {means[high] / means[low]:.2f}x"
        )
    print(f"benchmark took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
