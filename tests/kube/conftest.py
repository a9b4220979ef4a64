"""Fixtures for the fake Kubernetes API server's tests: a fresh fake per test and clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.dynamic import DynamicClient

from tests.kube.helpers import make_client
from tests.support.kube import FakeKube


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as fake:
        yield fake


@pytest.fixture
async def api(kube: FakeKube, tmp_path: Path) -> AsyncIterator[ApiClient]:
    async with await make_client(kube, tmp_path) as api_client:
        yield api_client


@pytest.fixture
async def dyn(api: ApiClient, tmp_path: Path) -> DynamicClient:
    # A discovery cache of this test's own: the default one in /tmp is keyed by host:port,
    # which a later server may reuse.
    return await DynamicClient(api, cache_file=str(tmp_path / "discovery.json"))
