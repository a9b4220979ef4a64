"""One composition root: the gateway alone cancels and retries cluster jobs through the adapters
it registers, without loading the workers' engine; each manager is named once, by the topology."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import pytest

from openpitrix.bus.topology import (
    JOB_MANAGER,
    MANAGERS,
    REPO_INDEXER,
    REPO_MANAGER,
    TASK_MANAGER,
    build_topology,
)
from openpitrix.clusters.jobs import ClusterJobs
from openpitrix.clusters.service import RESOURCE_KIND
from openpitrix.composition import build_registry
from openpitrix.db.engine import Database
from openpitrix.jobs import service as jobs
from openpitrix.jobs.adapter import JobAdapters
from openpitrix.jobs.commands import ADVANCE
from openpitrix.jobs.models import Job
from openpitrix.managers import MANAGER_FACTORIES, build_managers
from openpitrix.providers.registry import Providers
from openpitrix.repos.service import RESOURCE_KIND as REPO_KIND
from openpitrix.settings import BusSettings
from tests.e2e.procs import Processes

# A gateway in a fresh interpreter: it asks for a retry and a cancel of the job, then reports
# what it answered and which of our modules it loaded.
GATEWAY = """
import asyncio, json, os, sys
import httpx
from openpitrix.gateway import create_app
from openpitrix.settings import Settings

async def main():
    app = create_app(Settings())
    job = os.environ["TEST_JOB_ID"]
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://gateway",
            headers=json.loads(os.environ["TEST_HEADERS"]),
        ) as http:
            retry = await http.post(f"/v1/jobs/{job}/actions/retry")
            cancel = await http.post(f"/v1/jobs/{job}/actions/cancel")
    print(json.dumps({
        "retry": [retry.status_code, retry.json()],
        "cancel": [cancel.status_code, cancel.json()],
        "modules": sorted(m for m in sys.modules if m.startswith("openpitrix")),
    }))

asyncio.run(main())
"""


async def test_the_gateway_alone_cancels_and_retries_cluster_jobs_without_the_engine(
    database_url: str,
    nats_url: str,
    tmp_path: Path,
    db: Database,
    admin_headers: dict[str, str],
) -> None:
    async with db.transaction() as session:
        # No job-manager runs here: the job stays pending for the gateway to act on.
        job = jobs.add_job(
            session,
            action="deploy",
            resource_kind=RESOURCE_KIND,
            resource_id="cl-composition",
            owner="usr-composition",
            owner_path="/usr-composition",
            manager=JOB_MANAGER,
            verb=ADVANCE,
        )
        await session.flush()
        job_id = job.job_id
    env = Processes(database_url, nats_url, tmp_path, admin_headers).env(
        {
            "TEST_JOB_ID": job_id,
            "TEST_HEADERS": json.dumps(admin_headers),
            # Nothing here runs the advance the cancel asks for; leave it in the outbox.
            "OPENPITRIX_RELAY_ENABLED": "false",
        }
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        GATEWAY,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    assert proc.returncode == 0, err.decode()
    report = json.loads(out.decode().strip().splitlines()[-1])

    # The cluster adapter was found (else 409 job_not_controllable): a pending job is refused
    # for its status, then cancelled.
    status, body = report["retry"]
    assert (status, body["error"]) == (409, "job_not_retryable"), body
    status, body = report["cancel"]
    assert (status, body["job_id"]) == (202, job_id), body
    async with db.read_session() as session:
        row = await session.get(Job, job_id)
        assert row is not None and row.cancel_requested

    loaded = set(report["modules"])
    assert "openpitrix.jobs.service" in loaded
    assert not loaded & {"openpitrix.managers", "openpitrix.jobs.manager", "openpitrix.jobs.tasks"}


def test_each_manager_is_named_once_by_the_topology() -> None:
    declared = list(build_topology(BusSettings()).consumers)
    assert declared == list(MANAGERS)
    assert list(MANAGER_FACTORIES) == declared
    assert [m.name for m in build_managers(None, build_registry())] == declared


def test_the_registry_holds_one_adapter_per_resource_kind() -> None:
    registry = build_registry()
    assert list(registry.job_adapters) == [RESOURCE_KIND, REPO_KIND]
    with pytest.raises(ValueError, match="two job adapters"):
        JobAdapters([ClusterJobs(Providers()), ClusterJobs(Providers())])


def test_each_task_is_dispatched_to_the_manager_that_owns_its_kind() -> None:
    adapters = build_registry().job_adapters
    assert adapters.runner(REPO_KIND, "index") == REPO_INDEXER
    assert adapters.runner(REPO_KIND, "delete_catalog") == REPO_MANAGER
    for action in ("render", "apply", "wait", "delete", "describe"):
        assert adapters.runner(RESOURCE_KIND, action) == TASK_MANAGER
    # Each of those managers runs tasks: they all register the engine's `run`.
    managers = {m.name: m for m in build_managers(None, build_registry())}
    for name in (REPO_INDEXER, REPO_MANAGER, TASK_MANAGER):
        assert "run" in managers[name].commands, name
    assert "run" not in managers[JOB_MANAGER].commands
    # The periodic scheduler stays the repo-indexer's duty.
    assert [p.name for p in managers[REPO_INDEXER].periodic] == ["index-scheduler"]
