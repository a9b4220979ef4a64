"""A VM package's `password` settings are not shown back through the API: a release's manifest
hides their values wherever the template rendered them (a role's env, a service's command),
a release's and the cluster's values hide them too, and a create's preview names nodes, not
values; the nodes themselves (and the nodes a later add-nodes makes) boot with the real value.
The render endpoint echoes the caller's own settings in clear: see its test below."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.deployments import deploy
from tests.support.http_repo import RepoServer
from tests.support.qingcloud_fake import QingCloudFake
from tests.support.qingcloud_vm import (
    DEFAULT_DB_PASSWORD,
    in_cloud,
    prepare_qingcloud_runtime,
    secret_shop_package,
)
from tests.support.vm_scenarios import Jobs, preview_create
from tests.support.vmpackages import write_vm_index

PASSWORD = "Hunter2-user-pw"
VALUES = {"cluster": {"db": {"password": PASSWORD}}}
HIDDEN = "******"


@pytest.fixture
async def vm(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, repo_dir: Path, repo_server: RepoServer
) -> dict[str, Any]:
    write_vm_index(repo_dir, [secret_shop_package()])
    return await prepare_qingcloud_runtime(client, qingcloud, repo_server.url)


async def test_a_password_setting_is_hidden_in_the_release_but_boots_the_nodes(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, vm: dict[str, Any]
) -> None:
    preview = await preview_create(client, vm, VALUES)
    assert preview.status_code == 200, preview.text
    assert [c["resource"] for c in preview.json()["changes"]][:3] == [
        "node web-1",
        "node web-2",
        "node db-1",
    ]
    assert PASSWORD not in preview.text

    made = await deploy(client, vm, "shop@1.0.0", values=VALUES)
    cid = made["cluster_id"]
    jobs = Jobs(client)
    job = await jobs.finished(made["job_id"])
    # Neither the job (its tasks' results) nor its event stream carries the value.
    assert PASSWORD not in str(job)

    release = await client.get(f"/v1/clusters/{cid}/releases/1")
    assert release.status_code == 200, release.text
    assert PASSWORD not in release.text
    shown = {o["node_id"]: o for o in release.json()["manifest"]}
    assert sorted(shown) == ["db-1", "web-1", "web-2"]
    db = shown["db-1"]
    assert db["env"] == {"APP": "shop", "DB_PASSWORD": HIDDEN}
    assert db["services"]["stop"]["cmd"] == f"mysqladmin --password={HIDDEN} shutdown"
    assert "secrets" not in db
    # What is not a password is shown as rendered.
    assert shown["web-1"]["env"] == {"APP": "shop", "PORT": "8080"}
    assert shown["web-1"]["services"]["stop"]["cmd"] == "echo web stop"
    assert (db["cpu"], db["memory"], db["volume_size"]) == (2, 4096, 10)
    assert release.json()["values"] == {"cluster": {"db": {"password": HIDDEN}}}
    listed = await client.get(f"/v1/clusters/{cid}/releases")
    assert PASSWORD not in listed.text
    assert listed.json()["items"][0]["values"] == {"cluster": {"db": {"password": HIDDEN}}}
    # The cluster itself, alone and in a list, shows its values the same way.
    cluster = await client.get(f"/v1/clusters/{cid}")
    assert PASSWORD not in cluster.text
    assert cluster.json()["values"] == {"cluster": {"db": {"password": HIDDEN}}}
    clusters = await client.get("/v1/clusters", params={"version_id": vm["versions"]["shop@1.0.0"]})
    assert PASSWORD not in clusters.text
    assert [(c["cluster_id"], c["values"]) for c in clusters.json()["items"]] == [
        (cid, {"cluster": {"db": {"password": HIDDEN}}})
    ]

    # The node booted with the real value.
    assert f"export DB_PASSWORD={PASSWORD}\n" in in_cloud(qingcloud, cid)["db-1"]["userdata"]
    # A node added later is made from the stored manifest: it gets the real value too.
    await jobs.done(
        await client.post(f"/v1/clusters/{cid}/actions/add-nodes", json={"role": "db", "count": 1})
    )
    assert f"export DB_PASSWORD={PASSWORD}\n" in in_cloud(qingcloud, cid)["db-2"]["userdata"]


async def test_a_password_left_to_its_default_is_hidden_as_well(
    client: httpx.AsyncClient, qingcloud: QingCloudFake, vm: dict[str, Any]
) -> None:
    made = await deploy(client, vm, "shop@1.0.0", values={})
    await Jobs(client).finished(made["job_id"])
    release = await client.get(f"/v1/clusters/{made['cluster_id']}/releases/1")
    assert DEFAULT_DB_PASSWORD not in release.text
    shown = {o["node_id"]: o for o in release.json()["manifest"]}
    assert shown["db-1"]["env"]["DB_PASSWORD"] == HIDDEN


async def test_the_render_endpoint_echoes_the_callers_own_settings(
    client: httpx.AsyncClient, vm: dict[str, Any]
) -> None:
    # Render stores nothing and shows only what its caller sent (or the package's defaults,
    # which anyone who may read the version can read in its config.json): it is the caller's
    # check of the spec a deploy would make, so the values are shown as they will be used.
    version_id = vm["versions"]["shop@1.0.0"]
    rendered = await client.post(f"/v1/app-versions/{version_id}/render", json={"conf": VALUES})
    assert rendered.status_code == 200, rendered.text
    body = rendered.json()
    assert body["conf"]["cluster"]["db"]["password"] == PASSWORD
    [db] = [r for r in body["cluster"]["nodes"] if r["role"] == "db"]
    assert db["env"]["DB_PASSWORD"] == PASSWORD
