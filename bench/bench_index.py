"""Benchmark: cold index of a 15,000-version (~15 MB) Helm repo, end to end, then a re-index.

Starts `openpitrix serve` as its own process (embedded SQLite + nats-server, or a fresh database
beside the PostgreSQL one in OPENPITRIX_BENCH_DATABASE_URL), logs in as the bootstrap admin,
serves the index from a local HTTP server, and measures from the POST /v1/repos call to the
job's terminal SSE event. Peak memory is the server process's VmHWM. The server's CPU seconds
(all its threads; per thread from /proc) are the figure a busy machine disturbs least; its idle
rate is measured beside them. Before the clock starts, one GET of the repo and job lists builds
those routes' first-request state (FastAPI builds a router's route table on first use).
Also times PyYAML's C loader on the same file, for the ratio.

usage: python bench/bench_index.py [--charts 1500] [--versions 10]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import orjson
import psutil

sys.path.insert(0, str(Path(__file__).parent))
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
    wait_ready,
)
from gen_index import write_index

REINDEX_RUNS = 7
IDLE_SECONDS = 1.0
CHANGE_KEYS = (
    "apps_added",
    "apps_updated",
    "apps_deleted",
    "versions_added",
    "versions_updated",
    "versions_deleted",
)


class CountingHandler(SimpleHTTPRequestHandler):
    statuses: list[int] = []

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def send_response(self, code: int, message: str | None = None) -> None:
        CountingHandler.statuses.append(code)
        super().send_response(code, message)


def _status_mb(pid: int, field: str) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmHWM:")


def rss_mb(pid: int) -> float:
    return _status_mb(pid, "VmRSS:")


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds (user + system) of each of the process's threads, by thread id."""
    tick = float(os.sysconf("SC_CLK_TCK"))
    result: dict[int, float] = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            # Fields after the parenthesised name: state is [0], utime [11], stime [12].
            fields = (task / "stat").read_text().rpartition(")")[2].split()
            result[int(task.name)] = (int(fields[11]) + int(fields[12])) / tick
    return result


def cpu_by_thread(pid: int, before: dict[int, float]) -> tuple[float, float]:
    """(event-loop thread, other threads) CPU seconds since `before` (threads that ended
    meanwhile are not counted here; the process total counts them)."""
    after = thread_cpu(pid)
    loop = after.get(pid, 0.0) - before.get(pid, 0.0)
    others = sum(cpu - before.get(tid, 0.0) for tid, cpu in after.items() if tid != pid)
    return loop, others


def reset_peak_rss(pid: int) -> None:
    """Make the process's VmHWM its current RSS (Linux: "5" to clear_refs)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


# Each baseline runs in a fresh interpreter and prints its seconds and its ru_maxrss in MB.
_CHILD_PEAK = "import resource; peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024"
IMPORT_ONLY = f"import openpitrix.cli, openpitrix.composition; {_CHILD_PEAK}; print(0, peak)"
LOADERS = {
    "yaml-rs": "import yaml_rs; load = lambda t: yaml_rs.loads(t, parse_datetime=False)",
    "PyYAML C": "import yaml; load = lambda t: yaml.load(t, Loader=yaml.CSafeLoader)",
}


def load_alone(loader: str, path: Path) -> str:
    return (
        f"import sys, time; {LOADERS[loader]}; text = open(sys.argv[1], 'rb').read().decode(); "
        f"t = time.perf_counter(); load(text); s = time.perf_counter() - t; {_CHILD_PEAK}; "
        "print(s, peak)"
    )


def run_child(code: str, *args: str) -> tuple[float, float]:
    """(seconds, peak RSS MB) printed by `code` run in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(out[0]), float(out[1])


