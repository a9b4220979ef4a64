"""moto's AWS server in a thread of the test process, for the aws provider's tests.

The server speaks the real AWS wire protocols over HTTP on 127.0.0.1, so our client signs and
sends real requests through the address guard. One server serves the whole session; `reset`
clears its state between tests. moto is told to refuse unknown AMIs (`InvalidAMIID.NotFound`)
as AWS does; it accepts any access key.
"""

from __future__ import annotations

import os

# moto reads this when its settings module is first imported, so it is set before that.
os.environ["MOTO_ENABLE_AMI_VALIDATION"] = "true"

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
from moto import settings as moto_settings
from moto.server import ThreadedMotoServer

from openpitrix.netguard import AddressPolicy
from openpitrix.providers.aws.client import AwsClient
from openpitrix.providers.aws.credential import AwsKey
from openpitrix.providers.base import Credential

# The server listens on loopback, which the guard refuses unless private addresses are allowed.
OPEN = AddressPolicy(allow_private=True)
STRICT = AddressPolicy()

ACCESS_KEY_ID = "AKIAIOSFODNN7EXAMPLE"
SECRET_ACCESS_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@dataclass(frozen=True)
class MotoAws:
    """A running moto server."""

    url: str
    region: str = "us-east-1"

    def content(self, region: str | None = None) -> str:
        """A credential's content for the server (moto accepts any key)."""
        return json.dumps(
            {
                "access_key_id": ACCESS_KEY_ID,
                "secret_access_key": SECRET_ACCESS_KEY,
                "region": region or self.region,
            }
        )

    def key(self, region: str | None = None) -> AwsKey:
        return AwsKey.model_validate_json(self.content(region))

    def credential(self, region: str | None = None) -> Credential:
        return Credential(provider="aws", endpoint_url=self.url, content=self.content(region))

    def client(self, *, policy: AddressPolicy = OPEN, region: str | None = None) -> AwsClient:
        return AwsClient(self.key(region), policy=policy, endpoint_url=self.url, timeout=10.0)

    def reset(self) -> None:
        """Forget every resource (moto's own reset endpoint)."""
        httpx.post(f"{self.url}/moto-api/reset", timeout=10.0).raise_for_status()


@contextmanager
def running_moto() -> Iterator[MotoAws]:
    # In case moto's settings were imported before this module set the variable.
    moto_settings.ENABLE_AMI_VALIDATION = True
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield MotoAws(url=f"http://{host}:{port}")
    finally:
        server.stop()
