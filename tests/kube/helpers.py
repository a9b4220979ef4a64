"""Clients and builders for the fake Kubernetes API server's tests."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client, config
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.dynamic.exceptions import DynamicApiError

from tests.support.kube import FakeKube

Obj = dict[str, Any]


async def make_client(kube: FakeKube, tmp_path: Path) -> ApiClient:
    """An API client configured from the fake's kubeconfig, as the provider builds one."""
    path = kube.kubeconfig(tmp_path / "kubeconfig")
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(path), client_configuration=configuration)
    return ApiClient(configuration=configuration)


async def create_namespace(api: ApiClient, name: str) -> None:
    await client.CoreV1Api(api).create_namespace({"metadata": {"name": name}})


def status_of(exc: ApiException) -> Obj:
    body: Obj = json.loads(exc.body)
    return body


async def failure_of(call: Awaitable[Any]) -> Obj:
    """The Status of a failed DynamicClient call. kubernetes-asyncio 36.1 hands error Statuses
    back as results instead of raising (tomplus/kubernetes_asyncio#402); both shapes count."""
    try:
        result = await call
    except DynamicApiError as exc:
        body: Obj = json.loads(exc.body)
        return body
    body = result.to_dict()
    assert body["kind"] == "Status" and body["status"] == "Failure", body
    return body


def deployment(name: str, image: str = "nginx:1.27", replicas: int = 2) -> Obj:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "containers": [
                        {"name": "web", "image": image, "ports": [{"containerPort": 80}]}
                    ]
                },
            },
        },
    }
