"""AWS's error answers and transport failures become the provider errors jobs act on.

The codes moto does not produce (limits, throttling, capacity) are mapped here from botocore
`ClientError`s shaped as botocore builds them from AWS's answers."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError

from openpitrix.providers.aws.errors import AwsCredentialInvalid, AwsError, error_for
from openpitrix.providers.base import EndpointRefused


def client_error(code: str, status: int, message: str = "refused") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "RunInstances",
    )


@pytest.mark.parametrize(
    ("aws_code", "status", "code", "retryable"),
    [
        ("InstanceLimitExceeded", 400, "insufficient_resources", False),
        ("VcpuLimitExceeded", 400, "insufficient_resources", False),
        ("InsufficientInstanceCapacity", 500, "insufficient_resources", False),
        ("VolumeLimitExceeded", 400, "insufficient_resources", False),
        ("RequestLimitExceeded", 503, "cloud_throttled", True),
        ("Throttling", 400, "cloud_throttled", True),
        ("ThrottlingException", 400, "cloud_throttled", True),
        ("InternalError", 500, "cloud_unavailable", True),
        ("Unavailable", 503, "cloud_unavailable", True),
        ("SomethingNew", 502, "cloud_unavailable", True),
        ("InvalidAMIID.NotFound", 400, "cloud_resource_not_found", False),
        ("InvalidInstanceID.NotFound", 400, "cloud_resource_not_found", False),
        ("InvalidAMIID.Malformed", 400, "cloud_invalid_parameter", False),
        ("InvalidParameterValue", 400, "cloud_invalid_parameter", False),
        ("IncorrectInstanceState", 400, "cloud_incorrect_state", False),
        ("UnauthorizedOperation", 403, "cloud_permission_denied", False),
        ("IdempotentParameterMismatch", 400, "cloud_idempotency_mismatch", False),
        ("RequestExpired", 400, "cloud_request_expired", False),
        ("SomethingNew", 400, "cloud_error", False),
    ],
)
def test_an_aws_refusal_maps_to_a_provider_error_naming_the_aws_code(
    aws_code: str, status: int, code: str, retryable: bool
) -> None:
    error = error_for("RunInstances", client_error(aws_code, status, "You have requested more"))

    assert isinstance(error, AwsError)
    assert (error.code, error.retryable, error.aws_code) == (code, retryable, aws_code)
    assert error.message == f"AWS RunInstances: You have requested more ({aws_code})"


@pytest.mark.parametrize(
    "aws_code",
    [
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "ExpiredToken",
    ],
)
def test_a_refused_key_is_an_invalid_credential(aws_code: str) -> None:
    error = error_for("GetCallerIdentity", client_error(aws_code, 403))

    assert isinstance(error, AwsCredentialInvalid)
    assert (error.code, error.retryable, error.aws_code) == ("credential_invalid", False, aws_code)


def test_an_answer_without_an_aws_error_means_the_endpoint_is_not_aws() -> None:
    error = error_for("DescribeRegions", client_error("404", 404, "Not Found"))

    assert isinstance(error, EndpointRefused)
    assert (error.code, error.retryable) == ("endpoint_not_aws", False)
    assert "HTTP 404" in error.message


def test_transport_failures_are_retried() -> None:
    unreachable = error_for(
        "DescribeInstances", EndpointConnectionError(endpoint_url="https://ec2.example.com")
    )
    slow = error_for("DescribeInstances", ReadTimeoutError(endpoint_url="https://ec2.example.com"))

    assert (unreachable.code, unreachable.retryable) == ("cloud_unreachable", True)
    assert (slow.code, slow.retryable) == ("cloud_unreachable", True)
    assert "ec2.example.com" in unreachable.message


def test_an_error_that_is_not_botocores_is_not_swallowed() -> None:
    with pytest.raises(KeyError):
        error_for("RunInstances", KeyError("bug"))
