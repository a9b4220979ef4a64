"""`"dry_run": true` on cluster actions: what would change, from server-side-apply dry runs,
with nothing done (no job, no lock, no row, no object)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from openpitrix.providers.base import Provider
from openpitrix.providers.kubernetes.preview import field_diff
from openpitrix.providers.kubernetes.provider import KubernetesProvider
from tests.helpers import assert_error, wait_job
from tests.support.charts import REQUIRED_SECRET, ChartSpec, write_index
from tests.support.deployments import deploy, owned, prepare_runtime
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube

SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-creds
stringData:
  password: {{ .Values.password | quote }}
"""
# web 2.0.0 changes the image (its appVersion is the tag) and drops the Service.
WEB_CHARTS = [
    ChartSpec("web", "1.0.0", app_version="1.0", extra_templates={"secret.yaml": SECRET}),
    ChartSpec(
        "web",
        "2.0.0",
        app_version="2.0",
        extra_templates={"secret.yaml": SECRET, "service.yaml": ""},
    ),
    ChartSpec("vault", "1.0.0", extra_templates={"secret.yaml": REQUIRED_SECRET}),
]
KINDS = ("Deployment", "Service", "Secret")


@pytest.fixture
async def web(
    client: httpx.AsyncClient, kube: FakeKube, repo_dir: Path, repo_server: RepoServer
) -> dict[str, Any]:
    write_index(repo_dir, WEB_CHARTS)
    return await prepare_runtime(client, kube, repo_server.url)


