"""Fixtures: the fake QingCloud API (a thread of its own) and a client signed for it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from openpitrix.netguard import AddressPolicy
from openpitrix.providers.qingcloud.client import QingCloudClient
from tests.support.qingcloud_fake import QingCloudFake, running_fake

# The fake listens on loopback, which the guard refuses unless private addresses are allowed.
OPEN = AddressPolicy(allow_private=True)
STRICT = AddressPolicy()


@pytest.fixture
def qingcloud() -> Iterator[QingCloudFake]:
    with running_fake(job_delay=0.02) as fake:
        yield fake


def client_for(
    fake: QingCloudFake, *, secret: str | None = None, policy: AddressPolicy = OPEN
) -> QingCloudClient:
    return QingCloudClient(
        access_key_id=fake.access_key_id,
        secret_access_key=fake.secret_access_key if secret is None else secret,
        zone="pek3a",
        endpoint=fake.url,
        policy=policy,
        timeout=10.0,
    )


@pytest.fixture
async def client(qingcloud: QingCloudFake) -> AsyncIterator[QingCloudClient]:
    async with client_for(qingcloud) as made:
        yield made
