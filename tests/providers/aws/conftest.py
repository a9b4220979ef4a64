"""Fixtures: one moto server for the session, reset before each test that uses it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from openpitrix.providers.aws.client import AwsClient
from tests.support.aws import MotoAws, running_moto


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
        async with moto.client() as client:
            images = await client.describe_images(owners=["amazon"])
        _IMAGES["x86_64"] = next(i.image_id for i in images if i.architecture == "x86_64")
    return _IMAGES["x86_64"]
