"""The fake QingCloud's wire rules: parameters, signatures, time stamps and error shapes."""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from qingcloud.conn.auth import QuerySignatureAuthHandler

from tests.support.threaded_server import send_response

PATH = "/iaas/"
TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
COMMON = {"action", "zone", "access_key_id", "time_stamp", "version"}
COMMON |= {"signature_method", "signature_version", "signature", "expires", "req_id"}


class ApiError(Exception):
    """A QingCloud-shaped refusal: `{"ret_code": ..., "message": ...}`."""

    def __init__(self, ret_code: int, message: str) -> None:
        super().__init__(message)
        self.ret_code = ret_code
        self.message = message


def invalid(message: str) -> ApiError:
    return ApiError(1100, f"InvalidParameterValue, {message}")


def not_found(kind: str, ident: str) -> ApiError:
    return ApiError(2100, f"ResourceNotFound, {kind} [{ident}] not found")


def denied(message: str) -> ApiError:
    return ApiError(1400, f"PermissionDenied, {message}")


@dataclass(frozen=True)
class Spec:
    """An action's parameters: `lists` arrive as name.1, name.2 ...; `ints` must be integers."""

    required: frozenset[str] = frozenset()
    optional: frozenset[str] = frozenset()
    ints: frozenset[str] = frozenset()
    lists: frozenset[str] = frozenset()
    zone: bool = True  # the action needs `zone`


def spec(
    required: str = "", optional: str = "", ints: str = "", lists: str = "", zone: bool = True
) -> Spec:
    return Spec(
        frozenset(required.split()),
        frozenset(optional.split()),
        frozenset(ints.split()),
        frozenset(lists.split()),
        zone,
    )


PAGED = "offset limit verbose"
SPECS: dict[str, Spec] = {
    "DescribeZones": spec(optional="zones status", lists="zones status", zone=False),
    "GetQuotaLeft": spec(optional="resource_types", lists="resource_types"),
    "RunInstances": spec(
        required="image_id login_mode",
        optional="instance_type cpu memory count instance_name hostname vxnets security_group "
        "login_keypair login_passwd volumes os_disk_size need_userdata userdata_type "
        "userdata_value userdata_path need_newsid nic_mqueue instance_class",
        ints="cpu memory count os_disk_size need_userdata need_newsid nic_mqueue instance_class",
        lists="vxnets volumes",
    ),
    "DescribeInstances": spec(
        optional=f"instances status search_word tags {PAGED}",
        ints=PAGED,
        lists="instances status tags",
    ),
    "StopInstances": spec(required="instances", optional="force", ints="force", lists="instances"),
    "StartInstances": spec(required="instances", lists="instances"),
    "RestartInstances": spec(required="instances", lists="instances"),
    "ResizeInstances": spec(
        required="instances",
        optional="instance_type cpu memory",
        ints="cpu memory",
        lists="instances",
    ),
    "TerminateInstances": spec(required="instances", lists="instances"),
    "CreateVolumes": spec(
        required="size", optional="volume_name volume_type count", ints="size volume_type count"
    ),
    "DescribeVolumes": spec(
        optional=f"volumes instance_id status search_word {PAGED}",
        ints=PAGED,
        lists="volumes status",
    ),
    "AttachVolumes": spec(required="volumes instance", lists="volumes"),
    "DetachVolumes": spec(required="volumes instance", lists="volumes"),
    "ResizeVolumes": spec(required="volumes size", ints="size", lists="volumes"),
    "DeleteVolumes": spec(required="volumes", lists="volumes"),
    "DescribeJobs": spec(
        optional=f"jobs status job_action {PAGED}", ints=PAGED, lists="jobs status"
    ),
}


def parse_query(raw: str) -> dict[str, str]:
    """A request's parameters (a query, or a form body), each name once."""
    params: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="strict"):
        if name in params:
            raise invalid(f"parameter [{name}] given twice")
        params[name] = value
    for name in ("action", "access_key_id", "time_stamp", "signature", "signature_method"):
        if not params.get(name):
            raise invalid(f"parameter [{name}] should not be empty")
    if params.get("signature_version") != "1" or params.get("version") != "1":
        raise invalid("signature_version and version must be 1")
    if params["signature_method"] != "HmacSHA256":
        raise invalid(f"signature_method [{params['signature_method']}] is not supported")
    return params


def verify_signature(method: str, params: dict[str, str], secret: str | None) -> None:
    """Check the signature with the official SDK's signer: QingCloud's algorithm, not ours."""
    if secret is None:
        raise ApiError(
            1200,
            f"AuthFailure, authentication failed: access key [{params['access_key_id']}] not found",
        )
    unsigned = {k: v for k, v in params.items() if k != "signature"}
    handler = QuerySignatureAuthHandler(PATH, params["access_key_id"], secret)
    _query, expected = handler._calc_signature(unsigned, method, PATH)
    if not hmac.compare_digest(expected.decode(), params["signature"]):
        raise ApiError(1200, "AuthFailure, authentication failed: signature not matched")


def check_time(params: dict[str, str], max_skew: float) -> None:
    try:
        stamp = datetime.strptime(params["time_stamp"], TIME_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        raise invalid(f"time_stamp [{params['time_stamp']}] is not ISO 8601") from None
    if abs((datetime.now(UTC) - stamp).total_seconds()) > max_skew:
        raise ApiError(1300, f"MessageExpired, time_stamp [{params['time_stamp']}] expired")


def arguments(action: str, params: dict[str, str], zones: tuple[str, ...]) -> dict[str, Any]:
    """The action's arguments, typed (lists gathered, integers parsed), all checked."""
    spec_ = SPECS.get(action)
    if spec_ is None:
        raise invalid(f"action [{action}] is not supported")
    args: dict[str, Any] = {}
    indexed: dict[str, dict[int, str]] = {}
    for name, value in params.items():
        if name in COMMON:
            continue
        match = re.fullmatch(r"(.+)\.(\d+)", name)
        if match and match.group(1) in spec_.lists:
            indexed.setdefault(match.group(1), {})[int(match.group(2))] = value
            continue
        if name not in spec_.required | spec_.optional or name in spec_.lists:
            raise invalid(f"parameter [{name}] is not valid for this action")
        if name in spec_.ints:
            if not re.fullmatch(r"-?\d+", value):
                raise invalid(f"parameter [{name}] should be an integer")
            args[name] = int(value)
        else:
            args[name] = value
    for name, items in indexed.items():
        if sorted(items) != list(range(1, len(items) + 1)):
            raise invalid(f"list parameter [{name}] should be numbered from 1")
        args[name] = [items[i] for i in sorted(items)]
    for name in spec_.required:
        if name not in args or args[name] in ("", []):
            raise invalid(f"parameter [{name}] should not be empty")
    if spec_.zone:
        zone = params.get("zone", "")
        if not zone:
            raise invalid("parameter [zone] should not be empty")
        if zone not in zones:
            raise invalid(f"zone [{zone}] is not available")
        args["zone"] = zone
    return args


def snake(action: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", action).lower()


async def respond(
    send: Callable[[dict[str, Any]], Any], status: int, body: bytes, content_type: str
) -> None:
    await send_response(send, status, body, [("content-type", content_type)])
