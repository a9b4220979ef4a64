"""A task worker killed mid-deploy: the job resumes on redelivery and ends once, successful,
with no duplicate Kubernetes objects and no lost events."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.e2e.procs import Processes
from tests.helpers import create_repo, read_sse, wait_job
from tests.support.deployments import kubeconfig, owned, task_reaches
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube

pytestmark = pytest.mark.e2e


async def _task(http: httpx.AsyncClient, job_id: str, action: str) -> dict[str, Any]:
    tasks = (await http.get(f"/v1/jobs/{job_id}")).json().get("tasks") or []
    return next((t for t in tasks if t["action"] == action), {})


async def test_task_worker_killed_mid_deploy_still_ends_in_one_successful_job(
    procs: Processes, chart_repo: RepoServer
) -> None:
    async with FakeKube() as kube:
        api, _, doomed = await asyncio.gather(
            procs.api(),
            procs.worker(managers=["repo-indexer", "repo-manager", "job-manager"]),
            procs.worker(managers=["task-manager"]),
        )
        async with procs.http(api) as http:
            repo = await create_repo(http, unique(), chart_repo.url)
            assert (await wait_job(http, repo["index_job_id"]))["status"] == "successful"
            apps = (await http.get("/v1/apps", params={"repo_id": repo["repo_id"]})).json()
            nginx = next(a for a in apps["items"] if a["name"] == "nginx")
            version = (await http.get(f"/v1/apps/{nginx['app_id']}/versions")).json()["items"][0]
            cred = await http.post(
                "/v1/runtime-credentials",
                json={"name": unique("c"), "provider": "kubernetes", "content": kubeconfig(kube)},
            )
            zone = unique("ns")
            runtime = await http.post(
                "/v1/runtimes",
                json={
                    "name": unique("rt"),
                    "credential_id": cred.json()["credential_id"],
                    "zone": zone,
                    "create_zone": True,
                },
            )
            made = await http.post(
                "/v1/clusters",
                json={
                    "version_id": version["version_id"],
                    "runtime_id": runtime.json()["runtime_id"],
                    "name": "crashy",
                },
            )
            assert made.status_code == 202, made.text
            job_id, cluster_id = made.json()["job_id"], made.json()["cluster_id"]

            # Workloads stay unready, so the doomed worker sits in the wait task.
            waiting = await task_reaches(http, job_id, "wait")
            assert waiting.get("executor") == doomed.executor, waiting
            doomed.kill()
            assert await doomed.wait(10) == -9

            fresh = await procs.worker(managers=["task-manager"])
            for deployment in owned(kube, "Deployment", zone, cluster_id):
                kube.make_ready(zone, "Deployment", deployment["metadata"]["name"])
            kube.auto_ready = True
            done = await wait_job(http, job_id, timeout=90)
            assert done["status"] == "successful", done
            attempts = {t["action"]: t["attempts"] for t in done["tasks"]}
            assert attempts["wait"] == 2 and attempts["render"] == 1, attempts
            assert (await _task(http, job_id, "wait"))["executor"] == fresh.executor

            events = await read_sse(http, f"/v1/jobs/{job_id}/events")
            terminal = [e for e in events if e["data"]["type"] == "job.status"]
            assert [e["data"]["status"] for e in terminal][-1] == "successful"
            assert sum(e["data"]["status"] == "successful" for e in terminal) == 1
            ids = [e["data"]["id"] for e in events]
            assert len(ids) == len(set(ids)), "an event was delivered twice"

        assert len(owned(kube, "Deployment", zone, cluster_id)) == 1
        assert len(owned(kube, "Service", zone, cluster_id)) == 1
