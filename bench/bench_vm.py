"""Benchmark: many AWS VM clusters created at once through the API, on moto's EC2 server.

The same split processes as bench_deploy.py (nats-server, an empty database, one `openpitrix
api`, one control worker, N task-managers), with moto's AWS server (server mode, in this
process) as the cloud: a repo of one VM package (3 nodes, one of them with a data volume), an
aws credential for moto, a runtime on us-east-1a. Every POST /v1/clusters is sent at once and
each job's SSE stream followed, timing from just before the POST to the first event and to the
terminal event. The AWS API calls a create costs are read from each task's result
(`cloud_calls`, which the aws provider records; the survey task's own calls are not in it).

usage: python bench/bench_vm.py [--clusters 50] [--task-managers 1] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import secrets
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psutil
from cryptography.fernet import Fernet
from moto.servicequotas.models import ServiceQuotasBackend

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_deploy import (
    Deploy,
    Run,
    deploy_one,
    describe_failures,
    log_findings,
    seconds,
    start_processes,
    task_timings,
    wait_index,
)
from common import (
    ROOT,
    Children,
    WorkDir,
    database_label,
    exit_on_sigterm,
    fresh_database,
    login,
    migrate,
    percentile,
    start_nats,
)

sys.path.insert(0, str(ROOT))
from tests.support.aws import MotoAws, running_moto
from tests.support.aws_vm import ZONE, aws_content, ec2
from tests.support.http_repo import RepoServer
from tests.support.vmpackages import VmPackageSpec, write_vm_index

from openpitrix.providers.aws.client import STANDARD_VCPU_QUOTA
from openpitrix.settings import WorkerSettings

VCPU_QUOTA = 1024.0


def give_moto_a_vcpu_quota() -> None:
    """moto knows no EC2 quota in Service Quotas, so the check falls back to its max-instances
    (20); a real account's vCPU quota (VCPU_QUOTA here) lets every cluster launch."""
    original = ServiceQuotasBackend.get_service_quota

    def get_service_quota(self: Any, service_code: str, quota_code: str) -> dict[str, Any]:
        if (service_code, quota_code) == ("ec2", STANDARD_VCPU_QUOTA):
            return {"ServiceCode": "ec2", "QuotaCode": quota_code, "Value": VCPU_QUOTA}
        result: dict[str, Any] = original(self, service_code, quota_code)
        return result

    ServiceQuotasBackend.get_service_quota = get_service_quota  # type: ignore[method-assign]


TEMPLATE = """
{
    "name": "{{.cluster.name}}",
    "nodes": [
        {"role": "web", "count": 2, "cpu": 1, "memory": 1024,
         "services": {"start": {"cmd": "systemctl start web"}}},
        {"role": "db", "count": 1, "cpu": 2, "memory": 4096,
         "volume": {"size": 10, "mount_point": "/data", "filesystem": "ext4"}}
    ]
}
"""


def package() -> VmPackageSpec:
    cluster = {
        "key": "cluster",
        "description": "cluster properties",
        "type": "array",
        "properties": [
            {
                "key": "name",
                "label": "name",
                "description": "name",
                "type": "string",
                "default": "bench",
                "required": False,
            }
        ],
    }
    meta = {"api_version": "v1", "name": "benchvm", "version": "1.0.0", "app_version": "1.0"}
    return VmPackageSpec(meta, {"type": "array", "properties": [cluster]}, TEMPLATE)


async def prepare(http: httpx.AsyncClient, run: Run, moto: MotoAws, image: str) -> dict[str, str]:
    """Repo (indexed), aws credential and runtime; the POST /v1/clusters body minus the name."""
    repo = await http.post(
        "/v1/repos",
        json={"name": "bench-vm", "type": "http", "url": run.repo_url, "providers": ["aws"]},
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
        json={
            "name": "bench-vm",
            "provider": "aws",
            "endpoint_url": moto.url,
            "content": aws_content(moto, image),
        },
    )
    if cred.status_code != 201:
        raise RuntimeError(f"credential: {cred.status_code} {cred.text}")
    runtime = await http.post(
        "/v1/runtimes",
        json={"name": "bench-vm", "credential_id": cred.json()["credential_id"], "zone": ZONE},
    )
    if runtime.status_code != 201:
        raise RuntimeError(f"runtime: {runtime.status_code} {runtime.text}")
    return {
        "version_id": versions.json()["items"][0]["version_id"],
        "runtime_id": runtime.json()["runtime_id"],
    }


async def cloud_calls(http: httpx.AsyncClient, deploys: list[Deploy]) -> list[Counter[str]]:
    """Each successful create's AWS calls, summed over its tasks' results."""
    found = []
    for deploy in deploys:
        if deploy.status != "successful":
            continue
        calls: Counter[str] = Counter()
        for task in (await http.get(f"/v1/jobs/{deploy.job_id}")).json()["tasks"]:
            calls.update(task["result"].get("cloud_calls") or {})
        found.append(calls)
    return found


