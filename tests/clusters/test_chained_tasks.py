"""A task-manager that settles a task claims the job's next task in the same transaction and
runs it on, under the command message it already holds: a job's later tasks cost no message
of their own; a later task's retry comes back with that message and resumes the task; and when
that message runs out of deliveries, the task it held fails (it is never left working). A
worker killed in a chained task is covered end to end in tests/e2e/test_deploy_crash.py (the
wait task there runs chained)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import event, select
from sqlalchemy.engine import Engine
from sqlmodel import col

from openpitrix.db.engine import Database
from openpitrix.jobs.models import Task
from openpitrix.outbox.models import OutboxMessage
from openpitrix.settings import BusSettings, Settings
from tests.conftest import make_settings
from tests.helpers import wait_job
from tests.support.deployments import deploy
from tests.support.kube import FakeKube
from tests.support.qingcloud_fake import QingCloudFake

SERVER_BUSY = 5000  # a QingCloud ret_code a later call may get past


async def _tasks(db: Database, job_id: str) -> list[Task]:
    async with db.read_session() as session:
        found = await session.execute(
            select(Task)
            .where(col(Task.job_id) == job_id)
            .order_by(col(Task.layer), col(Task.create_time))
        )
        return list(found.scalars().all())


async def _run_messages(db: Database, tasks: list[Task]) -> list[str]:
    """The ids of the `run` commands sent for these tasks."""
    ids = {t.task_id for t in tasks}
    async with db.read_session() as session:
        found = await session.execute(
            select(col(OutboxMessage.msg_id)).where(col(OutboxMessage.subject).like("%.run"))
        )
        return [m for m in found.scalars() if m.split(".d")[0] in ids]


def _launching(tasks: list[Task]) -> Task:
    return next(t for t in tasks if t.action == "launch")


async def test_a_deploys_later_tasks_run_under_its_first_tasks_message(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any], db: Database
) -> None:
    made = await deploy(client, setup, "shop@1.0.0")
    assert (await wait_job(client, made["job_id"]))["status"] == "successful"
    first, *later = await _tasks(db, made["job_id"])
    assert later, "a deploy has more than one task"
    assert first.runs_under is None
    assert [t.runs_under for t in later] == [f"{first.task_id}.d1"] * len(later)
    assert [(t.status, t.attempts) for t in later] == [("successful", 1)] * len(later)
    # One message started the job's tasks: none was sent for the later ones.
    assert await _run_messages(db, [first, *later]) == [f"{first.task_id}.d1"]


async def test_a_chained_task_retried_comes_back_under_the_same_message(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, qingcloud_vm: dict[str, Any], db: Database
) -> None:
    qingcloud.fail_next("RunInstances", SERVER_BUSY, "server busy, try again later")
    made = await deploy(client, qingcloud_vm, "shop@1.0.0", values={})
    job = await wait_job(client, made["job_id"])
    assert job["status"] == "successful", job
    tasks = await _tasks(db, made["job_id"])
    launch = _launching(tasks)
    assert launch is not tasks[0] and launch.runs_under == f"{tasks[0].task_id}.d1"
    assert launch.attempts == 2
    assert await _run_messages(db, tasks) == [f"{tasks[0].task_id}.d1"]


class TestMessageGivenUp:
    """A message that runs out of deliveries while its chain retries a later task."""

    @pytest.fixture
    def settings(self, database_url: str, nats_url: str, tmp_path: Path) -> Settings:
        base = make_settings(database_url, nats_url, tmp_path / "data")
        return base.model_copy(
            update={
                "bus": BusSettings(ack_wait_seconds=3.0, backoff_seconds=[0.5], max_deliver=2),
                "worker": base.worker.model_copy(
                    update={"task_retry_base_seconds": 0.2, "task_max_attempts": 10}
                ),
            }
        )

    async def test_fails_the_task_it_held(
        self,
        client: httpx.AsyncClient,
        qingcloud: QingCloudFake,
        qingcloud_vm: dict[str, Any],
        db: Database,
    ) -> None:
        for _ in range(5):
            qingcloud.fail_next("RunInstances", SERVER_BUSY, "server busy, try again later")
        made = await deploy(client, qingcloud_vm, "shop@1.0.0", values={})
        job = await wait_job(client, made["job_id"])
        assert job["status"] == "failed", job
        assert job["error"]["code"] == "retries_exhausted", job["error"]
        launch = _launching(await _tasks(db, made["job_id"]))
        assert (launch.status, launch.attempts) == ("failed", 2)
        assert launch.error_code == "retries_exhausted"


async def test_a_chain_reads_the_clusters_context_again_only_after_a_task_changed_it(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any], db: Database
) -> None:
    """The adapter keeps the cluster, its credential, releases and nodes for the job's next
    task in the chain, and reads them again after a task that rewrote some of them (render
    writes the release's manifest), so a later task always sees what an earlier one wrote."""
    reads: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if "runtime_credentials" in statement and "FROM clusters" in statement:
            reads.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        made = await deploy(client, setup, "shop@1.0.0")
        job = await wait_job(client, made["job_id"])
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert job["status"] == "successful", job
    actions = [t.action for t in await _tasks(db, made["job_id"])]
    assert actions[:2] == ["render", "check"] and len(actions) > 3, actions
    # Once for the first task, once after render: the tasks after check reuse what it read
    # (before, every task read them again).
    assert len(reads) == 2
    # And what the tasks after render ran on was the rendered release: apply sent the
    # chart's workload to the cluster.
    assert kube.objects("Deployment", setup["runtime"]["zone"]), "nothing was applied"
