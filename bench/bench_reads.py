"""Benchmark: authenticated catalog and job reads against a bare FastAPI route, same run.

Starts its own nats-server, an empty database (SQLite file, or a fresh database beside the
PostgreSQL one in OPENPITRIX_BENCH_DATABASE_URL), migrates it and seeds the catalog straight
into the tables (--apps apps x --versions versions each, spread over 10 repos, plus --jobs
jobs), then starts one `openpitrix api` (uvicorn, the production settings) and a bare FastAPI
app with one constant route under the same uvicorn settings (bench/bare_app.py). A load
generator in its own process keeps --concurrency keep-alive connections busy on one path for
--seconds and reports req/s and latency percentiles; every answer must be a 200. Each path's
throughput is printed as a ratio to the bare route's, measured in the same run. The gateway
is called as the bootstrap admin, whose token is checked like any other.

With --in-process, no HTTP server and no load generator: the gateway's ASGI app (its lifespan
run as `openpitrix api` runs it, against the same nats-server and database) and the bare app
are called directly by --concurrency concurrent callers in this process, --requests times per
path, and the process's CPU time per request (time.process_time) is printed with its ratio to
the bare route's, measured in the same run: the server's own cost of a request, which the
load on the machine disturbs least. --profile PREFIX writes a cProfile of each path there.

usage: python bench/bench_reads.py [--quick] [--seconds 10] [--concurrency 32]
                                   [--apps 2000] [--versions 10] [--jobs 2000] [--only TEXT]
                                   [--keep] [--hold]
                                   [--in-process [--requests 3000] [--profile PREFIX]]
       python bench/bench_reads.py --loadgen URL SECONDS CONCURRENCY [HEADER ...]  (internal)
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil

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
    percentile,
    start_nats,
    wait_http_ok,
    wait_ready,
)

REPOS = 10
SEARCH_WORD = "proxy"

# ------------------------------------------------------------------------------ load generator


async def _one_connection(
    host: str, port: int, request: bytes, stop_at: float, latencies: list[float], errors: list[str]
) -> None:
    """One keep-alive connection sending the request back to back until `stop_at`.

    HTTP/1.1 by hand (status line, Content-Length body): a general client costs more CPU per
    request than the servers measured here, and would measure itself."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            began = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - began)
            status = head[9:12]
            if status != b"200":
                errors.append(status.decode())
    finally:
        writer.close()


async def _load(url: str, seconds: float, concurrency: int, headers: list[str]) -> dict[str, Any]:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", *headers]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    # Warm up: every connection open and the route's first call out of the way.
    warm: list[float] = []
    await asyncio.gather(
        *(
            _one_connection(host, port, request, time.perf_counter() + 0.5, warm, [])
            for _ in range(concurrency)
        )
    )
    latencies: list[float] = []
    errors: list[str] = []
    began = time.perf_counter()
    await asyncio.gather(
        *(
            _one_connection(host, port, request, began + seconds, latencies, errors)
            for _ in range(concurrency)
        )
    )
    wall = time.perf_counter() - began
    return {
        "requests": len(latencies),
        "wall": wall,
        "errors": errors[:5],
        "error_count": len(errors),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
    }


def loadgen_main(argv: list[str]) -> None:
    url, seconds, concurrency, *headers = argv
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(_load(url, float(seconds), int(concurrency), headers))
    print(json.dumps(result))