async def bench(run: Run, moto: MotoAws, image: str, clusters: int, task_managers: int) -> int:
    children = Children(run.work / "logs" / "round")
    try:
        url = await asyncio.to_thread(start_processes, run, children, task_managers)
        headers = await asyncio.to_thread(login, url)
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=clusters)
        async with httpx.AsyncClient(
            base_url=url, headers=headers, timeout=300, limits=limits
        ) as http:
            body = await prepare(http, run, moto, image)
            machine_before = psutil.cpu_times()
            deploys = await asyncio.gather(
                *(deploy_one(http, body, f"bench-vm-{i:03d}") for i in range(clusters))
            )
            machine_after = psutil.cpu_times()
            first_post = min(d.posted for d in deploys)
            wall = max(d.terminal or d.accepted or d.posted for d in deploys) - first_post
            await describe_failures(http, deploys)
            timings = await task_timings(http, deploys)
            calls = await cloud_calls(http, deploys)
    finally:
        running = {child.name: child.log() for child in children.started}
        children.stop_all()
    findings = log_findings(children, running)
    pages = ec2(moto).get_paginator("describe_instances").paginate()
    instances = sum(len(r["Instances"]) for page in pages for r in page["Reservations"])

    posted = [d.posted for d in deploys]
    failures = [d for d in deploys if d.status != "successful"]
    busy_total = sum(machine_after) - sum(machine_before)
    idle = sum(getattr(machine_after, f) - getattr(machine_before, f) for f in ("idle",))
    print(f"\nclusters: {len(deploys)} (successful {len(deploys) - len(failures)}), 3 nodes each")
    print(f"  instances in moto afterwards: {instances} (expected {3 * clusters})")
    print(f"  wall time, first POST to last terminal event: {wall:.2f} s")
    print(f"  jobs/s end to end: {len(deploys) / wall if wall > 0 else float('nan'):.2f}")
    for label, values in (
        ("POST -> 202", seconds([d.accepted for d in deploys], posted)),
        ("POST -> first event", seconds([d.first_event for d in deploys], posted)),
        ("POST -> terminal event", seconds([d.terminal for d in deploys], posted)),
    ):
        print(
            f"  {label}: p50 {percentile(values, 50):.2f} s, p99 {percentile(values, 99):.2f} s"
            f" (max {max(values, default=float('nan')):.2f} s)"
        )
    print("  mean task seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in timings.items()))
    if busy_total > 0:
        print(f"  machine CPU busy: {(busy_total - idle) / busy_total:.0%} of {psutil.cpu_count()}")
    if calls:
        totals = [sum(c.values()) for c in calls]
        mean: Counter[str] = Counter()
        for c in calls:
            mean.update(c)
        print(
            f"  AWS API calls per create (survey excluded): min {min(totals)}, "
            f"max {max(totals)}, mean {sum(totals) / len(totals):.1f}"
        )
        for op, n in sorted(mean.items()):
            print(f"    {op}: {n / len(calls):.1f}")
    for deploy in failures[:10]:
        print(f"  FAILED {deploy.name} job={deploy.job_id} {deploy.status}: {deploy.detail}")
    if not findings:
        print("  process logs: no warnings or errors")
    for name, lines in findings.items():
        print(f"  {name} log: {len(lines)} warning/error lines, e.g.")
        for line in dict.fromkeys(lines[:3]):
            print(f"    {line[:300]}")
    return len(failures)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--clusters", type=int, default=50, help="clusters created at once")
    parser.add_argument("--task-managers", type=int, default=1, help="task-manager processes")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (process logs)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server: a line a request
    give_moto_a_vcpu_quota()
    exit_on_sigterm()
    began = time.perf_counter()
    with WorkDir("op-bench-vm-", keep=args.keep) as work_dir:
        work = work_dir.path
        repo_dir = work / "repo"
        write_vm_index(repo_dir, [package()])
        secret_env = {
            "OPENPITRIX_AUTH__JWT_SECRET": secrets.token_urlsafe(48),
            "OPENPITRIX_AUTH__SECRET_KEYS": json.dumps([Fernet.generate_key().decode()]),
        }
        with (
            fresh_database(work) as database_url,
            Children(work / "logs" / "shared") as shared,
            RepoServer(repo_dir) as repo,
            running_moto() as moto,
        ):
            nats_url, nats_pid = start_nats(shared, work)
            settings = WorkerSettings()
            run = Run(
                work=work,
                database_url=database_url,
                nats_url=nats_url,
                nats_pid=nats_pid,
                repo_url=repo.url,
                concurrency=settings.concurrency,
                task_concurrency=settings.task_concurrency,
                runtime_concurrency=os.environ.get("OPENPITRIX_WORKER__RUNTIME_CONCURRENCY"),
                secret_env=secret_env,
            )
            migrate(run.env("migrate"))
            images = ec2(moto).describe_images(Owners=["amazon"])["Images"]
            image = sorted(i["ImageId"] for i in images if i["Architecture"] == "x86_64")[0]
            print(
                f"VM benchmark: {args.clusters} aws clusters of 3 nodes on moto "
                f"(vCPU quota {VCPU_QUOTA:.0f}), "
                f"database {database_label(database_url)}, {args.task_managers} task-managers "
                f"(task concurrency {settings.task_concurrency}), {psutil.cpu_count()} CPUs"
            )
            failed = asyncio.run(bench(run, moto, image, args.clusters, args.task_managers))
            work_dir.ok = not failed
    print(f"benchmark took {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    main()