def follow_job(client: httpx.Client, job_id: str) -> dict[str, Any]:
    last: dict[str, Any] = {}
    with client.stream("GET", f"/v1/jobs/{job_id}/events", timeout=300) as resp:
        for line in resp.iter_lines():
            if line.startswith("data:"):
                last = orjson.loads(line[5:])
    return last


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--charts", type=int, default=1500)
    parser.add_argument("--versions", type=int, default=10)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="op-bench-"))
    repo_dir = work / "repo"
    repo_dir.mkdir()
    size = write_index(repo_dir / "index.yaml", args.charts, args.versions)
    total_versions = args.charts * args.versions
    print(f"index: {size / 1e6:.1f} MB, {args.charts} charts x {args.versions} versions")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(CountingHandler, directory=str(repo_dir)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    repo_url = f"http://127.0.0.1:{httpd.server_address[1]}"

    exit_on_sigterm()
    try:
        with fresh_database(work) as database_url, Children(work / "logs") as children:
            port = free_port()
            env = clean_env(
                {
                    "OPENPITRIX_LOG_LEVEL": "WARNING",
                    "OPENPITRIX_DATABASE_URL": database_url,
                    **admin_env(),
                }
            )
            serve = ["serve", "--port", str(port), "--data-dir", str(work / "data")]
            server = children.start("serve", [*OPENPITRIX, *serve], env)
            url = f"http://127.0.0.1:{port}"
            wait_ready(url, server)
            print(f"database: {database_label(database_url)}")
            client = httpx.Client(base_url=url, timeout=60, headers=login(url))
            warm0 = cpu_seconds(server.pid)
            for path in ("/v1/repos?limit=1", "/v1/jobs?limit=1"):
                client.get(path).raise_for_status()
            warm_up_cpu = cpu_seconds(server.pid) - warm0
            idle_cpu = cpu_seconds(server.pid)
            time.sleep(IDLE_SECONDS)
            idle_rate = (cpu_seconds(server.pid) - idle_cpu) / IDLE_SECONDS
            idle = rss_mb(server.pid)
            startup_peak = peak_rss_mb(server.pid)
            reset_peak_rss(server.pid)
            threads0 = thread_cpu(server.pid)
            cpu0 = cpu_seconds(server.pid)

            t0 = time.perf_counter()
            resp = client.post(
                "/v1/repos",
                json={
                    "name": "bench",
                    "type": "http",
                    "url": repo_url,
                    "providers": ["kubernetes"],
                },
            )
            resp.raise_for_status()
            last = follow_job(client, resp.json()["index_job_id"])
            cold = time.perf_counter() - t0
            assert last.get("status") == "successful", last
            result = last["data"]["result"]
            assert result["versions_added"] == total_versions, result
            index_peak = peak_rss_mb(server.pid)
            index_cpu = cpu_seconds(server.pid) - cpu0
            loop_cpu, other_cpu = cpu_by_thread(server.pid, threads0)

            repo_id = resp.json()["repo_id"]
            warm_runs: list[float] = []
            warm_cpu: list[float] = []
            upstream: list[list[int]] = []
            written = 0
            for _ in range(REINDEX_RUNS):
                CountingHandler.statuses.clear()
                t1 = time.perf_counter()
                cpu1 = cpu_seconds(server.pid)
                resp = client.post(f"/v1/repos/{repo_id}/index")
                resp.raise_for_status()
                again = follow_job(client, resp.json()["job_id"])
                warm_runs.append(time.perf_counter() - t1)
                warm_cpu.append(cpu_seconds(server.pid) - cpu1)
                assert again.get("status") == "successful", again
                upstream.append([int(s) for s in CountingHandler.statuses])
                re_result = again["data"]["result"]
                assert re_result["not_modified"] is True, re_result
                written += sum(re_result.get(k, 0) for k in CHANGE_KEYS)
            client.close()
    finally:
        httpd.shutdown()

    _, import_peak = run_child(IMPORT_ONLY)
    index_file = str(repo_dir / "index.yaml")
    fastest, fastest_peak = run_child(load_alone("yaml-rs", index_file), index_file)
    pyyaml, pyyaml_peak = run_child(load_alone("PyYAML C", index_file), index_file)
    shutil.rmtree(work, ignore_errors=True)

    print(f"cold index, POST to terminal event: {cold:.2f} s (target < 2 s)")
    print(
        f"  job duration {result['duration_seconds']:.2f} s, fetch {result['fetch_seconds']:.2f} s"
    )
    print(
        f"  server CPU during it: {index_cpu:.2f} s (on a busy machine the wall time above "
        "stretches, this does much less)"
    )
    print(
        f"    event-loop thread {loop_cpu:.2f} s, other threads (the parse; SQLite's driver) "
        f"{other_cpu:.2f} s; idle, the server burns {idle_rate:.3f} CPU-s/s "
        f"(~{idle_rate * cold:.2f} s of the above at this wall time)"
    )
    print(f"  first requests to the repo and job lists, before the clock: {warm_up_cpu:.2f} s CPU")
    print(
        f"  server peak RSS while indexing: {index_peak:.0f} MB, {index_peak - idle:+.0f} MB over "
        f"its idle {idle:.0f} MB (target < 200 MB)"
    )
    print(f"  server peak RSS since its start (startup, login's argon2): {startup_peak:.0f} MB")
    print(f"baseline: importing the server's modules alone peaks at {import_peak:.0f} MB")
    print(
        f"baseline: yaml-rs alone parsing the same file: {fastest:.2f} s, peak RSS "
        f"{fastest_peak:.0f} MB; end-to-end cold index takes {cold / fastest:.1f}x its time"
    )
    print(
        f"PyYAML C loader alone parsing the same file: {pyyaml:.2f} s, peak RSS "
        f"{pyyaml_peak:.0f} MB; end to end is {pyyaml / cold:.1f}x faster"
    )
    ms = sorted(w * 1000 for w in warm_runs)
    print(
        f"re-index unchanged, {REINDEX_RUNS} runs: median {statistics.median(ms):.0f} ms "
        f"(min {ms[0]:.0f}, max {ms[-1]:.0f}; target < 50 ms)"
    )
    print(
        f"  server CPU per re-index: median {statistics.median(warm_cpu) * 1000:.0f} ms "
        f"(min {min(warm_cpu) * 1000:.0f}, max {max(warm_cpu) * 1000:.0f})"
    )
    print(f"  upstream answers per run: {upstream}; catalog rows written: {written}")


if __name__ == "__main__":
    main()
