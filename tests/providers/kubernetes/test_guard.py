"""Kubernetes API clients connect through the address guard, like repo fetches do."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from openpitrix.netguard import (
    ADDRESS_NOT_ALLOWED,
    AddressNotAllowed,
    AddressPolicy,
    guarded_session,
)
from openpitrix.providers.base import ClusterState, Credential, ProviderError, TaskRun
from openpitrix.providers.kubernetes.provider import KubernetesProvider
from tests.support.deployments import kubeconfig
from tests.support.kube import FakeKube

STRICT = AddressPolicy()
OPEN = AddressPolicy(allow_private=True)


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as fake:
        yield fake


@pytest.fixture
async def provider() -> AsyncIterator[KubernetesProvider]:
    made = KubernetesProvider()
    try:
        yield made
    finally:
        await made.close()


@pytest.fixture
async def tcp_listener() -> AsyncIterator[tuple[int, list[object]]]:
    """A loopback TCP listener that records every connection made to it."""
    accepted: list[object] = []

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer.get_extra_info("peername"))
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield port, accepted
    finally:
        server.close()
        await server.wait_closed()


def session(policy: AddressPolicy) -> aiohttp.ClientSession:
    return guarded_session(policy, ssl_context=ssl.create_default_context())


def run_of(kube: FakeKube, action: str, policy: AddressPolicy) -> TaskRun:
    async def no_chart() -> bytes:
        raise AssertionError("no chart is fetched by this task")

    async def report(message: str, percent: int | None, data: dict[str, Any]) -> None:
        return None

    return TaskRun(
        action=action,
        params={},
        cluster_id="cl-guarded",
        zone="default",
        credential=Credential("kubernetes", kube.url, kubeconfig(kube)),
        release=None,
        previous=None,
        history=(),
        state=ClusterState(),
        fetch_package=no_chart,
        report=report,
        timeout_seconds=30.0,
        policy=policy,
    )


# ------------------------------------------------------------------------ the aiohttp connector


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
async def test_guarded_session_refuses_loopback_before_connecting(
    tcp_listener: tuple[int, list[object]], host: str
) -> None:
    port, accepted = tcp_listener
    async with session(STRICT) as http:
        with pytest.raises(AddressNotAllowed) as info:
            await http.get(f"http://{host}:{port}/version")

    assert "loopback" in info.value.reason
    if host == "localhost":
        # A name's resolved address stays out of the message (no oracle for internal DNS).
        assert str(info.value) == "localhost resolves to a non-public address (loopback)"
    await asyncio.sleep(0.05)
    assert accepted == []


async def test_guarded_session_connects_where_the_policy_allows(
    tcp_listener: tuple[int, list[object]],
) -> None:
    port, accepted = tcp_listener
    async with session(OPEN) as http:
        with pytest.raises(aiohttp.ClientError):  # the listener hangs up without answering
            await http.get(f"http://localhost:{port}/version")

    assert accepted  # aiohttp may retry the idempotent GET once on the hang-up


async def test_guarded_session_follows_no_proxy(
    tcp_listener: tuple[int, list[object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    port, accepted = tcp_listener
    # Through a proxy the address reached could not be checked: environment proxies are
    # ignored and explicit ones refused.
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{port}")
    async with session(OPEN) as http:
        with pytest.raises(aiohttp.ClientConnectionError, match="proxies"):
            await http.get("http://93.184.216.34/", proxy=f"http://127.0.0.1:{port}")

    assert accepted == []


# ---------------------------------------------------------------------------- provider calls


async def test_validation_refuses_a_loopback_api_server_before_any_request(
    kube: FakeKube, provider: KubernetesProvider
) -> None:
    credential = provider.parse_credential(kubeconfig(kube), "")
    seen = len(kube.requests)

    with pytest.raises(ProviderError) as info:
        await provider.validate_credential(credential, STRICT)

    assert info.value.code == ADDRESS_NOT_ALLOWED
    assert info.value.retryable is False
    assert "127.0.0.1 is not a public address (loopback)" in info.value.message
    assert len(kube.requests) == seen


async def test_a_hostname_resolving_to_loopback_is_refused_too(
    kube: FakeKube, provider: KubernetesProvider
) -> None:
    server = kube.url.replace("127.0.0.1", "localhost")
    credential = provider.parse_credential(kubeconfig(kube, server=server), "")
    seen = len(kube.requests)

    with pytest.raises(ProviderError) as info:
        await provider.describe_zones(credential, STRICT)

    assert info.value.code == ADDRESS_NOT_ALLOWED
    assert "localhost resolves to a non-public address (loopback)" in info.value.message
    assert len(kube.requests) == seen


@pytest.mark.parametrize("action", ["describe", "delete", "purge"])
async def test_job_tasks_refuse_a_loopback_api_server(
    kube: FakeKube, provider: KubernetesProvider, action: str
) -> None:
    seen = len(kube.requests)
    with pytest.raises(ProviderError) as info:
        await provider.run_task(run_of(kube, action, STRICT))

    assert info.value.code == ADDRESS_NOT_ALLOWED
    assert info.value.retryable is False
    assert len(kube.requests) == seen


async def test_job_tasks_reach_an_allowed_api_server(
    kube: FakeKube, provider: KubernetesProvider
) -> None:
    assert await provider.run_task(run_of(kube, "describe", OPEN)) == {"roles": [], "nodes": []}
    # The same cluster under a refusing policy does not reuse the allowed pooled client.
    with pytest.raises(ProviderError) as info:
        await provider.run_task(run_of(kube, "describe", STRICT))
    assert info.value.code == ADDRESS_NOT_ALLOWED
