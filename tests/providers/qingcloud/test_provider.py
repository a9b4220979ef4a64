"""The qingcloud provider's credential and zone half, against the fake QingCloud API."""

from __future__ import annotations

import json

import pytest

from openpitrix.netguard import ADDRESS_NOT_ALLOWED
from openpitrix.providers.base import (
    Credential,
    CredentialInvalid,
    ProviderError,
    ZoneUnavailable,
)
from openpitrix.providers.qingcloud.client import DEFAULT_ENDPOINT
from openpitrix.providers.qingcloud.provider import QingCloudProvider
from openpitrix.providers.qingcloud.quota import Needs
from tests.providers.qingcloud.conftest import OPEN, STRICT
from tests.support.qingcloud_fake import QingCloudFake

provider = QingCloudProvider()


def credential_of(fake: QingCloudFake, **extra: object) -> Credential:
    content = json.dumps(
        {
            "access_key_id": fake.access_key_id,
            "secret_access_key": fake.secret_access_key,
            **extra,
        }
    )
    return provider.parse_credential(content, fake.url)


def test_a_yaml_credential_without_endpoint_uses_qingclouds_api() -> None:
    content = "access_key_id: QYKEY01\nsecret_access_key: s3cr3t\nzone: pek3a\n"

    credential = provider.parse_credential(content, "")

    assert (credential.provider, credential.endpoint_url) == ("qingcloud", DEFAULT_ENDPOINT)
    assert credential.content == content


@pytest.mark.parametrize(
    ("content", "complaint"),
    [
        ('{"access_key_id": "QYKEY01"}', "secret_access_key: Field required"),
        ('{"access_key_id": "QY KEY", "secret_access_key": "s3cr3t"}', "access_key_id: String"),
        ('{"access_key_id": "QYKEY01", "secret_access_key": "s3cr3t", "region": "x"}', "region"),
        ('{"access_key_id": "QYKEY01", "secret_access_key": ["s3cr3t"]}', "secret_access_key"),
        ("[QYKEY01, s3cr3t]", "must be a mapping"),
        ("access_key_id: QYKEY01\nsecret_access_key: [s3cr3t", "not valid JSON or YAML"),
    ],
)
def test_a_malformed_credential_is_refused_without_quoting_the_secret(
    content: str, complaint: str
) -> None:
    with pytest.raises(CredentialInvalid) as info:
        provider.parse_credential(content, "")

    assert complaint in info.value.message
    assert "s3cr3t" not in info.value.message


def test_an_endpoint_that_is_not_http_is_refused_at_parse() -> None:
    content = '{"access_key_id": "QYKEY01", "secret_access_key": "s"}'
    with pytest.raises(CredentialInvalid) as info:
        provider.parse_credential(content, "file:///etc/passwd")

    assert info.value.code == "endpoint_invalid"


async def test_validation_and_zones_against_the_api(qingcloud: QingCloudFake) -> None:
    credential = credential_of(qingcloud, zone="sh1a")

    await provider.validate_credential(credential, OPEN)

    assert await provider.describe_zones(credential, OPEN) == ["pek3a", "pek3b", "sh1a"]


async def test_validation_refuses_a_wrong_secret_and_a_zone_out_of_reach(
    qingcloud: QingCloudFake,
) -> None:
    wrong = provider.parse_credential(
        json.dumps({"access_key_id": qingcloud.access_key_id, "secret_access_key": "wrong"}),
        qingcloud.url,
    )
    with pytest.raises(CredentialInvalid, match="authentication failed"):
        await provider.validate_credential(wrong, OPEN)

    with pytest.raises(ZoneUnavailable) as info:
        await provider.validate_credential(credential_of(qingcloud, zone="ap2a"), OPEN)
    assert info.value.code == "zone_not_found"


async def test_a_loopback_endpoint_is_refused_unless_private_addresses_are_allowed(
    qingcloud: QingCloudFake,
) -> None:
    with pytest.raises(ProviderError) as info:
        await provider.validate_credential(credential_of(qingcloud), STRICT)

    assert (info.value.code, info.value.retryable) == (ADDRESS_NOT_ALLOWED, False)
    assert qingcloud.hits == 0


async def test_claiming_a_zone_checks_it_and_marks_nothing(qingcloud: QingCloudFake) -> None:
    credential = credential_of(qingcloud)

    for runtime_id in ("rt-1", "rt-1", "rt-2"):
        await provider.claim_zone(
            credential, "pek3b", runtime_id=runtime_id, create=False, policy=OPEN
        )
    await provider.release_zone(credential, "pek3b", runtime_id="rt-1", policy=OPEN)

    with pytest.raises(ZoneUnavailable, match="cannot be created"):
        await provider.claim_zone(credential, "mars1a", runtime_id="rt-3", create=True, policy=OPEN)
    # Zone checks read, never write: no call but DescribeZones reached the cloud.
    assert set(qingcloud.actions()) == {"DescribeZones"}


async def test_the_quota_check_names_every_resource_that_is_short(
    qingcloud: QingCloudFake,
) -> None:
    credential = credential_of(qingcloud)
    qingcloud.quota.update(cpu=8, volume_size=100)

    left = await provider.check_quota(
        credential, "pek3a", Needs(instance=2, cpu=8, memory=8192), OPEN
    )
    with pytest.raises(ProviderError) as info:
        await provider.check_quota(
            credential, "pek3a", Needs(instance=3, cpu=12, memory=6144, volume_size=300), OPEN
        )

    assert left == {"instance": 20, "cpu": 8, "memory": 81920}
    assert info.value.code == "insufficient_resources"
    assert info.value.message == (
        "QingCloud zone pek3a quota too small: 12 vCPUs needed, 8 left; "
        "300 GiB of volumes needed, 100 left"
    )


def test_the_provider_declares_the_vm_lifecycle_for_vm_packages() -> None:
    described = provider.describe()
    assert described["cluster_actions"] == [
        "create",
        "stop",
        "start",
        "resize",
        "add_nodes",
        "delete_nodes",
        "delete",
        "recover",
        "cease",
        "refresh",
    ]
    assert described["package_kinds"] == ["vm"]
    assert {k["name"]: k["produces"] for k in described["task_kinds"]}["survey"] == "state"