def drive(
    url: str, seconds: float, concurrency: int, headers: dict[str, str], server_pid: int
) -> dict[str, Any]:
    """The load generator in its own process, so it does not share the server's core. Also
    the server's CPU seconds per request: a figure the other processes on the machine (the
    load generator among them) disturb much less than throughput."""
    args = [sys.executable, __file__, "--loadgen", url, str(seconds), str(concurrency)]
    args += [f"{k}: {v}" for k, v in headers.items()]
    server = psutil.Process(server_pid)
    before = server.cpu_times()
    done = subprocess.run(args, capture_output=True, text=True, check=False)
    after = server.cpu_times()
    if done.returncode != 0:
        raise RuntimeError(f"load generator failed on {url}:\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    cpu = (after.user - before.user) + (after.system - before.system)
    # Warm-up requests are not counted in `requests`: they are few (0.5 s of the run).
    result["cpu_per_request"] = cpu / max(1, result["requests"])
    return result


# ------------------------------------------------------------------------------ in process


def _scope(path: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    target, _, query = path.partition("?")
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": target,
        "raw_path": target.encode(),
        "root_path": "",
        "query_string": query.encode(),
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def _asgi_calls(
    app: Any, path: str, headers: list[tuple[bytes, bytes]], requests: int, concurrency: int
) -> dict[str, Any]:
    """`requests` calls of the ASGI app, `concurrency` at a time; CPU and wall time."""
    statuses: dict[int, int] = {}
    latencies: list[float] = []
    left = requests

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def caller() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            status = 0

            async def send(message: dict[str, Any]) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]

            began = time.perf_counter()
            await app(_scope(path, headers), receive, send)
            latencies.append(time.perf_counter() - began)
            statuses[status] = statuses.get(status, 0) + 1

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {
        "requests": requests,
        "cpu_per_request": cpu / requests,
        "wall": wall,
        "p99": percentile(latencies, 99),
        "statuses": statuses,
    }


async def in_process(env: dict[str, str], seeded: dict[str, str], args: argparse.Namespace) -> bool:
    """Each path's CPU per request through the ASGI apps in this process; True if all 200."""
    os.environ.update({k: v for k, v in env.items() if k.startswith("OPENPITRIX_")})
    import httpx

    from bare_app import app as bare
    from openpitrix.gateway import create_app
    from openpitrix.settings import Settings

    gateway = create_app(Settings())
    async with gateway.router.lifespan_context(gateway):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=gateway), base_url="http://gw"
        ) as client:
            resp = await client.post(
                "/v1/oauth2/token",
                data={
                    "grant_type": "password",
                    "username": env["OPENPITRIX_BOOTSTRAP_ADMIN_EMAIL"],
                    "password": env["OPENPITRIX_BOOTSTRAP_ADMIN_PASSWORD"],
                },
            )
            resp.raise_for_status()
        auth = [(b"authorization", f"Bearer {resp.json()['access_token']}".encode())]
        runs: list[tuple[str, Any, str, list[tuple[bytes, bytes]]]] = [
            ("bare FastAPI constant route", bare, "/", [])
        ]
        runs += [
            (label, gateway, path, auth)
            for label, path in paths(seeded)
            if args.only in label or "healthz" in label
        ]
        print(
            f"in process: {args.requests} requests per path, {args.concurrency} at a time, "
            f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}\n"
        )
        print(f"{'path':<30} {'cpu us/req':>10} {'cpu ratio':>9} {'p99 ms':>8}  statuses")
        base_cpu = 0.0
        ok = True
        for label, app, path, headers in runs:
            # Warm-up: first calls (statement compilation, caches) out of the measurement.
            await _asgi_calls(app, path, headers, max(100, args.requests // 10), args.concurrency)
            profile = cProfile.Profile() if args.profile and app is gateway else None
            if profile is not None:
                profile.enable()
            result = await _asgi_calls(app, path, headers, args.requests, args.concurrency)
            if profile is not None:
                profile.disable()
                name = label.split(" (")[0].replace(" ", "_")
                profile.dump_stats(f"{args.profile}{name}.prof")
            cpu = result["cpu_per_request"]
            base_cpu = base_cpu or cpu
            ok = ok and set(result["statuses"]) == {200}
            print(
                f"{label:<30} {cpu * 1e6:10.0f} {base_cpu / cpu:9.3f} "
                f"{result['p99'] * 1000:8.1f}  {result['statuses']}"
            )
        print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return ok


# ------------------------------------------------------------------------------ seeding


async def seed(database_url: str, apps: int, versions: int, jobs: int) -> dict[str, str]:
    """Repos, apps, versions and jobs straight into the tables; ids the paths need."""
    from sqlalchemy import insert

    from openpitrix import ids
    from openpitrix.apps.models import App, AppVersion
    from openpitrix.db.engine import Database
    from openpitrix.db.types import utcnow
    from openpitrix.jobs.models import Job
    from openpitrix.repos.models import Repo

    now = utcnow()
    repo_rows = [
        {
            "repo_id": ids.new_id(ids.REPO),
            "name": f"bench-repo-{r}",
            "type": "http",
            "url": f"https://charts.example.org/{r}",
            "providers": ["kubernetes"],
            "labels": [],
            "selectors": [],
            # Half public, half private: both halves of the visibility clause have rows.
            "visibility": "public" if r % 2 == 0 else "private",
            "create_time": now,
            "update_time": now,
            "status_time": now,
        }
        for r in range(REPOS)
    ]
    app_rows: list[dict[str, Any]] = []
    version_rows: list[dict[str, Any]] = []
    words = ["web", "proxy", "db", "cache", "queue", "search", "metrics", "auth"]
    for a in range(apps):
        repo = repo_rows[a % REPOS]
        app_id = ids.new_id(ids.APP)
        name = f"{words[a % len(words)]}-chart-{a:05d}"
        created = now - timedelta(seconds=apps - a)
        meta = {
            "description": f"The {words[(a * 7) % len(words)]} chart number {a}",
            "home": f"https://example.org/{name}",
            "icon": f"https://example.org/{name}.png",
            "keywords": [words[a % len(words)], "bench"],
            "maintainers": [{"name": "bench", "email": "bench@example.org"}],
            "sources": [f"https://github.com/example/{name}"],
        }
        app_rows.append(
            {
                "app_id": app_id,
                "repo_id": repo["repo_id"],
                "name": name,
                "latest_version": f"1.{versions - 1}.0",
                "latest_app_version": f"{versions - 1}.0",
                "create_time": created,
                "update_time": created,
                "status_time": created,
                **meta,
            }
        )
        for v in range(versions):
            version_rows.append(
                {
                    "version_id": ids.new_id(ids.APP_VERSION),
                    "app_id": app_id,
                    "repo_id": repo["repo_id"],
                    "name": name,
                    "version": f"1.{v}.0",
                    "version_sort": f"1.{v:05d}.0",
                    "app_version": f"{v}.0",
                    "digest": secrets.token_hex(32),
                    "package_url": f"https://charts.example.org/{name}-1.{v}.0.tgz",
                    "created": created + timedelta(milliseconds=v),
                    "create_time": created,
                    "update_time": created,
                    "status_time": created,
                    **meta,
                }
            )
    job_rows = [
        {
            "job_id": ids.new_id(ids.JOB),
            "action": "index_repo",
            "resource_kind": "repo",
            "resource_id": repo_rows[j % REPOS]["repo_id"],
            "status": "successful",
            "params": {"repo_id": repo_rows[j % REPOS]["repo_id"]},
            "result": {"apps": 200},
            "create_time": now - timedelta(seconds=jobs - j),
            "status_time": now,
            "start_time": now,
            "end_time": now,
        }
        for j in range(jobs)
    ]
    db = Database(database_url)
    try:
        async with db.transaction() as session:
            await session.execute(insert(Repo), repo_rows)
            for table, rows in ((App, app_rows), (AppVersion, version_rows), (Job, job_rows)):
                for start in range(0, len(rows), 1000):
                    await session.execute(insert(table), rows[start : start + 1000])
    finally:
        await db.dispose()
    return {"repo_id": str(repo_rows[0]["repo_id"]), "app_id": str(app_rows[-1]["app_id"])}


# ------------------------------------------------------------------------------ the run


def paths(seeded: dict[str, str]) -> list[tuple[str, str]]:
    return [
        ("apps", "/v1/apps?limit=20"),
        ("apps search_word", f"/v1/apps?limit=20&search_word={SEARCH_WORD}"),
        ("apps filtered", f"/v1/apps?limit=20&repo_id={seeded['repo_id']}&status=active"),
        ("app versions", f"/v1/apps/{seeded['app_id']}/versions?limit=20"),
        ("jobs", "/v1/jobs?limit=20"),
        ("providers (token only)", "/v1/providers"),
        ("healthz (no token)", "/healthz"),
    ]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="3 s per path, 200 apps")
    parser.add_argument("--seconds", type=float, default=10.0, help="load per path")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--apps", type=int, default=2000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--keep", action="store_true", help="keep the work dir (process logs)")
    parser.add_argument(
        "--only", default="", help="run only the paths whose label contains this text"
    )
    parser.add_argument(
        "--hold", action="store_true", help="after seeding, wait for Enter (to attach py-spy)"
    )
    parser.add_argument(
        "--in-process",
        action="store_true",
        help="call the ASGI apps in this process and print CPU per request (no HTTP)",
    )
    parser.add_argument("--requests", type=int, default=3000, help="per path, with --in-process")
    parser.add_argument(
        "--profile", default="", help="with --in-process: write PREFIX<path>.prof (cProfile)"
    )
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.apps, args.jobs = 3.0, 200, 200
    return args


