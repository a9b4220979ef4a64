"""The aws provider's credential check, zones and vCPU room, against moto's server."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from moto.servicequotas.models import ServiceQuotasBackend

from openpitrix.providers.aws.client import STANDARD_VCPU_QUOTA
from openpitrix.providers.aws.provider import AwsProvider
from openpitrix.providers.base import (
    ClusterState,
    Credential,
    EndpointRefused,
    PlanRequest,
    ProviderError,
    ZoneUnavailable,
)
from tests.providers.aws.test_client import spec_for
from tests.support.aws import OPEN, STRICT, MotoAws
from tests.support.threaded_server import SocketServerThread

provider = AwsProvider()


@contextmanager
def web_server(status: int, body: bytes) -> Iterator[str]:
    """A plain web server (not an AWS API) answering every request with `status` and `body`."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    with SocketServerThread(ThreadingHTTPServer(("127.0.0.1", 0), Handler)) as server:
        yield server.url


def at(moto: MotoAws, endpoint: str) -> Credential:
    return Credential(provider="aws", endpoint_url=endpoint, content=moto.content())


async def test_a_working_key_validates(moto: MotoAws) -> None:
    await provider.validate_credential(moto.credential(), OPEN)


@pytest.mark.parametrize(
    ("status", "body"),
    [(404, b"<html><body>Not Found</body></html>"), (200, b"<html><body>hello</body></html>")],
)
async def test_an_endpoint_that_is_not_aws_is_named_as_such(
    moto: MotoAws, status: int, body: bytes
) -> None:
    with web_server(status, body) as url, pytest.raises(EndpointRefused) as info:
        await provider.validate_credential(at(moto, url), OPEN)

    assert (info.value.code, info.value.retryable) == ("endpoint_not_aws", False)
    assert "GetCallerIdentity" in info.value.message


async def test_an_endpoint_nobody_answers_is_unreachable_and_retryable(moto: MotoAws) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again before the call: nothing listens there

    with pytest.raises(ProviderError) as info:
        await provider.validate_credential(at(moto, f"http://127.0.0.1:{port}"), OPEN)

    assert (info.value.code, info.value.retryable) == ("cloud_unreachable", True)


async def test_validation_refuses_a_private_endpoint_unless_allowed(moto: MotoAws) -> None:
    with pytest.raises(EndpointRefused) as info:
        await provider.validate_credential(moto.credential(), STRICT)

    assert info.value.code == "address_not_allowed"


async def test_zones_are_the_credential_regions(moto: MotoAws) -> None:
    zones = await provider.describe_zones(moto.credential(region="ap-southeast-2"), OPEN)

    assert zones == sorted(zones)
    assert {"ap-southeast-2a", "ap-southeast-2b", "ap-southeast-2c"} <= set(zones)


async def test_claiming_a_zone_checks_it_exists_and_is_idempotent(moto: MotoAws) -> None:
    credential = moto.credential()

    for _ in range(2):
        await provider.claim_zone(
            credential, "us-east-1b", runtime_id="rt-1", create=False, policy=OPEN
        )
    await provider.release_zone(credential, "us-east-1b", runtime_id="rt-1", policy=OPEN)
    await provider.release_zone(credential, "us-east-1b", runtime_id="rt-1", policy=OPEN)
    with pytest.raises(ZoneUnavailable) as info:
        await provider.claim_zone(
            credential, "us-east-1z", runtime_id="rt-1", create=True, policy=OPEN
        )

    assert info.value.code == "zone_not_found"
    assert "cannot be created" in info.value.message and "us-east-1a" in info.value.message


async def test_without_service_quotas_the_instance_limit_is_checked(
    moto: MotoAws, image_id: str
) -> None:
    # moto has no EC2 quotas in Service Quotas (NoSuchResourceException): the fallback is EC2's
    # max-instances attribute, 20 there.
    async with moto.client() as client:
        for node in ("q1", "q2"):
            await client.run_instance(spec_for(image_id, node))
        stopped = await client.run_instance(spec_for(image_id, "q3"))
        await client.stop_instances([stopped.instance_id])

    room = await provider.vcpu_room(moto.credential(), OPEN, vcpus=36, instances=18)

    assert room.as_dict() == {
        "limit": 20,
        "used": 2,
        "left": 18,
        "unit": "instances",
        "source": "account-attributes",
    }
    with pytest.raises(ProviderError) as info:
        await provider.vcpu_room(moto.credential(), OPEN, vcpus=38, instances=19)
    assert info.value.code == "insufficient_resources"
    assert "19 instances" in info.value.message and "18 left" in info.value.message


@pytest.fixture
def ec2_vcpu_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    """Teach moto's Service Quotas the EC2 vCPU quota (32), which it does not know."""
    original = ServiceQuotasBackend.get_service_quota

    def get_service_quota(self: Any, service_code: str, quota_code: str) -> dict[str, Any]:
        if (service_code, quota_code) == ("ec2", STANDARD_VCPU_QUOTA):
            return {"ServiceCode": "ec2", "QuotaCode": quota_code, "Value": 32.0}
        return original(self, service_code, quota_code)

    monkeypatch.setattr(ServiceQuotasBackend, "get_service_quota", get_service_quota)


@pytest.mark.usefixtures("ec2_vcpu_quota")
async def test_the_vcpu_quota_counts_running_standard_instances(
    moto: MotoAws, image_id: str
) -> None:
    async with moto.client() as client:
        await client.run_instance(spec_for(image_id, "a", instance_type="m5.2xlarge"))  # 8
        await client.run_instance(spec_for(image_id, "b", instance_type="c5.xlarge"))  # 4
        await client.run_instance(spec_for(image_id, "c", instance_type="g4dn.xlarge"))  # not

        room = await provider.vcpu_room(moto.credential(), OPEN, vcpus=20)
        with pytest.raises(ProviderError) as info:
            await provider.vcpu_room(moto.credential(), OPEN, vcpus=21)

    assert (room.used, room.left, room.limit.unit, room.limit.source) == (
        12,
        20,
        "vCPUs",
        "service-quotas",
    )
    assert info.value.code == "insufficient_resources"
    assert "21 vCPUs" in info.value.message and "20 left of the limit of 32" in info.value.message


def test_the_lifecycle_is_the_vm_providers() -> None:
    def plan(action: str) -> list[list[str]]:
        request = PlanRequest(
            action=action, params={}, cluster_id="cl-1", zone="us-east-1a", state=ClusterState()
        )
        return [[t.action for t in layer] for layer in provider.plan(request)]

    assert plan("create") == [
        ["render_spec"],
        ["check"],
        ["launch"],
        ["await_running"],
        ["attach_volumes"],
        ["survey"],
    ]
    # A running instance cannot take a new package without an agent.
    with pytest.raises(ProviderError) as info:
        plan("upgrade")
    assert info.value.code == "action_unsupported"
    described = provider.describe()
    assert described["package_kinds"] == ["vm"]
    assert described["exclusive_zones"] is False
