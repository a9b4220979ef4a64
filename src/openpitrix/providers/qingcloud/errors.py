"""QingCloud's error model (`ret_code` != 0 with a `message`) as the provider errors jobs know.

QingCloud answers HTTP 200 with `{"ret_code": N, "message": "..."}` for every refusal; the codes
are documented at docs.qingcloud.com/api/common/error_code.html. Client errors (1xxx, 2xxx) are
never retried, server errors (5xxx) are, as are throttled calls, transport failures and HTTP
5xx/429 answers.
"""

from __future__ import annotations

from typing import Final

from openpitrix.providers.base import CredentialInvalid, ProviderError

# ret_code values from QingCloud's error code table.
INVALID_PARAMETER: Final = 1100
AUTHENTICATION_FAILED: Final = 1200
MESSAGE_EXPIRED: Final = 1300
PERMISSION_DENIED: Final = 1400
RESOURCE_NOT_FOUND: Final = 2100
INSUFFICIENT_BALANCE: Final = 2400
QUOTA_EXCEEDED: Final = 2500
INTERNAL_ERROR: Final = 5000
SERVER_BUSY: Final = 5100

# 2500 covers both an exceeded resource quota and too many API calls in a short time; the
# message tells them apart. These fragments mark the throttled case (assumed wording).
_THROTTLE_HINTS: Final = ("frequen", "too many request", "rate limit", "throttl", "频繁")


class QingCloudError(ProviderError):
    """A QingCloud API refusal: `ret_code` and the action it answered are kept for callers
    that branch on them (a resource already gone, say)."""

    def __init__(
        self, code: str, message: str, *, ret_code: int, action: str, retryable: bool = False
    ) -> None:
        super().__init__(code, message, retryable=retryable)
        self.ret_code = ret_code
        self.action = action


class QingCloudCredentialInvalid(CredentialInvalid):
    """QingCloud refused the access key (ret_code 1200): unknown key or wrong secret."""

    def __init__(self, message: str, *, action: str) -> None:
        super().__init__(message)
        self.ret_code = AUTHENTICATION_FAILED
        self.action = action


class JobFailed(ProviderError):
    """A QingCloud job ended `failed` (or `done with failure`)."""

    def __init__(self, job_id: str, job_action: str, status: str) -> None:
        super().__init__(
            "cloud_job_failed", f"QingCloud job {job_id} ({job_action}) ended {status!r}"
        )
        self.job_id = job_id
        self.job_action = job_action
        self.status = status


class JobTimeout(ProviderError):
    """A QingCloud job did not end before the deadline; it may still finish, so the task that
    waited may run again and find it done."""

    def __init__(self, job_id: str, job_action: str, status: str, seconds: float) -> None:
        super().__init__(
            "cloud_job_timeout",
            f"QingCloud job {job_id} ({job_action}) still {status!r} after {seconds:g}s",
            retryable=True,
        )
        self.job_id = job_id
        self.job_action = job_action
        self.status = status


def error_for(action: str, ret_code: int, message: str) -> ProviderError:
    """The provider error for a QingCloud refusal of `action`."""
    text = f"QingCloud {action}: {message} (ret_code {ret_code})"
    if ret_code == AUTHENTICATION_FAILED:
        return QingCloudCredentialInvalid(text, action=action)

    def refusal(code: str, retryable: bool = False) -> QingCloudError:
        return QingCloudError(code, text, ret_code=ret_code, action=action, retryable=retryable)

    if ret_code == INVALID_PARAMETER:
        return refusal("cloud_invalid_parameter")
    if ret_code == MESSAGE_EXPIRED:
        # The request's time_stamp is too old for the server: a clock that is off, which
        # trying again does not fix.
        return refusal("cloud_request_expired")
    if ret_code == PERMISSION_DENIED:
        return refusal("cloud_permission_denied")
    if ret_code == RESOURCE_NOT_FOUND:
        return refusal("cloud_resource_not_found")
    if ret_code == INSUFFICIENT_BALANCE:
        return refusal("insufficient_balance")
    if ret_code == QUOTA_EXCEEDED:
        if any(hint in message.lower() for hint in _THROTTLE_HINTS):
            return refusal("cloud_throttled", retryable=True)
        return refusal("insufficient_resources")
    if ret_code >= 5000:
        return refusal("cloud_unavailable", retryable=True)
    return refusal("cloud_error")
