"""Fixtures for cluster tests (the fake `kube` and `shop_repo` are in tests/conftest.py)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.support.deployments import prepare_runtime
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube


@pytest.fixture
async def setup(client: httpx.AsyncClient, kube: FakeKube, shop_repo: RepoServer) -> dict[str, Any]:
    """An indexed shop repo and an env=prod runtime on the fake (see prepare_runtime)."""
    return await prepare_runtime(client, kube, shop_repo.url)