def _run_in_process(env: dict[str, str], seeded: dict[str, str], args: argparse.Namespace) -> bool:
    try:
        import uvloop

        uvloop.install()  # as the server runs
    except ImportError:
        pass
    return asyncio.run(in_process(env, seeded, args))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--loadgen":
        loadgen_main(sys.argv[2:])
        return
    args = parse_args()
    exit_on_sigterm()
    work = Path(tempfile.mkdtemp(prefix="op-bench-reads-"))
    ok = False
    try:
        with fresh_database(work) as database_url, Children(work / "logs") as children:
            nats_url, _ = start_nats(children, work)
            env = clean_env(
                {
                    "OPENPITRIX_DATABASE_URL": database_url,
                    "OPENPITRIX_NATS_URL": nats_url,
                    "OPENPITRIX_DATA_DIR": str(work / "data"),
                    "OPENPITRIX_LOG_LEVEL": "WARNING",  # else one line per request
                    "OPENPITRIX_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
                    "OPENPITRIX_AUTH__ACCESS_TOKEN_TTL_SECONDS": "21600",
                    **admin_env(),
                }
            )
            migrated = subprocess.run(
                [*OPENPITRIX, "migrate"], env=env, capture_output=True, text=True, check=False
            )
            if migrated.returncode != 0:
                raise SystemExit(f"openpitrix migrate failed:\n{migrated.stderr}")
            began = time.perf_counter()
            seeded = asyncio.run(seed(database_url, args.apps, args.versions, args.jobs))
            print(
                f"reads benchmark: {args.apps} apps x {args.versions} versions in {REPOS} repos, "
                f"{args.jobs} jobs (seeded in {time.perf_counter() - began:.1f} s), database "
                f"{database_label(database_url)}, concurrency {args.concurrency}, "
                f"{args.seconds:g} s per path"
            )
            if args.in_process:
                ok = _run_in_process(env, seeded, args)
                return
            gw_port, bare_port = free_port(), free_port()
            gateway = children.start(
                "api", [*OPENPITRIX, "api", "--host", "127.0.0.1", "--port", str(gw_port)], env
            )
            bare_script = str(Path(__file__).resolve().parent / "bare_app.py")
            bare = children.start("bare", [sys.executable, bare_script, str(bare_port)], env)
            gw_url, bare_url = f"http://127.0.0.1:{gw_port}", f"http://127.0.0.1:{bare_port}"
            wait_ready(gw_url, gateway)
            wait_http_ok(f"{bare_url}/", bare)
            headers = login(gw_url)
            if args.hold:
                input(f"gateway pid {gateway.pid}; Enter to run the load ")
            base = drive(f"{bare_url}/", args.seconds, args.concurrency, {}, bare.pid)
            base_rps = base["requests"] / base["wall"]
            rows = [("bare FastAPI constant route", base, base_rps)]
            for label, path in paths(seeded):
                if args.only not in label:
                    continue
                result = drive(
                    f"{gw_url}{path}", args.seconds, args.concurrency, headers, gateway.pid
                )
                rows.append((label, result, result["requests"] / result["wall"]))
            gateway.check_running()
            # cpu ratio: the bare route's server CPU per request over this path's, i.e. the
            # throughput ratio the paths would have if the server had a core to itself.
            print(
                f"\n{'path':<30} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'ratio':>6} "
                f"{'cpu us/req':>10} {'cpu ratio':>9}  errors"
            )
            base_cpu = base["cpu_per_request"]
            for label, result, rps in rows:
                errors = f"{result['error_count']} {result['errors']}" if result["errors"] else "0"
                cpu = result["cpu_per_request"]
                print(
                    f"{label:<30} {rps:8.0f} {result['p50'] * 1000:8.1f} "
                    f"{result['p99'] * 1000:8.1f} {rps / base_rps:6.3f} "
                    f"{cpu * 1e6:10.0f} {base_cpu / cpu:9.3f}  {errors}"
                )
            ok = not any(result["error_count"] for _, result, _ in rows)
    finally:
        if args.keep or not ok:
            print(f"\nwork dir (process logs) kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
