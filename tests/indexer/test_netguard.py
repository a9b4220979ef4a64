"""Repo fetches refuse loopback, private and other internal addresses unless settings allow them.

The kubeconfig side of the same guard is in tests/runtimes/test_validation_guard.py."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
import ssl
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import trustme

from openpitrix.cli import local_mode
from openpitrix.fetch import FetchError as IndexFetchError
from openpitrix.netguard import (
    ADDRESS_NOT_ALLOWED,
    AddressNotAllowed,
    AddressPolicy,
    guarded_transport,
    refusal_reason,
)
from openpitrix.repos.helm import fetch_index
from openpitrix.settings import NetworkSettings, Settings
from tests.conftest import LiveServer, make_settings, unique
from tests.helpers import create_repo, wait_job
from tests.support.charts import make_specs, write_index
from tests.support.http_repo import RepoServer

LIMIT = 1024 * 1024
ALLOW_ENV = "OPENPITRIX_NETWORK__ALLOW_PRIVATE_ADDRESSES"
DEPRECATED_ALLOW_ENV = "OPENPITRIX_INDEXER__ALLOW_PRIVATE_ADDRESSES"


def guarded_client(
    policy: AddressPolicy, verify: ssl.SSLContext | bool = True
) -> httpx.AsyncClient:
    # Built like the platform's client: redirects followed, every connection through the guard.
    return httpx.AsyncClient(
        transport=guarded_transport(policy, verify=verify), follow_redirects=True, timeout=5.0
    )


async def fetch_error(client: httpx.AsyncClient, url: str) -> IndexFetchError:
    with pytest.raises(IndexFetchError) as info:
        await fetch_index(client, url, max_bytes=LIMIT, timeout=5.0)
    return info.value


@pytest.fixture
def repo(tmp_path: Path) -> Iterator[RepoServer]:
    write_index(tmp_path, make_specs(2, 1), packages=False)
    with RepoServer(tmp_path) as running:
        yield running


def port_of(server: RepoServer) -> int:
    return int(server.url.rsplit(":", 1)[1])


# ------------------------------------------------------------------------------ classification


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("127.45.6.7", "loopback"),
        ("::1", "loopback"),
        ("10.0.0.1", "private"),
        ("10.255.255.255", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.10", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "shared carrier-grade NAT"),
        ("100.127.255.254", "shared carrier-grade NAT"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("192.0.2.1", "special-purpose"),
        ("2001:db8::1", "special-purpose"),
        ("::ffff:127.0.0.1", "loopback, IPv4 embedded in IPv6"),
        ("::ffff:10.1.2.3", "private, IPv4 embedded in IPv6"),
        ("::ffff:169.254.169.254", "link-local, IPv4 embedded in IPv6"),
        ("64:ff9b::a9fe:a9fe", "link-local, IPv4 embedded in IPv6"),  # NAT64 of metadata
        ("2002:7f00:1::1", "loopback, IPv4 embedded in IPv6"),  # 6to4 of 127.0.0.1
    ],
)
def test_internal_addresses_are_refused_with_their_kind(address: str, reason: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal_reason(ip) == reason
    assert AddressPolicy().refusal(ip) == reason


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "::ffff:8.8.8.8"],
)
def test_public_addresses_are_allowed(address: str) -> None:
    ip = ipaddress.ip_address(address)
    assert refusal_reason(ip) is None
    assert AddressPolicy().refusal(ip) is None


def test_allow_private_allows_every_address() -> None:
    policy = AddressPolicy(allow_private=True)
    for address in ("127.0.0.1", "::1", "10.0.0.1", "169.254.169.254", "::ffff:127.0.0.1"):
        assert policy.refusal(ipaddress.ip_address(address)) is None


def test_allowed_networks_are_exceptions_to_the_refusal() -> None:
    policy = AddressPolicy(allowed_networks=(ipaddress.ip_network("10.20.0.0/16"),))
    assert policy.refusal(ipaddress.ip_address("10.20.1.2")) is None
    assert policy.refusal(ipaddress.ip_address("::ffff:10.20.1.2")) is None
    assert policy.refusal(ipaddress.ip_address("10.21.1.2")) == "private"
    assert policy.refusal(ipaddress.ip_address("127.0.0.1")) == "loopback"


# --------------------------------------------------------------------------- guarded transport


async def test_loopback_repo_is_refused_before_any_request(repo: RepoServer) -> None:
    async with guarded_client(AddressPolicy()) as client:
        error = await fetch_error(client, repo.url)

    assert error.code == ADDRESS_NOT_ALLOWED
    assert f"GET {repo.url}/index.yaml refused" in error.message
    assert "127.0.0.1 is not a public address (loopback)" in error.message
    assert repo.requests == []


async def test_refusal_reaches_httpx_callers_as_a_connect_error(repo: RepoServer) -> None:
    async with guarded_client(AddressPolicy()) as client:
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(f"{repo.url}/index.yaml")

    refused = info.value.__cause__
    assert isinstance(refused, AddressNotAllowed)
    assert refused.host == "127.0.0.1"
    assert refused.reason == "loopback"
    assert repo.requests == []


async def test_refused_address_sees_no_tcp_connection() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        listener.setblocking(False)
        port = listener.getsockname()[1]
        async with guarded_client(AddressPolicy()) as client:
            error = await fetch_error(client, f"http://127.0.0.1:{port}")
        assert error.code == ADDRESS_NOT_ALLOWED
        with pytest.raises(BlockingIOError):
            listener.accept()


async def test_loopback_repo_is_fetched_when_private_addresses_are_allowed(
    repo: RepoServer, tmp_path: Path
) -> None:
    async with guarded_client(AddressPolicy(allow_private=True)) as client:
        result = await fetch_index(client, repo.url, max_bytes=LIMIT, timeout=5.0)

    assert result.body == (tmp_path / "index.yaml").read_bytes()
    assert repo.count("/index.yaml", 200) == 1


async def test_name_resolving_to_loopback_is_refused(repo: RepoServer) -> None:
    # "localhost" contains no address: only resolving it shows where it leads.
    url = f"http://localhost:{port_of(repo)}"
    async with guarded_client(AddressPolicy()) as client:
        error = await fetch_error(client, url)

    assert error.code == ADDRESS_NOT_ALLOWED
    assert "localhost resolves to a non-public address (loopback)" in error.message
    assert repo.requests == []


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # 127.0.0.1 as one decimal number, which the resolver accepts
        "[::ffff:127.0.0.1]",
        "[::1]",
    ],
)
async def test_other_spellings_of_loopback_are_refused(repo: RepoServer, host: str) -> None:
    async with guarded_client(AddressPolicy()) as client:
        error = await fetch_error(client, f"http://{host}:{port_of(repo)}")

    assert error.code == ADDRESS_NOT_ALLOWED
    assert "loopback" in error.message
    assert repo.requests == []


async def test_redirect_to_a_refused_address_is_refused(repo: RepoServer) -> None:
    # The repo itself is allowed by an explicit exception; its redirect points at cloud metadata.
    metadata = "http://169.254.169.254/latest/meta-data/"
    repo.set_status("/index.yaml", 302, headers={"Location": metadata})
    policy = AddressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    async with guarded_client(policy) as client:
        error = await fetch_error(client, repo.url)

    assert error.code == ADDRESS_NOT_ALLOWED
    assert "169.254.169.254 is not a public address (link-local)" in error.message
    assert repo.count("/index.yaml", 302) == 1


@contextlib.asynccontextmanager
async def tls_server(context: ssl.SSLContext) -> AsyncIterator[int]:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, ssl.SSLError):
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


async def test_tls_verifies_and_sends_the_hostname_not_the_connected_address() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(server_context)  # no IP address in the cert
    sni: list[str | None] = []
    server_context.sni_callback = lambda _obj, name, _ctx: sni.append(name)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)

    async with (
        tls_server(server_context) as port,
        guarded_client(AddressPolicy(allow_private=True), verify=client_context) as client,
    ):
        response = await client.get(f"https://localhost:{port}/")
        # The same server by address fails verification: the name is what gets checked.
        with pytest.raises(httpx.ConnectError) as info:
            await client.get(f"https://127.0.0.1:{port}/")

    assert response.status_code == 200
    assert response.text == "ok"
    assert sni[0] == "localhost"
    assert isinstance(info.value.__cause__, ssl.SSLCertVerificationError) or (
        "certificate" in str(info.value).lower()
    )


# ------------------------------------------------------------------------------------- the API


@pytest.fixture
async def strict_api(
    database_url: str, nats_url: str, tmp_path: Path, admin_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's client of a server configured like production: private addresses refused."""
    settings = make_settings(
        database_url,
        nats_url,
        tmp_path / "strict-data",
        network=NetworkSettings(allow_private_addresses=False),
    )
    async with (
        LiveServer(settings) as live,
        httpx.AsyncClient(base_url=live.url, timeout=30, headers=admin_headers) as http,
    ):
        yield http


