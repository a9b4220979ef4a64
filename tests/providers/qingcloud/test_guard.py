"""The QingCloud endpoint is user input: the client connects only where the policy allows."""

from __future__ import annotations

import ipaddress

import pytest

from openpitrix.netguard import ADDRESS_NOT_ALLOWED, AddressPolicy
from openpitrix.providers.base import EndpointRefused
from openpitrix.providers.qingcloud.client import QingCloudClient
from tests.providers.qingcloud.conftest import STRICT
from tests.support.qingcloud_fake import QingCloudFake


def client_at(fake: QingCloudFake, endpoint: str, policy: AddressPolicy) -> QingCloudClient:
    return QingCloudClient(
        access_key_id=fake.access_key_id,
        secret_access_key=fake.secret_access_key,
        zone="pek3a",
        endpoint=endpoint,
        policy=policy,
    )


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_a_loopback_endpoint_is_refused_before_any_request(
    qingcloud: QingCloudFake, host: str
) -> None:
    endpoint = qingcloud.url.replace("127.0.0.1", host)
    async with client_at(qingcloud, endpoint, STRICT) as client:
        with pytest.raises(EndpointRefused) as info:
            await client.describe_zones()

    assert (info.value.code, info.value.retryable) == (ADDRESS_NOT_ALLOWED, False)
    assert "loopback" in info.value.message
    assert qingcloud.hits == 0


async def test_an_allowed_network_lets_the_endpoint_through(qingcloud: QingCloudFake) -> None:
    policy = AddressPolicy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),))
    async with client_at(qingcloud, qingcloud.url, policy) as client:
        zones = await client.describe_zones()

    assert [z.zone_id for z in zones] == ["pek3a", "pek3b", "sh1a"]
    assert qingcloud.hits == 1


@pytest.mark.parametrize(
    "endpoint", ["ftp://api.qingcloud.com/iaas/", "api.qingcloud.com", "https://h/iaas/?x=1"]
)
def test_an_endpoint_that_is_not_an_http_url_is_refused(
    qingcloud: QingCloudFake, endpoint: str
) -> None:
    with pytest.raises(EndpointRefused) as info:
        client_at(qingcloud, endpoint, STRICT)

    assert info.value.code == "endpoint_invalid"


async def test_the_signed_path_follows_the_endpoint(qingcloud: QingCloudFake) -> None:
    # A path without its trailing slash is QingCloud's path all the same: the signature
    # covers the path the request goes to.
    async with client_at(qingcloud, qingcloud.url.rstrip("/"), AddressPolicy(True)) as client:
        assert client.endpoint == qingcloud.url
        assert len(await client.describe_zones()) == 3