def by_kind(preview: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{"Deployment": change, ...}: each change under the kind its resource names."""
    return {c["resource"].split()[1]: c for c in preview["changes"]}


async def counts(client: httpx.AsyncClient) -> tuple[int, int]:
    jobs = (await client.get("/v1/jobs")).json()["total_count"]
    clusters = (await client.get("/v1/clusters")).json()["total_count"]
    return jobs, clusters


async def test_create_preview_lists_every_object_and_makes_nothing(
    client: httpx.AsyncClient, kube: FakeKube, web: dict[str, Any]
) -> None:
    ns = web["runtime"]["zone"]
    before = await counts(client)
    body = {
        "version_id": web["versions"]["web@1.0.0"],
        "runtime_id": web["runtime"]["runtime_id"],
        "name": "preview",
        "values": {"password": "s3cret"},
        "dry_run": True,
    }
    headers = {"Idempotency-Key": "preview-then-create"}
    resp = await client.post("/v1/clusters", json=body, headers=headers)
    assert resp.status_code == 200, resp.text
    preview = resp.json()
    assert preview["action"] == "create"
    assert sorted((c["kind"], c["resource"].split()[1]) for c in preview["changes"]) == [
        ("create", "Deployment"),
        ("create", "Secret"),
        ("create", "Service"),
    ]
    assert "s3cret" not in resp.text
    assert "Location" not in resp.headers
    assert await counts(client) == before
    for kind in KINDS:
        assert kube.objects(kind, ns) == []
    # The preview kept no idempotency record: the key still starts the real create.
    real = await client.post("/v1/clusters", json={**body, "dry_run": False}, headers=headers)
    assert real.status_code == 202, real.text
    assert (await wait_job(client, real.json()["job_id"]))["status"] == "successful"


async def test_previews_of_a_deployed_cluster(
    client: httpx.AsyncClient, kube: FakeKube, web: dict[str, Any]
) -> None:
    ns = web["runtime"]["zone"]
    made = await deploy(client, web, "web@1.0.0", values={"password": "s3cret"})
    cid = made["cluster_id"]
    assert (await wait_job(client, made["job_id"]))["status"] == "successful"
    before = await counts(client)
    live = {kind: owned(kube, kind, ns, cid) for kind in KINDS}

    # Upgrade to 2.0.0: the image changes, the Service leaves the chart.
    up = await client.post(
        f"/v1/clusters/{cid}/actions/upgrade",
        json={"version_id": web["versions"]["web@2.0.0"], "dry_run": True},
    )
    assert up.status_code == 200, up.text
    changes = by_kind(up.json())
    assert changes["Service"]["kind"] == "delete"
    deployment = changes["Deployment"]
    assert deployment["kind"] == "update"
    image = {d["path"]: d for d in deployment["diff"]}["spec.template.spec.containers[0].image"]
    assert (image["before"], image["after"]) == (
        "docker.io/example/web:1.0",
        "docker.io/example/web:2.0",
    )
    assert changes["Secret"]["kind"] == "unchanged"

    # update-env: only the changed value's fields.
    env = await client.post(
        f"/v1/clusters/{cid}/actions/update-env",
        json={"values": {"replicaCount": 3}, "dry_run": True},
    )
    assert env.status_code == 200, env.text
    changes = by_kind(env.json())
    assert changes["Deployment"]["diff"] == [{"path": "spec.replicas", "before": 1, "after": 3}]
    assert {changes["Service"]["kind"], changes["Secret"]["kind"]} == {"unchanged"}

    # A Secret's change shows which key, never the values.
    secret = await client.post(
        f"/v1/clusters/{cid}/actions/update-env",
        json={"values": {"password": "n3w-pass"}, "dry_run": True},
    )
    assert secret.status_code == 200, secret.text
    changes = by_kind(secret.json())
    assert changes["Secret"]["diff"] == [
        {"path": "data.password", "before": "<redacted>", "after": "<redacted>"}
    ]
    assert "n3w-pass" not in secret.text and "s3cret" not in secret.text

    # Delete lists every object of the cluster.
    gone = await client.delete(f"/v1/clusters/{cid}", params={"dry_run": "true"})
    assert gone.status_code == 200, gone.text
    assert sorted((c["kind"], c["resource"].split()[1]) for c in gone.json()["changes"]) == [
        ("delete", "Deployment"),
        ("delete", "Secret"),
        ("delete", "Service"),
    ]

    # Nothing happened: no job, no new revision, no lock, the objects as they were.
    assert await counts(client) == before
    cluster = (await client.get(f"/v1/clusters/{cid}")).json()
    assert (cluster["revision"], cluster["transition_status"], cluster["status"]) == (
        1,
        "",
        "active",
    )
    assert (await client.get(f"/v1/clusters/{cid}/releases")).json()["total_count"] == 1
    assert {kind: owned(kube, kind, ns, cid) for kind in KINDS} == live

    # Rollback: back to revision 1's values after a real update-env.
    env = await client.post(
        f"/v1/clusters/{cid}/actions/update-env", json={"values": {"replicaCount": 2}}
    )
    assert (await wait_job(client, env.json()["job_id"]))["status"] == "successful"
    back = await client.post(f"/v1/clusters/{cid}/actions/rollback", json={"dry_run": True})
    assert back.status_code == 200, back.text
    changes = by_kind(back.json())
    assert changes["Deployment"]["diff"] == [{"path": "spec.replicas", "before": 2, "after": 1}]
    assert (await client.get(f"/v1/clusters/{cid}")).json()["revision"] == 2


async def test_preview_fails_as_the_action_would(
    client: httpx.AsyncClient, web: dict[str, Any]
) -> None:
    # A value the chart requires is missing: the create's job fails with render_failed; its
    # preview answers that at once.
    resp = await client.post(
        "/v1/clusters",
        json={
            "version_id": web["versions"]["vault@1.0.0"],
            "runtime_id": web["runtime"]["runtime_id"],
            "name": "vault",
            "dry_run": True,
        },
    )
    body = assert_error(resp, 422, "render_failed")
    assert "dbPassword is required" in body["message"]
    made = await deploy(client, web, "vault@1.0.0")
    job = await wait_job(client, made["job_id"])
    assert job["error"]["code"] == "render_failed"
    # A state the action refuses, the preview refuses the same way.
    cid = made["cluster_id"]
    for path, payload in (
        ("actions/cease", {"dry_run": True}),
        ("actions/update-env", {"values": {}, "dry_run": True}),
    ):
        real = await client.post(f"/v1/clusters/{cid}/{path}", json={**payload, "dry_run": False})
        dry = await client.post(f"/v1/clusters/{cid}/{path}", json=payload)
        assert_error(real, 409, "cluster_state")
        assert_error(dry, 409, "cluster_state")
    # The cease body may be left out, as before.
    assert_error(await client.post(f"/v1/clusters/{cid}/actions/cease"), 409, "cluster_state")


async def test_preview_checks_the_namespace_quota_as_the_job_does(
    client: httpx.AsyncClient, kube: FakeKube, web: dict[str, Any]
) -> None:
    ns = web["runtime"]["zone"]
    kube.set_quota(ns, "team", hard={"pods": "2"}, used={"pods": "1"})
    resp = await client.post(
        "/v1/clusters",
        json={
            "version_id": web["versions"]["web@1.0.0"],
            "runtime_id": web["runtime"]["runtime_id"],
            "name": "big",
            "values": {"replicaCount": 2},
            "dry_run": True,
        },
    )
    body = assert_error(resp, 409, "insufficient_resources")
    assert "quota team: pods would be 3 of 2 (1 used, 2 more asked)" in body["message"]


def test_field_paths_quote_keys_with_dots() -> None:
    before = {"metadata": {"labels": {"app.kubernetes.io/version": "1"}}, "spec": {"a": [1, 2]}}
    after = {"metadata": {"labels": {"app.kubernetes.io/version": "2"}}, "spec": {"a": [1, 3]}}
    assert [(c.path, c.before, c.after) for c in field_diff(before, after)] == [
        ('metadata.labels["app.kubernetes.io/version"]', "1", "2"),
        ("spec.a[1]", 2, 3),
    ]


async def test_a_provider_without_preview_answers_409(
    client: httpx.AsyncClient, web: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A plugin that does not implement `preview` inherits the base class's refusal.
    monkeypatch.setattr(KubernetesProvider, "preview", Provider.preview)
    before = await counts(client)
    resp = await client.post(
        "/v1/clusters",
        json={
            "version_id": web["versions"]["web@1.0.0"],
            "runtime_id": web["runtime"]["runtime_id"],
            "name": "preview",
            "dry_run": True,
        },
    )
    body = assert_error(resp, 409, "preview_unsupported")
    assert "kubernetes clusters cannot preview create" in body["message"]
    assert await counts(client) == before


async def test_preview_of_a_busy_cluster_is_refused_like_the_action(
    client: httpx.AsyncClient, kube: FakeKube, web: dict[str, Any]
) -> None:
    kube.auto_ready = False  # the create's job waits, holding the cluster's lock
    made = await deploy(client, web, "web@1.0.0", values={"password": "x"})
    cid = made["cluster_id"]
    dry = await client.delete(f"/v1/clusters/{cid}", params={"dry_run": "true"})
    assert_error(dry, 409, "cluster_busy")
    assert_error(await client.delete(f"/v1/clusters/{cid}"), 409, "cluster_busy")
    cancel = await client.post(f"/v1/jobs/{made['job_id']}/actions/cancel")
    assert cancel.status_code == 202, cancel.text
    assert (await wait_job(client, made["job_id"]))["status"] == "cancelled"
