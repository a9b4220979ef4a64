"""The content of an aws runtime credential, parsed without ever quoting the secret.

A credential is a JSON or YAML mapping `{access_key_id, secret_access_key, session_token?,
region, image_id?, key_name?, instance_profile?}`; the runtime credential's endpoint URL, when
set, replaces AWS's own endpoints (an AWS-compatible cloud, or a test server) and goes through
the address guard like every connection.
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

import yaml_rs
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from openpitrix.providers.base import CredentialInvalid, EndpointRefused

MAX_CREDENTIAL_BYTES: Final = 16 * 1024
# AWS region names (us-east-1, ap-southeast-3, us-gov-west-1, cn-north-1, eu-isoe-west-1).
REGION_PATTERN: Final = r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$"


class AwsKey(BaseModel):
    """The content of an aws runtime credential."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    access_key_id: str = Field(min_length=16, max_length=128, pattern=r"^[A-Z0-9]+$")
    secret_access_key: str = Field(min_length=1, max_length=256, repr=False)
    session_token: str | None = Field(
        None, min_length=1, max_length=8192, repr=False, description="For temporary keys (STS)."
    )
    region: str = Field(min_length=1, max_length=32, pattern=REGION_PATTERN)
    image_id: str | None = Field(
        None,
        pattern=r"^ami-[0-9a-f]{8,17}$",
        description="The AMI nodes boot when their role names none.",
    )
    key_name: str | None = Field(
        None, min_length=1, max_length=255, description="The EC2 key pair nodes let log in."
    )
    instance_profile: str | None = Field(
        None,
        min_length=1,
        max_length=128,
        description="The IAM instance profile nodes run with (one allowing SSM, for commands).",
    )


def parse_aws_key(content: str) -> AwsKey:
    """The key the credential content holds; CredentialInvalid naming the fields at fault (never
    their values)."""
    if len(content.encode()) > MAX_CREDENTIAL_BYTES:
        raise CredentialInvalid(f"credential is larger than {MAX_CREDENTIAL_BYTES // 1024} KiB")
    try:
        doc = yaml_rs.loads(content)  # JSON is YAML too
    except Exception:  # yaml_rs raises its own error types
        # The parser's message quotes the text around the error, which may be the secret.
        raise CredentialInvalid("credential is not valid JSON or YAML") from None
    if not isinstance(doc, dict):
        raise CredentialInvalid(
            "credential must be a mapping "
            "{access_key_id, secret_access_key, session_token?, region, image_id?, key_name?, "
            "instance_profile?}"
        )
    try:
        return AwsKey.model_validate(doc)
    except ValidationError as exc:
        # Field names and pydantic's reasons only: its full text would quote the values (and a
        # pattern error its input), secret included.
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {_reason(err['type'], err['msg'])}"
            for err in exc.errors()
        )
        raise CredentialInvalid(f"credential: {problems}") from None


def _reason(kind: str, message: str) -> str:
    if kind == "string_pattern_mismatch":
        return "has characters or a form this field does not take"
    return message


def check_endpoint(endpoint: str) -> str:
    """The endpoint URL without a trailing `/`, or EndpointRefused("endpoint_invalid") if it
    is not an http(s) URL of a host (a path, query or fragment would change what is signed)."""
    try:
        parts = urlsplit(endpoint)
        parts.port  # noqa: B018  a port that is not a number raises here
    except ValueError:
        raise EndpointRefused("endpoint_invalid", f"not an http(s) URL: {endpoint!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise EndpointRefused("endpoint_invalid", f"not an http(s) URL: {endpoint!r}")
    if parts.username is not None or parts.password is not None:
        raise EndpointRefused("endpoint_invalid", "the endpoint URL takes no user or password")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise EndpointRefused(
            "endpoint_invalid", "the endpoint URL takes no path, query or fragment"
        )
    return f"{parts.scheme}://{parts.netloc}"
