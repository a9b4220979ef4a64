"""Fixtures for cluster tests: the fake Kubernetes API server, a chart repo with the charts
the tests deploy, and a runtime its apps may run on."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.helpers import create_repo, wait_job
from tests.support.charts import ChartSpec, write_index
from tests.support.deployments import kubeconfig, versions
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube

REQUIRED_SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-db
stringData:
  password: {{ required "dbPassword is required" .Values.dbPassword | quote }}
"""
CONFIG_V2 = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-extra
data:
  added: "in 2.0.0"
"""


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as fake:
        fake.auto_ready = True
        yield fake


@pytest.fixture
def shop_repo(repo_dir: Path, repo_server: RepoServer) -> RepoServer:
    write_index(
        repo_dir,
        [
            ChartSpec("shop", "1.0.0", app_version="1.0"),
            ChartSpec(
                "shop", "2.0.0", app_version="2.0", extra_templates={"extra.yaml": CONFIG_V2}
            ),
            ChartSpec("vault", "1.0.0", extra_templates={"secret.yaml": REQUIRED_SECRET}),
        ],
    )
    return repo_server


@pytest.fixture
async def setup(client: httpx.AsyncClient, kube: FakeKube, shop_repo: RepoServer) -> dict[str, Any]:
    """A repo whose apps may run on env=prod runtimes, indexed; a credential for the fake; a
    runtime labelled env=prod on a namespace of its own."""
    repo = await create_repo(
        client, unique(), shop_repo.url, selectors=[{"key": "env", "value": "prod"}]
    )
    assert (await wait_job(client, repo["index_job_id"]))["status"] == "successful"
    cred = await client.post(
        "/v1/runtime-credentials",
        json={"name": unique("c"), "provider": "kubernetes", "content": kubeconfig(kube)},
    )
    assert cred.status_code == 201, cred.text
    runtime = await client.post(
        "/v1/runtimes",
        json={
            "name": unique("rt"),
            "credential_id": cred.json()["credential_id"],
            "zone": unique("ns"),
            "create_zone": True,
            "labels": [{"key": "env", "value": "prod"}],
        },
    )
    assert runtime.status_code == 201, runtime.text
    return {
        "runtime": runtime.json(),
        "credential_id": cred.json()["credential_id"],
        "versions": await versions(client, repo["repo_id"]),
    }
