"""API errors rendered as the real server's `kind: Status` bodies (reason, details, code)."""

from __future__ import annotations

from typing import Any

from tests.support.kube.resources import ResourceType

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    500: "InternalError",
}


class ApiError(Exception):
    """Raised anywhere in the fake; the app turns it into the Status response."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason or _REASONS.get(code, "Unknown")
        self.details = details

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(rt: ResourceType, name: str, *, kind: str | None = None) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = kind or rt.plural
    return details


def not_found(rt: ResourceType, name: str) -> ApiError:
    return ApiError(404, f'{rt.qualified} "{name}" not found', details=_details(rt, name))


def namespace_not_found(namespace: str) -> ApiError:
    return ApiError(
        404,
        f'namespaces "{namespace}" not found',
        details={"name": namespace, "kind": "namespaces"},
    )


def no_such_route() -> ApiError:
    # What the real mux answers for a path no handler serves.
    return ApiError(404, "the server could not find the requested resource", details={})


def already_exists(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        f'{rt.qualified} "{name}" already exists',
        reason="AlreadyExists",
        details=_details(rt, name),
    )


def stale(rt: ResourceType, name: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": the object has been '
        "modified; please apply your changes to the latest version and try again",
        details=_details(rt, name),
    )


def precondition_failed(rt: ResourceType, name: str, what: str) -> ApiError:
    return ApiError(
        409,
        f'Operation cannot be fulfilled on {rt.qualified} "{name}": {what}',
        details=_details(rt, name),
    )


def invalid(rt: ResourceType, name: str, causes: list[tuple[str, str, str]]) -> ApiError:
    """causes: (field, reason, message), e.g. ("spec.selector", "FieldValueRequired",
    "Required value")."""
    text = ", ".join(f"{f}: {m}" if f else m for f, _, m in causes)
    shown = f"[{text}]" if len(causes) > 1 else text
    details = _details(rt, name, kind=rt.kind)
    details["causes"] = [{"reason": r, "message": m, "field": f} for f, r, m in causes]
    return ApiError(422, f'{rt.qualified_kind} "{name}" is invalid: {shown}', details=details)


def field_invalid(
    rt: ResourceType, name: str, field: str, message: str, reason: str = "FieldValueInvalid"
) -> ApiError:
    return invalid(rt, name, [(field, reason, message)])


def bad_request(message: str) -> ApiError:
    return ApiError(400, message)


def forbidden(rt: ResourceType, name: str, message: str) -> ApiError:
    return ApiError(
        403,
        f'{rt.qualified} "{name}" is forbidden: {message}',
        details=_details(rt, name),
    )


def method_not_allowed(method: str) -> ApiError:
    return ApiError(
        405, f"the server does not allow this method on the requested resource ({method})"
    )


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415,
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}",
        details={"causes": [{"message": f"{content_type} is not supported"}]}
        if content_type
        else None,
    )


def expired(requested: str, oldest: int) -> ApiError:
    return ApiError(410, f"too old resource version: {requested} ({oldest})", reason="Expired")


def success(rt: ResourceType, name: str, uid: str) -> dict[str, Any]:
    """What DELETE answers when the object is gone at once (not for Pods and Namespaces,
    whose delete returns the object)."""
    details = _details(rt, name)
    details["uid"] = uid
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    }
