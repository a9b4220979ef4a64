"""The test cloud plugin as the contract asks of any provider: found through its entry point,
and its tasks idempotent (a redelivered task finds what the first run made)."""

from __future__ import annotations

from importlib.metadata import distribution, entry_points
from pathlib import Path
from typing import Any

from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import ClusterState, Credential, PlanRequest, TaskRun
from openpitrix.providers.registry import GROUP, load_providers
from tests.support.vm import credential_of, instances, make_cloud


def test_the_plugin_is_an_installed_distribution_with_an_entry_point() -> None:
    [ep] = [e for e in entry_points(group=GROUP) if e.name == "testcloud"]
    assert ep.value == "openpitrix_testcloud.provider:TestCloudProvider"
    assert distribution("openpitrix_testcloud").version == "0.1"
    assert type(load_providers()["testcloud"]).__module__ == "openpitrix_testcloud.provider"


def _run(cloud_credential: str, action: str, params: dict[str, Any], log: list[str]) -> TaskRun:
    async def no_package() -> bytes:
        raise AssertionError("this task fetches no package")

    async def report(message: str, percent: int | None, data: dict[str, Any]) -> None:
        log.append(message)

    return TaskRun(
        action=action,
        params=params,
        cluster_id="cl-idem",
        zone="zone-a",
        credential=Credential("testcloud", "", cloud_credential),
        release=None,
        previous=None,
        history=(),
        state=ClusterState(),
        fetch_package=no_package,
        report=report,
        timeout_seconds=30.0,
        policy=AddressPolicy(),
    )


async def test_a_redelivered_launch_finds_the_instances_instead_of_making_more(
    tmp_path: Path,
) -> None:
    cloud = make_cloud(tmp_path)
    provider = load_providers()["testcloud"]
    [[launch], *_] = provider.plan(
        PlanRequest(
            action="add_nodes",
            params={"role": "web", "count": 2},
            cluster_id="cl-idem",
            zone="zone-a",
            state=ClusterState.model_validate(
                {"roles": [{"role": "web"}], "nodes": [{"node_id": "web-1", "role": "web"}]}
            ),
        )
    )
    assert [n["name"] for n in launch.params["nodes"]] == ["web-2", "web-3"]
    log: list[str] = []
    first = await provider.run_task(_run(credential_of(cloud), "launch", launch.params, log))
    made = instances(cloud, "zone-a", "cl-idem")
    second = await provider.run_task(_run(credential_of(cloud), "launch", launch.params, log))
    assert (first, second) == ({"launched": 2, "found": 0}, {"launched": 0, "found": 2})
    assert instances(cloud, "zone-a", "cl-idem") == made
    assert log[2].startswith("found web-2 (")
    # Removing what is gone already is no error either.
    terminate = {"node_ids": ["web-2", "web-3"]}
    for removed in (2, 0):
        result = await provider.run_task(_run(credential_of(cloud), "terminate", terminate, log))
        assert result == {"removed": removed}
    assert instances(cloud, "zone-a", "cl-idem") == {}
