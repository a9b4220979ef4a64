"""Fixtures: one moto server for the session, reset before each test that uses it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

from openpitrix.providers.aws.client import AwsClient
from tests.support.aws import MotoAws, running_moto
from tests.support.aws_vm import ec2


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoAws]:
    with running_moto() as server:
        yield server


@pytest.fixture
def moto(moto_server: MotoAws) -> MotoAws:
    moto_server.reset()
    return moto_server


@pytest.fixture
async def aws(moto: MotoAws) -> AsyncIterator[AwsClient]:
    async with moto.client() as client:
        yield client


_IMAGES: dict[str, str] = {}


@pytest.fixture
async def image_id(moto: MotoAws) -> str:
    """An image moto knows: it loads the same public AMIs after every reset, so the (slow)
    lookup is done once."""
    if "x86_64" not in _IMAGES:
        # boto3 in a thread, with its own minute of patience: moto's first DescribeImages
        # loads every AMI it knows, which can take longer than our client's 10 s on a busy
        # machine.
        answer = await asyncio.to_thread(ec2(moto).describe_images, Owners=["amazon"])
        _IMAGES["x86_64"] = next(
            i["ImageId"] for i in answer["Images"] if i["Architecture"] == "x86_64"
        )
    return _IMAGES["x86_64"]