async def test_index_job_for_loopback_repo_fails_with_address_not_allowed(
    strict_api: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    repo = await create_repo(strict_api, unique(), chart_repo.url)
    job = await wait_job(strict_api, repo["index_job_id"])

    assert job["status"] == "failed", job
    assert job["error"]["code"] == ADDRESS_NOT_ALLOWED, job["error"]
    assert "127.0.0.1 is not a public address (loopback)" in job["error"]["message"]
    assert chart_repo.requests == []
    shown = (await strict_api.get(f"/v1/repos/{repo['repo_id']}")).json()
    assert shown["last_index_status"] == "failed", shown
    assert shown["last_index_error"].startswith(f"{ADDRESS_NOT_ALLOWED}: "), shown


async def test_validate_reports_the_refusal(
    strict_api: httpx.AsyncClient, chart_repo: RepoServer
) -> None:
    resp = await strict_api.post("/v1/repos/validate", json={"type": "http", "url": chart_repo.url})

    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["ok"] is False
    assert body["error"]["code"] == ADDRESS_NOT_ALLOWED
    assert "127.0.0.1 is not a public address (loopback)" in body["error"]["message"]
    assert chart_repo.requests == []


# -------------------------------------------------------------------------------- the setting


def test_production_processes_refuse_private_addresses_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.delenv(DEPRECATED_ALLOW_ENV, raising=False)
    assert Settings().network.allow_private_addresses is False


def test_serve_allows_private_addresses_unless_set_explicitly(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.delenv(DEPRECATED_ALLOW_ENV, raising=False)
    assert local_mode(Settings()).network.allow_private_addresses is True

    monkeypatch.setenv(ALLOW_ENV, "false")
    assert local_mode(Settings()).network.allow_private_addresses is False


def test_the_old_indexer_setting_still_sets_the_network_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ALLOW_ENV, raising=False)
    monkeypatch.setenv(DEPRECATED_ALLOW_ENV, "true")
    assert Settings().network.allow_private_addresses is True

    monkeypatch.setenv(DEPRECATED_ALLOW_ENV, "false")
    assert local_mode(Settings()).network.allow_private_addresses is False

    # The new name wins where both are given.
    monkeypatch.setenv(ALLOW_ENV, "true")
    assert Settings().network.allow_private_addresses is True
