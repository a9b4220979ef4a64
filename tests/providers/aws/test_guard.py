"""The endpoint URL is user input: every AWS call connects only where the policy allows."""

from __future__ import annotations

import ipaddress
import uuid

import pytest

from openpitrix.netguard import ADDRESS_NOT_ALLOWED, AddressPolicy
from openpitrix.providers.aws.client import AwsClient
from openpitrix.providers.aws.guard import GuardedAioHttpSession
from openpitrix.providers.base import EndpointRefused
from tests.providers.aws.test_client import spec_for
from tests.support.aws import OPEN, STRICT, MotoAws


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_loopback_endpoint_is_refused_and_nothing_is_made(
    moto: MotoAws, image_id: str, host: str
) -> None:
    endpoint = moto.url.replace("127.0.0.1", host)
    async with AwsClient(moto.key(), policy=STRICT, endpoint_url=endpoint) as client:
        with pytest.raises(EndpointRefused) as info:
            await client.run_instance(spec_for(image_id, "g1"))

    assert (info.value.code, info.value.retryable) == (ADDRESS_NOT_ALLOWED, False)
    assert "loopback" in info.value.message
    async with moto.client(policy=OPEN) as client:
        assert await client.find_instances({"openpitrix:node-id": "g1"}) == []


@pytest.mark.parametrize(
    ("service", "operation", "params"),
    [
        ("sts", "GetCallerIdentity", {}),
        ("ssm", "GetCommandInvocation", {"CommandId": str(uuid.uuid4()), "InstanceId": "i-0"}),
        ("service-quotas", "ListServices", {}),
        ("ec2", "DescribeRegions", {}),
    ],
)
async def test_every_service_goes_through_the_guard(
    moto: MotoAws, service: str, operation: str, params: dict[str, str]
) -> None:
    async with moto.client(policy=STRICT) as client:
        with pytest.raises(EndpointRefused) as info:
            await client.call(service, operation, **params)
        session = client._clients[service]._endpoint.http_session

    assert info.value.code == ADDRESS_NOT_ALLOWED
    assert isinstance(session, GuardedAioHttpSession)


async def test_an_allowed_network_lets_the_endpoint_through(moto: MotoAws) -> None:
    policy = AddressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    async with AwsClient(moto.key(), policy=policy, endpoint_url=moto.url) as client:
        identity = await client.get_caller_identity()

    assert identity.account


async def test_proxies_in_the_environment_are_not_used(
    moto: MotoAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Through a proxy the address reached could not be checked; a dead one shows it is unused.
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)

    async with moto.client() as client:
        assert (await client.get_caller_identity()).account


async def test_configured_endpoint_urls_do_not_redirect_calls(
    moto: MotoAws, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ENDPOINT_URL_STS", "http://127.0.0.1:9")

    async with moto.client() as client:
        assert (await client.get_caller_identity()).account
