"""update-env merges new values over the deployed revision's (Helm's --reuse-values) unless
`reset_values` asks for the chart's defaults, and each release says which it did."""

from __future__ import annotations

from typing import Any

import httpx

from openpitrix.clusters.service import merge_values
from tests.helpers import wait_job
from tests.support.deployments import deploy, owned
from tests.support.kube import FakeKube


async def update_env(client: httpx.AsyncClient, cid: str, body: dict[str, Any]) -> None:
    resp = await client.post(f"/v1/clusters/{cid}/actions/update-env", json=body)
    assert resp.status_code == 202, resp.text
    job = await wait_job(client, resp.json()["job_id"])
    assert job["status"] == "successful", (job["error"], job["tasks"])


def rendered(kube: FakeKube, ns: str, cid: str) -> tuple[int, int, str]:
    """(replicas, service port, image) as applied to the fake API server."""
    [deployment] = owned(kube, "Deployment", ns, cid)
    [service] = owned(kube, "Service", ns, cid)
    return (
        deployment["spec"]["replicas"],
        service["spec"]["ports"][0]["port"],
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
    )


DEFAULT_IMAGE = "docker.io/example/shop:1.0"  # the chart's appVersion


async def test_update_env_keeps_earlier_overrides_unless_reset(
    client: httpx.AsyncClient, kube: FakeKube, setup: dict[str, Any]
) -> None:
    ns = setup["runtime"]["zone"]
    made = await deploy(client, setup, "shop@1.0.0", values={"replicaCount": 2})
    cid = made["cluster_id"]
    assert (await wait_job(client, made["job_id"]))["status"] == "successful"

    # A second key, nested: the first update's replicaCount stays.
    await update_env(client, cid, {"values": {"image": {"tag": "v2"}}})
    assert rendered(kube, ns, cid) == (2, 80, "docker.io/example/shop:v2")
    # Nested tables merge key by key: the tag set before stays beside the new repository.
    await update_env(client, cid, {"values": {"image": {"repository": "mirror.example/shop"}}})
    assert rendered(kube, ns, cid) == (2, 80, "mirror.example/shop:v2")
    cluster = (await client.get(f"/v1/clusters/{cid}")).json()
    assert cluster["values"] == {
        "replicaCount": 2,
        "image": {"tag": "v2", "repository": "mirror.example/shop"},
    }
    # A null drops an override: the chart's default (1 replica) applies again.
    await update_env(client, cid, {"values": {"replicaCount": None}})
    assert rendered(kube, ns, cid) == (1, 80, "mirror.example/shop:v2")
    # reset_values: only the values given, over the chart's defaults.
    await update_env(client, cid, {"values": {"replicaCount": 3}, "reset_values": True})
    assert rendered(kube, ns, cid) == (3, 80, DEFAULT_IMAGE)
    assert (await client.get(f"/v1/clusters/{cid}")).json()["values"] == {"replicaCount": 3}

    history = (await client.get(f"/v1/clusters/{cid}/releases")).json()["items"]
    assert [(r["revision"], r["values_mode"], r["values"]) for r in history] == [
        (5, "reset", {"replicaCount": 3}),
        (4, "reused", {"image": {"tag": "v2", "repository": "mirror.example/shop"}}),
        (
            3,
            "reused",
            {"replicaCount": 2, "image": {"tag": "v2", "repository": "mirror.example/shop"}},
        ),
        (2, "reused", {"replicaCount": 2, "image": {"tag": "v2"}}),
        (1, "reset", {"replicaCount": 2}),
    ]
    detail = (await client.get(f"/v1/clusters/{cid}/releases/4")).json()
    assert detail["values_mode"] == "reused"

    # Upgrade without values keeps them (reused); a rollback restores an earlier revision's.
    up = await client.post(
        f"/v1/clusters/{cid}/actions/upgrade", json={"version_id": setup["versions"]["shop@2.0.0"]}
    )
    assert (await wait_job(client, up.json()["job_id"]))["status"] == "successful"
    back = await client.post(f"/v1/clusters/{cid}/actions/rollback", json={"revision": 2})
    assert (await wait_job(client, back.json()["job_id"]))["status"] == "successful"
    assert rendered(kube, ns, cid) == (2, 80, "docker.io/example/shop:v2")
    history = (await client.get(f"/v1/clusters/{cid}/releases")).json()["items"]
    assert [(r["revision"], r["values_mode"]) for r in history[:2]] == [
        (7, "restored"),
        (6, "reused"),
    ]


def test_merge_follows_helm_reuse_values() -> None:
    current = {"a": 1, "t": {"x": 1, "y": {"z": 1}}, "list": [1, 2]}
    given = {"t": {"y": {"w": 2}}, "list": [3], "a": None, "gone": None}
    assert merge_values(current, given) == {
        # A null for a key set before drops it; for one never set it stays (and removes the
        # chart's default when rendered, as in Helm).
        "gone": None,
        "t": {"x": 1, "y": {"z": 1, "w": 2}},
        "list": [3],  # lists are replaced, not appended to
    }
    assert current == {"a": 1, "t": {"x": 1, "y": {"z": 1}}, "list": [1, 2]}  # not mutated
