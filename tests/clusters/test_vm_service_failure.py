"""A package's service command that fails after boot fails the job, through the API, with real
workers and NATS, against moto's EC2 behind an SSM that can fail (tests/support/ssm_fake.py):
the reason `command_failed` names the service, role, command and node, on the job and on its
event stream; the action goes no further, so the cluster is left as it was; a retry once the
command works ends the action."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.helpers import read_sse, wait_job
from tests.support.aws import MotoAws
from tests.support.aws_vm import in_cloud, prepare_aws_runtime, write_aws_shop_repo
from tests.support.deployments import deploy
from tests.support.http_repo import RepoServer
from tests.support.qingcloud_vm import DEFAULT_DB_PASSWORD, secret_shop_package
from tests.support.ssm_fake import FailingSsm, failing_ssm
from tests.support.vm_scenarios import Jobs, cluster_of, nodes_of


@pytest.fixture
def ssm_proxy(moto: MotoAws) -> Iterator[FailingSsm]:
    with failing_ssm(moto) as proxy:
        yield proxy


@pytest.fixture
async def vm(
    client: httpx.AsyncClient,
    moto: MotoAws,
    ssm_proxy: FailingSsm,
    repo_dir: Path,
    repo_server: RepoServer,
    images: tuple[str, str],
) -> dict[str, Any]:
    write_aws_shop_repo(repo_dir, images[0], secret_shop_package())
    return await prepare_aws_runtime(client, moto, repo_server.url, images[1], ssm_proxy.url)


async def test_a_failing_stop_command_fails_the_stop_and_leaves_the_cluster_running(
    client: httpx.AsyncClient, moto: MotoAws, ssm_proxy: FailingSsm, vm: dict[str, Any]
) -> None:
    made = await deploy(client, vm, "shop@1.0.0", values={})
    cid = made["cluster_id"]
    jobs = Jobs(client)
    await jobs.finished(made["job_id"])
    cloud = in_cloud(moto, cid)
    db1 = cloud["db-1"]["instance_id"]
    # The db's stop (which runs first) exits 3 on its node, saying why.
    ssm_proxy.fail_commands(
        "mysqladmin", instance_ids={db1}, exit_code=3, stderr="mysqladmin: connect failed"
    )

    stop = await client.post(f"/v1/clusters/{cid}/actions/stop")
    assert stop.status_code == 202, stop.text
    job = await wait_job(client, stop.json()["job_id"])
    assert job["status"] == "failed", job
    error = job["error"]
    assert error["code"] == "command_failed", error
    message = error["message"]
    # The service, its role, its command (the password hidden), the node and what SSM said.
    assert message.startswith(
        f"stop of db failed on db-1 ({db1}): `mysqladmin --password=****** shutdown`: SSM command "
    ), message
    assert message.endswith(f"on {db1}: Failed (exit 3): mysqladmin: connect failed"), message
    assert DEFAULT_DB_PASSWORD not in message
    assert [(t["action"], t["status"]) for t in job["tasks"]] == [
        ("services", "failed"),
        ("stop", "pending"),
        ("survey", "pending"),
    ]
    # SSM reported the script running before it failed: the wait followed it to its end.
    [sent] = [c for c in ssm_proxy.commands() if "mysqladmin" in c.script]
    assert sent.asked == {db1: 2}
    # The job's stream ends with the same reason.
    events = await read_sse(client, f"/v1/jobs/{job['job_id']}/events")
    task, resource, last = (e["data"] for e in events[-3:])
    assert (task["type"], task["status"]) == ("task.status", "failed")
    assert task["message"] == f"task services failed: {message}"
    assert (resource["type"], resource["status"]) == ("resource.status", "active")
    assert (last["type"], last["status"]) == ("job.status", "failed")
    assert last["data"]["error"] == error

    # Nothing was stopped: the stop task never ran. The cluster keeps its status, unlocked.
    cluster = await cluster_of(client, cid)
    assert (cluster["status"], cluster["transition_status"]) == ("active", "")
    assert {i["status"] for i in in_cloud(moto, cid).values()} == {"running"}
    assert {n["status"] for n in (await nodes_of(client, cid)).values()} == {"running"}

    # Once the command works, retrying the job runs the services again and stops the cluster.
    ssm_proxy.heal()
    retry = await client.post(f"/v1/jobs/{job['job_id']}/actions/retry")
    assert retry.status_code == 202, retry.text
    done = await jobs.finished(job["job_id"])
    assert "ran stop of db on db-1 through SSM" in done["messages"], done["messages"]
    assert "ran stop of web on web-1, web-2 through SSM" in done["messages"]
    assert (await cluster_of(client, cid))["status"] == "stopped"
    assert {i["status"] for i in in_cloud(moto, cid).values()} == {"stopped"}
