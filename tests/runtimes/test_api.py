"""Runtime credentials and runtimes through the API, against the fake Kubernetes API server."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from openpitrix.db.engine import Database
from openpitrix.iam.schemas import Role
from openpitrix.runtimes.models import RuntimeCredential
from tests.conftest import LiveServer, unique
from tests.helpers import assert_error, closed_url, create_repo, wait_job
from tests.support.auth import bearer, create_account, mint_token
from tests.support.deployments import kubeconfig
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube

RUNTIME_LABEL = "openpitrix.io/runtime"


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as fake:
        yield fake


async def make_credential(http: httpx.AsyncClient, kube: FakeKube) -> dict[str, Any]:
    resp = await http.post(
        "/v1/runtime-credentials",
        json={"name": unique("cred"), "provider": "kubernetes", "content": kubeconfig(kube)},
    )
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


async def make_runtime(
    http: httpx.AsyncClient, credential_id: str, zone: str, **extra: Any
) -> httpx.Response:
    body = {"name": unique("rt"), "credential_id": credential_id, "zone": zone, **extra}
    return await http.post("/v1/runtimes", json=body)


def namespace_labels(kube: FakeKube, name: str) -> dict[str, str]:
    found = [o for o in kube.objects("Namespace") if o["metadata"]["name"] == name]
    assert found, f"namespace {name} does not exist"
    labels: dict[str, str] = found[0]["metadata"].get("labels") or {}
    return labels


async def test_providers_are_listed_with_their_capabilities(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/providers")
    assert resp.status_code == 200
    kube = {p["name"]: p for p in resp.json()["items"]}["kubernetes"]
    assert kube["zone_kind"] == "namespace"
    assert "create" in kube["cluster_actions"] and "resize" not in kube["cluster_actions"]


async def test_validate_checks_a_credential_without_storing_it(
    client: httpx.AsyncClient, kube: FakeKube, db: Database
) -> None:
    async with db.read_session() as session:
        before = len((await session.execute(RuntimeCredential.__table__.select())).all())  # type: ignore[attr-defined]
    ok = await client.post(
        "/v1/runtime-credentials/validate",
        json={"provider": "kubernetes", "content": kubeconfig(kube)},
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["ok"] is True and ok.json()["endpoint_url"] == kube.url
    cases = {
        "not yaml: [": "credential_invalid",
        "kind: Config\n": "credential_invalid",  # no current-context
        kubeconfig(kube, exec={"command": "/bin/sh"}): "credential_unsupported",
        kubeconfig(kube, tokenFile="/etc/passwd"): "credential_unsupported",
        kubeconfig(kube, token="wrong"): "credential_invalid",
        kubeconfig(kube, server=closed_url("https")): "provider_unavailable",
    }
    for content, code in cases.items():
        resp = await client.post(
            "/v1/runtime-credentials/validate",
            json={"provider": "kubernetes", "content": content},
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["ok"] is False and resp.json()["error"]["code"] == code, content
    unknown = await client.post(
        "/v1/runtime-credentials/validate", json={"provider": "nope", "content": "x"}
    )
    assert_error(unknown, 400, "unknown_provider")
    async with db.read_session() as session:
        after = len((await session.execute(RuntimeCredential.__table__.select())).all())  # type: ignore[attr-defined]
    assert after == before


async def test_a_stored_credential_is_encrypted_and_never_returned(
    client: httpx.AsyncClient, kube: FakeKube, db: Database
) -> None:
    made = await make_credential(client, kube)
    assert "content" not in made and made["content_set"] is True
    assert made["endpoint_url"] == kube.url
    got = await client.get(f"/v1/runtime-credentials/{made['credential_id']}")
    assert kube.token not in got.text
    async with db.read_session() as session:
        row = await session.get(RuntimeCredential, made["credential_id"])
    assert row is not None and kube.token not in row.content_secret
    # A credential the cluster refuses is not stored.
    refused = await client.post(
        "/v1/runtime-credentials",
        json={
            "name": unique("cred"),
            "provider": "kubernetes",
            "content": kubeconfig(kube, token="wrong"),
        },
    )
    assert_error(refused, 400, "credential_invalid")


async def test_zones_are_the_clusters_namespaces(client: httpx.AsyncClient, kube: FakeKube) -> None:
    made = await make_credential(client, kube)
    assert (
        await make_runtime(client, made["credential_id"], "team-a", create_zone=True)
    ).status_code == 201
    resp = await client.get(f"/v1/runtime-credentials/{made['credential_id']}/zones")
    assert resp.status_code == 200, resp.text
    assert resp.json()["zone_kind"] == "namespace"
    assert "team-a" in resp.json()["zones"] and "default" in resp.json()["zones"]


async def test_a_runtime_claims_its_namespace_and_a_second_claim_is_refused(
    client: httpx.AsyncClient, kube: FakeKube
) -> None:
    cred = await make_credential(client, kube)
    missing = await make_runtime(client, cred["credential_id"], "web")
    assert_error(missing, 400, "zone_not_found")

    first = await make_runtime(
        client,
        cred["credential_id"],
        "web",
        create_zone=True,
        labels=[{"key": "env", "value": "prod"}],
    )
    assert first.status_code == 201, first.text
    runtime = first.json()
    assert runtime["provider"] == "kubernetes" and runtime["zone"] == "web"
    assert runtime["labels"] == [{"key": "env", "value": "prod"}]
    assert namespace_labels(kube, "web")[RUNTIME_LABEL] == runtime["runtime_id"]

    again = await make_runtime(client, cred["credential_id"], "web")
    assert_error(again, 409, "zone_taken")
    # Through another credential for the same cluster, the namespace's mark still refuses it.
    other = await make_credential(client, kube)
    assert_error(await make_runtime(client, other["credential_id"], "web"), 409, "zone_taken")

    # Deleting the runtime gives the namespace back (the namespace itself stays).
    assert (await client.delete(f"/v1/runtimes/{runtime['runtime_id']}")).status_code == 200
    assert RUNTIME_LABEL not in namespace_labels(kube, "web")
    assert (await make_runtime(client, other["credential_id"], "web")).status_code == 201


async def test_a_credential_in_use_cannot_be_deleted(
    client: httpx.AsyncClient, kube: FakeKube
) -> None:
    cred = await make_credential(client, kube)
    runtime = (await make_runtime(client, cred["credential_id"], "db", create_zone=True)).json()
    path = f"/v1/runtime-credentials/{cred['credential_id']}"
    assert_error(await client.delete(path), 409, "credential_in_use")
    assert (await client.delete(f"/v1/runtimes/{runtime['runtime_id']}")).status_code == 200
    assert (await client.delete(path)).status_code == 204
    gone = await make_runtime(client, cred["credential_id"], "db2", create_zone=True)
    assert_error(gone, 409, "credential_deleted")


async def test_runtime_labels_can_be_changed_and_filtered(
    client: httpx.AsyncClient, kube: FakeKube
) -> None:
    cred = await make_credential(client, kube)
    runtime = (
        await make_runtime(client, cred["credential_id"], unique("ns"), create_zone=True)
    ).json()
    path = f"/v1/runtimes/{runtime['runtime_id']}"
    resp = await client.patch(path, json={"labels": [{"key": "tier", "value": "gold"}]})
    assert resp.status_code == 200, resp.text
    found = await client.get("/v1/runtimes", params={"label": "tier=gold"})
    assert runtime["runtime_id"] in {r["runtime_id"] for r in found.json()["items"]}
    assert_error(await client.patch(path, json={"labels": None}), 422, "validation_error")


async def _version_of(client: httpx.AsyncClient, repo_id: str) -> str:
    apps = (await client.get("/v1/apps", params={"repo_id": repo_id})).json()["items"]
    versions = await client.get(f"/v1/apps/{apps[0]['app_id']}/versions")
    version_id: str = versions.json()["items"][0]["version_id"]
    return version_id


async def test_eligible_runtimes_follow_the_repos_providers_and_selectors(
    client: httpx.AsyncClient, kube: FakeKube, chart_repo: RepoServer
) -> None:
    selectors = [
        {"key": "env", "value": "prod"},
        {"key": "env", "value": "staging"},
        {"key": "tier", "value": "web"},
    ]
    repo = await create_repo(client, unique(), chart_repo.url, selectors=selectors)
    assert (await wait_job(client, repo["index_job_id"]))["status"] == "successful"
    vm_repo = await create_repo(client, unique(), chart_repo.url, providers=["testcloud"])
    assert (await wait_job(client, vm_repo["index_job_id"]))["status"] == "successful"

    cred = await make_credential(client, kube)
    made = {}
    for name, labels in {
        "prod-web": [("env", "prod"), ("tier", "web")],
        "staging-web": [("env", "staging"), ("tier", "web"), ("x", "y")],
        "dev-web": [("env", "dev"), ("tier", "web")],
        "prod-only": [("env", "prod")],
    }.items():
        resp = await make_runtime(
            client,
            cred["credential_id"],
            unique(name),
            create_zone=True,
            labels=[{"key": k, "value": v} for k, v in labels],
        )
        assert resp.status_code == 201, resp.text
        made[resp.json()["runtime_id"]] = name

    async def eligible(version_id: str) -> set[str]:
        resp = await client.get(
            "/v1/runtimes", params={"eligible_for_version": version_id, "limit": 200}
        )
        assert resp.status_code == 200, resp.text
        return {made[r["runtime_id"]] for r in resp.json()["items"] if r["runtime_id"] in made}

    assert await eligible(await _version_of(client, repo["repo_id"])) == {"prod-web", "staging-web"}
    assert await eligible(await _version_of(client, vm_repo["repo_id"])) == set()
    missing = await client.get("/v1/runtimes", params={"eligible_for_version": "appv-nope"})
    assert_error(missing, 404, "not_found")


async def test_another_developers_credentials_and_runtimes_are_invisible(
    server: LiveServer, database_url: str, kube: FakeKube
) -> None:
    async def dev() -> httpx.AsyncClient:
        user_id = await create_account(database_url, Role.DEVELOPER)
        return httpx.AsyncClient(
            base_url=server.url, timeout=30, headers=bearer(mint_token(user_id, Role.DEVELOPER))
        )

    async with await dev() as alice, await dev() as bob:
        cred = await make_credential(alice, kube)
        runtime = (
            await make_runtime(alice, cred["credential_id"], unique("ns"), create_zone=True)
        ).json()
        cred_path = f"/v1/runtime-credentials/{cred['credential_id']}"
        for method, path, body in [
            ("GET", cred_path, None),
            ("PATCH", cred_path, {"name": "mine"}),
            ("DELETE", cred_path, None),
            ("GET", f"{cred_path}/zones", None),
            ("GET", f"/v1/runtimes/{runtime['runtime_id']}", None),
            ("PATCH", f"/v1/runtimes/{runtime['runtime_id']}", {"name": "mine"}),
            ("DELETE", f"/v1/runtimes/{runtime['runtime_id']}", None),
        ]:
            assert_error(await bob.request(method, path, json=body), 404, "not_found")
        # Nor can Bob build a runtime on Alice's credential.
        stolen = await make_runtime(bob, cred["credential_id"], unique("ns"), create_zone=True)
        assert_error(stolen, 404, "not_found")
        assert (await bob.get("/v1/runtimes")).json()["items"] == []
        assert (await bob.get("/v1/runtime-credentials")).json()["items"] == []
        assert (await alice.get(f"/v1/runtimes/{runtime['runtime_id']}")).status_code == 200
