"""Kubeconfig servers go through the address guard; servers that are not Kubernetes get a reason.

The server the tests run is production-like here ("strict": private addresses refused) where
the guard is the point, and the usual test server (loopback allowed) elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from openpitrix.iam.schemas import Role
from openpitrix.netguard import ADDRESS_NOT_ALLOWED
from openpitrix.settings import NetworkSettings, Settings
from tests.conftest import LiveServer, make_settings, unique
from tests.helpers import assert_error, wait_job
from tests.support.auth import headers_for
from tests.support.deployments import deploy, kubeconfig, prepare_runtime
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube

VALIDATE = "/v1/runtime-credentials/validate"
LOOPBACK = "127.0.0.1 is not a public address (loopback)"


def strict_settings(database_url: str, nats_url: str, data_dir: Path) -> Settings:
    return make_settings(
        database_url,
        nats_url,
        data_dir,
        network=NetworkSettings(allow_private_addresses=False),
    )


@pytest.fixture
async def strict(
    database_url: str, nats_url: str, tmp_path: Path, admin_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's client of a server configured like production: private addresses refused."""
    settings = strict_settings(database_url, nats_url, tmp_path / "strict-data")
    async with (
        LiveServer(settings) as live,
        httpx.AsyncClient(base_url=live.url, timeout=30, headers=admin_headers) as http,
    ):
        yield http


async def validate(http: httpx.AsyncClient, content: str) -> dict[str, Any]:
    resp = await http.post(VALIDATE, json={"provider": "kubernetes", "content": content})
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


# -------------------------------------------------------------------------------- the guard


async def test_validate_refuses_a_loopback_kubeconfig_server_before_any_request(
    strict: httpx.AsyncClient, kube: FakeKube
) -> None:
    seen = len(kube.requests)

    body = await validate(strict, kubeconfig(kube))

    assert body["ok"] is False
    assert body["error"]["code"] == ADDRESS_NOT_ALLOWED
    assert LOOPBACK in body["error"]["message"]
    assert len(kube.requests) == seen


async def test_a_user_role_cannot_probe_internal_addresses_through_validation(
    strict: httpx.AsyncClient, kube: FakeKube, database_url: str
) -> None:
    # runtime:write is a user's right too: the guard, not the role, keeps them off loopback.
    user = await headers_for(database_url, Role.USER)
    seen = len(kube.requests)
    resp = await strict.post(
        VALIDATE,
        json={"provider": "kubernetes", "content": kubeconfig(kube)},
        headers=user,
    )

    assert resp.status_code == 200, resp.text
    assert resp.json()["error"]["code"] == ADDRESS_NOT_ALLOWED
    assert len(kube.requests) == seen


async def test_a_credential_for_a_refused_server_is_not_stored(
    strict: httpx.AsyncClient, kube: FakeKube
) -> None:
    seen = len(kube.requests)
    resp = await strict.post(
        "/v1/runtime-credentials",
        json={"name": unique("cred"), "provider": "kubernetes", "content": kubeconfig(kube)},
    )

    body = assert_error(resp, 400, ADDRESS_NOT_ALLOWED)
    assert LOOPBACK in body["message"]
    assert len(kube.requests) == seen


async def test_a_kubeconfig_going_through_a_proxy_is_refused(
    client: httpx.AsyncClient, kube: FakeKube, web_server: RepoServer
) -> None:
    # Through a proxy the guard could not check the address reached; nothing is sent to it.
    doc = kube.kubeconfig_dict()
    doc["clusters"][0]["cluster"]["proxy-url"] = web_server.url

    body = await validate(client, yaml.safe_dump(doc))

    assert body["ok"] is False
    assert body["error"]["code"] == "credential_unsupported"
    assert "proxy-url" in body["error"]["message"]
    assert web_server.requests == []


# ------------------------------------------------------------------ servers that answer oddly


@pytest.fixture
def web_server(tmp_path: Path) -> Any:
    root = tmp_path / "web"
    root.mkdir()
    with RepoServer(root) as running:
        yield running


async def test_a_web_server_that_is_not_kubernetes_gets_a_reason_not_a_500(
    client: httpx.AsyncClient, kube: FakeKube, web_server: RepoServer
) -> None:
    content = kubeconfig(kube, server=web_server.url)

    missing = await validate(client, content)  # 404 on /version
    assert missing["ok"] is False
    assert missing["error"] == {
        "code": "not_kubernetes",
        "message": f"{web_server.url} is not a Kubernetes API server: GET /version answered "
        "HTTP 404",
    }

    web_server.set_body("/version/", b"<html><body>Welcome</body></html>", content_type="text/html")
    html = await validate(client, content)
    assert html["ok"] is False
    assert html["error"]["code"] == "not_kubernetes"
    assert "did not answer with a Kubernetes object" in html["error"]["message"]

    web_server.set_body("/version/", b"{}", content_type="application/json")
    empty = await validate(client, content)
    assert empty["error"]["code"] == "not_kubernetes"


async def test_an_untrusted_certificate_is_a_reason(
    client: httpx.AsyncClient, kube: FakeKube
) -> None:
    doc = kube.kubeconfig_dict()
    del doc["clusters"][0]["cluster"]["certificate-authority-data"]

    body = await validate(client, yaml.safe_dump(doc))

    assert body["ok"] is False
    assert body["error"]["code"] == "provider_unavailable"
    assert "TLS certificate was not accepted" in body["error"]["message"]


# ----------------------------------------------------------------------------------- job tasks


async def test_job_tasks_on_a_server_that_refuses_private_addresses_fail_with_the_refusal(
    database_url: str,
    nats_url: str,
    tmp_path: Path,
    admin_headers: dict[str, str],
    kube: FakeKube,
    shop_repo: RepoServer,
) -> None:
    # Set up (repo, credential, runtime, one cluster) where loopback is allowed, then run the
    # same server (same data dir, so the same secret key) with private addresses refused.
    data_dir = tmp_path / "data"
    allowed = make_settings(database_url, nats_url, data_dir)
    async with (
        LiveServer(allowed) as live,
        httpx.AsyncClient(base_url=live.url, timeout=30, headers=admin_headers) as http,
    ):
        setup = await prepare_runtime(http, kube, shop_repo.url)
        made = await deploy(http, setup, "shop@1.0.0")
        assert (await wait_job(http, made["job_id"]))["status"] == "successful"

    async with (
        LiveServer(strict_settings(database_url, nats_url, data_dir)) as live,
        httpx.AsyncClient(base_url=live.url, timeout=30, headers=admin_headers) as http,
    ):
        # A deploy fetches the chart package first, from the loopback repo: refused.
        fetched = len(shop_repo.requests)
        second = await deploy(http, setup, "shop@1.0.0")
        job = await wait_job(http, second["job_id"])
        assert job["status"] == "failed", job
        assert job["error"]["code"] == ADDRESS_NOT_ALLOWED, job["error"]
        assert LOOPBACK in job["error"]["message"]
        assert len(shop_repo.requests) == fetched

        # A delete talks to the kubeconfig's server only: refused there, nothing sent.
        seen = len(kube.requests)
        gone = await http.delete(f"/v1/clusters/{made['cluster_id']}")
        assert gone.status_code == 202, gone.text
        job = await wait_job(http, gone.json()["job_id"])
        assert job["status"] == "failed", job
        assert job["error"]["code"] == ADDRESS_NOT_ALLOWED, job["error"]
        assert "kubeconfig server refused" in job["error"]["message"]
        assert len(kube.requests) == seen
