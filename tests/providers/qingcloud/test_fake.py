"""The fake speaks QingCloud: the official SDK (QingCloud's own client) works against it,
and is refused by it when its secret is wrong."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

from qingcloud.iaas.connection import APIConnection

from tests.support.qingcloud_fake import QingCloudFake


def sdk(fake: QingCloudFake, secret: str | None = None) -> APIConnection:
    url = urlsplit(fake.url)
    return APIConnection(
        fake.access_key_id,
        fake.secret_access_key if secret is None else secret,
        "pek3a",
        host=url.hostname,
        port=url.port,
        protocol="http",
        retry_time=1,
    )


async def sdk_call(fake: QingCloudFake, method: str, **kwargs: Any) -> dict[str, Any]:
    # The SDK is blocking (http.client); the fake serves from its own thread.
    def call() -> dict[str, Any]:
        connection = sdk(fake, kwargs.pop("secret", None))
        result: dict[str, Any] = getattr(connection, method)(**kwargs)
        return result

    return await asyncio.to_thread(call)


async def test_the_official_sdk_runs_an_instance_on_the_fake(qingcloud: QingCloudFake) -> None:
    zones = await sdk_call(qingcloud, "describe_zones")
    ran = await sdk_call(
        qingcloud,
        "run_instances",
        image_id="centos7x64d",
        cpu=1,
        memory=1024,
        instance_name="sdk 实例 a+b",
        login_mode="passwd",
        login_passwd="Passw0rd-long",
    )

    assert [z["zone_id"] for z in zones["zone_set"]] == ["pek3a", "pek3b", "sh1a"]
    assert ran["ret_code"] == 0 and ran["job_id"].startswith("j-")
    (instance,) = qingcloud.instances()
    assert (instance.instance_id, instance.instance_name) == (ran["instances"][0], "sdk 实例 a+b")


async def test_the_fake_refuses_the_official_sdk_with_a_wrong_secret(
    qingcloud: QingCloudFake,
) -> None:
    answer = await sdk_call(qingcloud, "describe_zones", secret="wrong")

    assert answer["ret_code"] == 1200
    assert "authentication failed" in answer["message"]
