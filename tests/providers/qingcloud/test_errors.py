"""QingCloud's refusals reach callers as typed provider errors, retryable only where trying
again may help; the client itself never retries."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta

import pytest

from openpitrix.providers.base import CredentialInvalid, EndpointRefused, ProviderError
from openpitrix.providers.qingcloud.client import QingCloudClient
from openpitrix.providers.qingcloud.errors import JobFailed, JobTimeout, QingCloudError
from tests.providers.qingcloud.conftest import OPEN, client_for
from tests.support.qingcloud_fake import QingCloudFake

WAIT = {"timeout": 10.0, "interval": 0.01, "max_interval": 0.05}


async def run_one(client: QingCloudClient, image_id: str = "centos7x64d", count: int = 1) -> str:
    accepted = await client.run_instances(
        image_id=image_id,
        instance_type="c4m8",
        count=count,
        login_mode="passwd",
        login_passwd="Passw0rd-long",
    )
    return accepted.job_id


async def test_a_wrong_secret_is_credential_invalid_with_qingclouds_message(
    qingcloud: QingCloudFake,
) -> None:
    async with client_for(qingcloud, secret="not-the-secret") as client:
        with pytest.raises(CredentialInvalid) as info:
            await client.describe_zones()

    assert info.value.code == "credential_invalid"
    assert info.value.retryable is False
    assert "authentication failed" in info.value.message
    assert "ret_code 1200" in info.value.message
    assert "not-the-secret" not in info.value.message


async def test_an_unknown_access_key_is_credential_invalid(qingcloud: QingCloudFake) -> None:
    async with QingCloudClient(
        access_key_id="QYNOSUCHKEY",
        secret_access_key=qingcloud.secret_access_key,
        zone="pek3a",
        endpoint=qingcloud.url,
        policy=OPEN,
    ) as client:
        with pytest.raises(CredentialInvalid, match="QYNOSUCHKEY"):
            await client.describe_zones()


async def test_a_quota_error_surfaces_with_its_code(
    client: QingCloudClient, qingcloud: QingCloudFake
) -> None:
    with pytest.raises(QingCloudError) as info:
        await run_one(client, count=11)  # 11 x 4 vCPU > the quota of 40

    assert (info.value.code, info.value.ret_code, info.value.retryable) == (
        "insufficient_resources",
        2500,
        False,
    )
    assert "QuotaExceeded" in info.value.message and "[cpu]" in info.value.message
    assert qingcloud.instances() == []


async def test_a_missing_image_is_resource_not_found(client: QingCloudClient) -> None:
    with pytest.raises(QingCloudError) as info:
        await run_one(client, image_id="img-missing")

    assert (info.value.code, info.value.ret_code, info.value.action) == (
        "cloud_resource_not_found",
        2100,
        "RunInstances",
    )
    assert "img-missing" in info.value.message


@pytest.mark.parametrize(
    ("ret_code", "message", "code", "retryable"),
    [
        (5000, "InternalError, something broke", "cloud_unavailable", True),
        (5100, "ServerBusy, try later", "cloud_unavailable", True),
        (2500, "QuotaExceeded, api requests too frequent", "cloud_throttled", True),
        (2400, "LeaseFailed, balance insufficient", "insufficient_balance", False),
        (1400, "PermissionDenied, not yours", "cloud_permission_denied", False),
    ],
)
async def test_qingcloud_error_codes_map_to_codes_and_retryability(
    client: QingCloudClient,
    qingcloud: QingCloudFake,
    ret_code: int,
    message: str,
    code: str,
    retryable: bool,
) -> None:
    qingcloud.fail_next("DescribeZones", ret_code, message)

    with pytest.raises(ProviderError) as info:
        await client.describe_zones()

    assert (info.value.code, info.value.retryable) == (code, retryable)
    assert message in info.value.message
    # One refusal, one request: retrying is the job engine's decision, not the client's.
    assert qingcloud.actions() == ["DescribeZones"]
    assert len(await client.describe_zones()) == 3


@pytest.mark.parametrize("status", [500, 502, 503, 429])
async def test_http_errors_are_retryable_and_not_retried(
    client: QingCloudClient, qingcloud: QingCloudFake, status: int
) -> None:
    qingcloud.http_status_next(status)

    with pytest.raises(ProviderError) as info:
        await client.describe_zones()

    assert (info.value.code, info.value.retryable) == ("cloud_unavailable", True)
    assert f"HTTP {status}" in info.value.message
    assert qingcloud.hits == 1


async def test_an_endpoint_that_is_not_qingclouds_api_is_refused(
    qingcloud: QingCloudFake,
) -> None:
    async with QingCloudClient(
        access_key_id=qingcloud.access_key_id,
        secret_access_key=qingcloud.secret_access_key,
        zone="pek3a",
        endpoint=qingcloud.url.replace("/iaas/", "/elsewhere/"),
        policy=OPEN,
    ) as client:
        with pytest.raises(EndpointRefused) as info:
            await client.describe_zones()

    assert (info.value.code, info.value.retryable) == ("endpoint_not_qingcloud", False)


async def test_an_unreachable_endpoint_is_retryable() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    async with QingCloudClient(
        access_key_id="QYKEY",
        secret_access_key="secret",
        zone="pek3a",
        endpoint=f"http://127.0.0.1:{port}/iaas/",
        policy=OPEN,
    ) as client:
        with pytest.raises(ProviderError) as info:
            await client.describe_zones()

    assert (info.value.code, info.value.retryable) == ("cloud_unreachable", True)


async def test_a_clock_far_off_gets_message_expired(qingcloud: QingCloudFake) -> None:
    async with QingCloudClient(
        access_key_id=qingcloud.access_key_id,
        secret_access_key=qingcloud.secret_access_key,
        zone="pek3a",
        endpoint=qingcloud.url,
        policy=OPEN,
        clock=lambda: datetime.now(UTC) - timedelta(minutes=10),
    ) as client:
        with pytest.raises(QingCloudError) as info:
            await client.describe_zones()

    assert (info.value.code, info.value.ret_code) == ("cloud_request_expired", 1300)


async def test_a_failed_job_raises_job_failed(
    client: QingCloudClient, qingcloud: QingCloudFake
) -> None:
    qingcloud.fail_jobs("RunInstances")

    with pytest.raises(JobFailed) as info:
        await client.wait_job(await run_one(client), **WAIT)

    assert (info.value.code, info.value.status, info.value.retryable) == (
        "cloud_job_failed",
        "failed",
        False,
    )
    assert [i.status for i in qingcloud.instances()] == ["terminated"]


async def test_a_job_that_outlives_the_deadline_raises_retryable_timeout(
    qingcloud: QingCloudFake,
) -> None:
    qingcloud.pause_jobs()
    async with client_for(qingcloud) as client:
        job_id = await run_one(client)
        with pytest.raises(JobTimeout) as info:
            await client.wait_job(job_id, timeout=0.2, interval=0.05)

    assert (info.value.code, info.value.status, info.value.retryable) == (
        "cloud_job_timeout",
        "pending",
        True,
    )
    assert "still 'pending' after 0.2s" in info.value.message


async def test_the_fake_is_strict_about_actions_and_parameters(
    client: QingCloudClient,
) -> None:
    with pytest.raises(QingCloudError, match=r"action \[DescribeNothing\]") as unknown:
        await client.call("DescribeNothing")
    with pytest.raises(QingCloudError, match=r"parameter \[instancez.1\]") as typo:
        await client.call("DescribeInstances", {"instancez": ["i-1"]})
    with pytest.raises(QingCloudError, match=r"\[size\] should be an integer") as bad:
        await client.call("CreateVolumes", {"size": "big"})
    with pytest.raises(QingCloudError, match=r"\[image_id\] should not be empty") as missing:
        await client.call("RunInstances", {"login_mode": "passwd"})

    assert {e.value.ret_code for e in (unknown, typo, bad, missing)} == {1100}
    assert {e.value.code for e in (unknown, typo, bad, missing)} == {"cloud_invalid_parameter"}


async def test_acting_on_an_instance_in_the_wrong_state_is_permission_denied(
    client: QingCloudClient,
) -> None:
    job_id = await run_one(client)
    await client.wait_job(job_id, **WAIT)
    (instance_id,) = [i.instance_id for i in await client.describe_instances()]

    with pytest.raises(QingCloudError) as info:
        await client.start_instances([instance_id])  # it is running already

    assert (info.value.code, info.value.ret_code) == ("cloud_permission_denied", 1400)
    assert instance_id in info.value.message
