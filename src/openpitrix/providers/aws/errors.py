"""AWS's errors (botocore's ClientError and transport errors) as the provider errors jobs know.

AWS answers a refusal with an error code (`InvalidAMIID.NotFound`, `AuthFailure`, ...) and an
HTTP status. Refusals of the request itself are never retried; throttling, server errors (5xx)
and transport failures are (`retryable`), and the job engine retries the task with its backoff.
The AWS code is always in the message, so a job's reason names what AWS said.
"""

from __future__ import annotations

from typing import Final

from botocore.exceptions import BotoCoreError, ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError

from openpitrix.netguard import ADDRESS_NOT_ALLOWED, refusal_in
from openpitrix.providers.base import CredentialInvalid, EndpointRefused, ProviderError

# What botocore raises for a call that did not get an AWS answer it could read.
CALL_ERRORS: Final = (ClientError, BotoCoreError, ResponseParserError)

# The key id or signature is not accepted (EC2 says AuthFailure, STS and the JSON services
# the others); an expired session token is a credential to renew too.
AUTH_CODES: Final = frozenset(
    {
        "AuthFailure",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
        "InvalidAccessKeyId",
        "ExpiredToken",
        "ExpiredTokenException",
    }
)
PERMISSION_CODES: Final = frozenset(
    {"UnauthorizedOperation", "AccessDenied", "AccessDeniedException", "OptInRequired"}
)
# The account or the zone cannot hold what was asked: a quota, or AWS's capacity of the type.
RESOURCE_CODES: Final = frozenset(
    {
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "VolumeLimitExceeded",
        "MaxIOPSLimitExceeded",
        "InsufficientFreeAddressesInSubnet",
    }
)
THROTTLE_CODES: Final = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "TooManyRequestsException",
        "RequestThrottled",
        "RequestThrottledException",
        "SlowDown",
    }
)
UNAVAILABLE_CODES: Final = frozenset(
    {"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"}
)


class AwsError(ProviderError):
    """An AWS refusal: the AWS error code and the operation it answered are kept for callers
    that branch on them (an instance already gone, a volume already that size)."""

    def __init__(
        self, code: str, message: str, *, aws_code: str, operation: str, retryable: bool = False
    ) -> None:
        super().__init__(code, message, retryable=retryable)
        self.aws_code = aws_code
        self.operation = operation


class AwsCredentialInvalid(CredentialInvalid):
    """AWS refused the access key or its signature."""

    def __init__(self, message: str, *, aws_code: str, operation: str) -> None:
        super().__init__(message)
        self.aws_code = aws_code
        self.operation = operation


def error_for(operation: str, exc: Exception) -> ProviderError:
    """The provider error for what botocore raised while calling `operation`."""
    if isinstance(exc, ClientError):
        return client_error_for(operation, exc)
    refused = refusal_in(exc)
    if refused is not None:
        return EndpointRefused(ADDRESS_NOT_ALLOWED, f"AWS {operation}: {refused}")
    if isinstance(exc, ResponseParserError):
        return EndpointRefused(
            "endpoint_not_aws", f"AWS {operation}: the endpoint's answer is not an AWS API's"
        )
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        # Unreachable, reset, timed out: the endpoint may answer on a later attempt.
        return ProviderError("cloud_unreachable", f"AWS {operation}: {exc}", retryable=True)
    if isinstance(exc, BotoCoreError):
        return ProviderError("cloud_error", f"AWS {operation}: {exc}")
    raise exc


def client_error_for(operation: str, exc: ClientError) -> ProviderError:
    """The provider error for an AWS error answer."""
    error = exc.response.get("Error", {})
    aws_code = str(error.get("Code", "") or "")
    message = str(error.get("Message", "") or "").strip() or "refused"
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    text = f"AWS {operation}: {message} ({aws_code or status})"
    if aws_code in AUTH_CODES:
        return AwsCredentialInvalid(text, aws_code=aws_code, operation=operation)

    def refusal(code: str, retryable: bool = False) -> AwsError:
        return AwsError(code, text, aws_code=aws_code, operation=operation, retryable=retryable)

    if aws_code.isdigit() or not aws_code:
        # botocore makes the HTTP status the code when the body is not an AWS error document:
        # whatever answered is not an AWS API (or is failing in a way AWS does not).
        if status >= 500:
            return refusal("cloud_unavailable", retryable=True)
        return EndpointRefused(
            "endpoint_not_aws",
            f"AWS {operation}: the endpoint answered HTTP {status} without an AWS error",
        )
    if aws_code in PERMISSION_CODES:
        return refusal("cloud_permission_denied")
    if aws_code in RESOURCE_CODES:
        return refusal("insufficient_resources")
    if aws_code in THROTTLE_CODES or status == 429:
        return refusal("cloud_throttled", retryable=True)
    if aws_code in UNAVAILABLE_CODES or status >= 500:
        return refusal("cloud_unavailable", retryable=True)
    if aws_code == "IdempotentParameterMismatch":
        # A client token reused with other parameters: a bug in what derived the token.
        return refusal("cloud_idempotency_mismatch")
    if aws_code == "RequestExpired":
        # The request's signing time is too far from AWS's clock, which retrying does not fix.
        return refusal("cloud_request_expired")
    if aws_code.endswith(("NotFound", ".NotFound", "NoSuchEntity")) or aws_code in (
        "NoSuchResourceException",
        "InvalidInstanceID",
        "InvalidAMIID.Unavailable",
    ):
        return refusal("cloud_resource_not_found")
    if aws_code.startswith(("Invalid", "Missing", "Unsupported")) or aws_code.endswith(
        ".Malformed"
    ):
        return refusal("cloud_invalid_parameter")
    if aws_code == "IncorrectInstanceState" or aws_code == "IncorrectState":
        return refusal("cloud_incorrect_state")
    return refusal("cloud_error")
