"""The fake's HTTP face: routing, content negotiation, bearer auth and the request log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import yaml
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.types import Receive, Scope, Send

from tests.support.kube import discovery, listing, status
from tests.support.kube.api import APPLY, JSON_PATCH, MERGE, STRATEGIC, Api, WriteOptions
from tests.support.kube.openapi import openapi_v3
from tests.support.kube.resources import ResourceType
from tests.support.kube.scale import scale_of, write_scale
from tests.support.kube.selectors import Matcher, field_matcher, label_matcher
from tests.support.kube.status import ApiError, bad_request
from tests.support.kube.watch import watch_response

Obj = dict[str, Any]
PUBLIC = ("/version", "/healthz", "/livez", "/readyz")
WATCH_DEFAULT_SECONDS = 1800
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass
class RequestRecord:
    """One request as the fake saw it (for assertions such as "our field manager was used")."""

    method: str
    path: str
    query: dict[str, list[str]]
    content_type: str
    user_agent: str
    accept: str
    status: int = 0
    body: bytes = field(default=b"", repr=False)

    def param(self, name: str) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else None


def _truthy(value: str | None) -> bool:
    # Go's strconv.ParseBool, which the real server uses for query booleans.
    return (value or "").strip() in ("1", "t", "T", "true", "TRUE", "True")


def _json(body: Any, code: int = 200, warnings: list[str] | None = None) -> Response:
    response = JSONResponse(body, status_code=code)
    for warning in warnings or []:
        response.headers.append("Warning", f'299 - "{warning.replace(chr(34), chr(92) + chr(34))}"')
    return response


class KubeApp:
    def __init__(self, api: Api, *, token: str | None, address: Callable[[], str]) -> None:
        self.api = api
        self.token = token
        self.address = address
        self.requests: list[RequestRecord] = []
        # Set by FakeKube.hold_writes: writes wait for it before they are served.
        self.writes_open: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        record = RequestRecord(
            method=request.method,
            path=request.url.path,
            query=parse_qs(request.url.query, keep_blank_values=True),
            content_type=request.headers.get("content-type", ""),
            user_agent=request.headers.get("user-agent", ""),
            accept=request.headers.get("accept", ""),
        )
        self.requests.append(record)
        if self.writes_open is not None and request.method in WRITES:
            await self.writes_open.wait()
        try:
            response = await self._dispatch(request, record)
        except ApiError as exc:
            response = _json(exc.body(), exc.code)
        record.status = response.status_code
        await response(scope, receive, send)

    # --------------------------------------------------------------------------- routing

    async def _dispatch(self, request: Request, record: RequestRecord) -> Response:
        path = request.url.path
        if path == "/version/":  # the apiserver answers both; kubernetes-asyncio asks this one
            path = "/version"
        authorized = request.headers.get("authorization") == f"Bearer {self.token}"
        if path not in PUBLIC and self.token is not None and not authorized:
            raise ApiError(401, "Unauthorized")
        if path == "/version":
            return _json(discovery.VERSION)
        if path in PUBLIC:
            return PlainTextResponse("ok")
        if path.startswith("/openapi/"):
            found = openapi_v3(self.api.registry, path, request.url.query)
            if found is None:
                raise status.no_such_route()
            return _json(found)
        segs = [s for s in path.split("/") if s]
        accept = request.headers.get("accept", "")
        if segs in (["api"], ["apis"]):
            wanted = discovery.wants_aggregated(accept)
            if wanted:
                body = discovery.aggregated(
                    self.api.registry, legacy=segs == ["api"], version=wanted
                )
                response = _json(body)
                response.headers["content-type"] = discovery.AGGREGATED.format(v=wanted)
                return response
            if segs == ["api"]:
                return _json(discovery.api_versions(self.address()))
            return _json(discovery.api_group_list(self.api.registry))
        if len(segs) == 2 and segs[0] in ("api", "apis"):
            found = (
                discovery.resource_list(self.api.registry, "", segs[1])
                if segs[0] == "api"
                else discovery.api_group(self.api.registry, segs[1])
            )
            if found is None:
                raise status.no_such_route()
            return _json(found)
        if len(segs) == 3 and segs[0] == "apis":
            found = discovery.resource_list(self.api.registry, segs[1], segs[2])
            if found is None:
                raise status.no_such_route()
            return _json(found)
        return await self._resource(request, record, segs)

    def _route(self, segs: list[str]) -> tuple[ResourceType, str | None, str, str]:
        if not segs or segs[0] not in ("api", "apis") or len(segs) < 3:
            raise status.no_such_route()
        group, version, rest = (
            ("", segs[1], segs[2:]) if segs[0] == "api" else (segs[1], segs[2], segs[3:])
        )
        namespace = None
        if (
            rest
            and rest[0] == "namespaces"
            and len(rest) >= 3
            and not (len(rest) == 3 and rest[2] in ("status", "finalize"))
        ):
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise status.no_such_route()
        rt = self.api.registry.get(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else ""
        sub = rest[2] if len(rest) > 2 else ""
        if rt is None or (namespace is not None and not rt.namespaced):
            raise status.no_such_route()
        if rt.namespaced and name and namespace is None:
            raise status.no_such_route()
        if sub and not ((sub == "status" and rt.status) or (sub == "scale" and rt.scale)):
            raise status.no_such_route()
        return rt, namespace, name, sub

    async def _resource(self, request: Request, record: RequestRecord, segs: list[str]) -> Response:
        rt, namespace, name, sub = self._route(segs)
        method = request.method
        ns = namespace or ""
        if not name:
            if method == "GET":
                if _truthy(record.param("watch")):
                    return watch_response(
                        self.api,
                        rt,
                        namespace,
                        self._matchers(rt, record),
                        resource_version=record.param("resourceVersion") or "",
                        send_initial=_truthy(record.param("sendInitialEvents")),
                        timeout=float(record.param("timeoutSeconds") or WATCH_DEFAULT_SECONDS),
                    )
                return self._list(rt, namespace, record)
            if method == "POST":
                if rt.namespaced and namespace is None:
                    raise status.method_not_allowed(method)
                opts = self._write_options(request, record, "")
                obj = self.api.create(rt, ns, await self._body(request), opts)
                return _json(obj, 201, opts.warnings)
            if method == "DELETE" and "deletecollection" in rt.verbs:
                return await self._delete_collection(rt, namespace, request, record)
            raise status.method_not_allowed(method)
        if sub == "scale":
            return await self._scale(rt, ns, name, request, record)
        if method == "GET":
            obj = self.api.get(rt, ns, name)
            return self._object_response(rt, obj, record)
        if method == "PUT":
            opts = self._write_options(request, record, sub)
            obj = self.api.update(rt, ns, name, await self._body(request), opts)
            return _json(obj, 200, opts.warnings)
        if method == "PATCH":
            opts = self._write_options(request, record, sub)
            patch_type = record.content_type.split(";")[0].strip()
            if patch_type not in (MERGE, STRATEGIC, JSON_PATCH, APPLY):
                raise status.unsupported_media_type(
                    patch_type, [JSON_PATCH, MERGE, APPLY] + ([STRATEGIC] if rt.builtin else [])
                )
            force = record.param("force")
            existed = self.api.store.find(rt, ns, name) is not None
            obj = self.api.patch(
                rt,
                ns,
                name,
                patch_type,
                await request.body(),
                opts,
                None if force is None else _truthy(force),
            )
            return _json(obj, 200 if existed else 201, opts.warnings)
        if method == "DELETE" and not sub:
            options = await self._delete_options(request, record)
            body = self.api.delete(rt, ns, name, options, dry_run=self._dry_run(record))
            return _json(body)
        raise status.method_not_allowed(method)

    async def _scale(
        self, rt: ResourceType, ns: str, name: str, request: Request, record: RequestRecord
    ) -> Response:
        if request.method == "GET":
            return _json(scale_of(self.api.get(rt, ns, name)))
        opts = self._write_options(request, record, "scale")
        if request.method == "PUT":
            body = write_scale(self.api, rt, ns, name, None, await self._body(request), opts)
            return _json(body, 200, opts.warnings)
        if request.method == "PATCH":
            patch_type = record.content_type.split(";")[0].strip()
            if patch_type not in (MERGE, STRATEGIC, JSON_PATCH, APPLY):
                raise status.unsupported_media_type(
                    patch_type, [JSON_PATCH, MERGE, APPLY, STRATEGIC]
                )
            body = write_scale(self.api, rt, ns, name, patch_type, await request.body(), opts)
            return _json(body, 200, opts.warnings)
        raise status.method_not_allowed(request.method)

    # --------------------------------------------------------------------------- helpers

    async def _body(self, request: Request) -> Any:
        raw = await request.body()
        kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
        try:
            if kind in ("application/yaml", "application/x-yaml", "text/yaml"):
                return yaml.safe_load(raw.decode())
            if kind not in ("application/json", ""):
                raise status.unsupported_media_type(
                    kind,
                    ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"],
                )
            return json.loads(raw or b"null")
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"couldn't get version/kind; json parse error: {exc}") from None

    def _dry_run(self, record: RequestRecord) -> bool:
        value = record.param("dryRun")
        if value not in (None, "", "All"):
            raise bad_request(f'Invalid dry run value: "{value}"; must be "All"')
        return value == "All"

    def _write_options(self, request: Request, record: RequestRecord, sub: str) -> WriteOptions:
        manager = record.param("fieldManager")
        validation = record.param("fieldValidation") or "Warn"
        if validation not in ("Strict", "Warn", "Ignore"):
            raise bad_request(
                f"fieldValidation must be one of Strict, Warn, Ignore; got {validation!r}"
            )
        if manager is not None and len(manager) > 128:
            raise bad_request("fieldManager: Too long: may not be longer than 128 bytes")
        # Without fieldManager the server names the manager after the client's User-Agent.
        default = (record.user_agent.split("/")[0] or "unknown")[:128]
        return WriteOptions(
            manager=manager or default,
            manager_given=bool(manager),
            dry_run=self._dry_run(record),
            validation=validation,
            subresource=sub,
        )

    async def _delete_options(self, request: Request, record: RequestRecord) -> Obj:
        raw = await request.body()
        options: Obj = {}
        if raw.strip():
            try:
                options = json.loads(raw)
            except ValueError as exc:
                raise bad_request(f"couldn't decode DeleteOptions: {exc}") from None
        if record.param("propagationPolicy"):
            options["propagationPolicy"] = record.param("propagationPolicy")
        if _truthy(record.param("orphanDependents")) or options.get("orphanDependents") is True:
            options.setdefault("propagationPolicy", "Orphan")
        policy = options.get("propagationPolicy")
        if policy not in (None, "Orphan", "Background", "Foreground"):
            raise bad_request(f'propagationPolicy: Unsupported value: "{policy}"')
        return options

    def _matchers(self, rt: ResourceType, record: RequestRecord) -> list[Matcher]:
        return [
            label_matcher(record.param("labelSelector")),
            field_matcher(record.param("fieldSelector"), rt),
        ]

    def _list(self, rt: ResourceType, namespace: str | None, record: RequestRecord) -> Response:
        items = self.api.list_objects(rt, namespace, *self._matchers(rt, record))
        body = listing.list_body(
            rt,
            items,
            self.api.store.rv,
            limit=int(record.param("limit") or 0),
            token=record.param("continue"),
            accept=record.accept,
            include=record.param("includeObject") or "Metadata",
        )
        return _json(body)

    def _object_response(self, rt: ResourceType, obj: Obj, record: RequestRecord) -> Response:
        include = record.param("includeObject") or "Metadata"
        return _json(listing.object_body(rt, obj, accept=record.accept, include=include))

    async def _delete_collection(
        self, rt: ResourceType, namespace: str | None, request: Request, record: RequestRecord
    ) -> Response:
        options = await self._delete_options(request, record)
        dry_run = self._dry_run(record)
        deleted = []
        for obj in self.api.list_objects(rt, namespace, *self._matchers(rt, record)):
            meta = obj["metadata"]
            if self.api.store.find(rt, meta.get("namespace", ""), meta["name"]) is None:
                continue  # already collected as a dependent of an earlier item
            self.api.delete(rt, meta.get("namespace", ""), meta["name"], options, dry_run=dry_run)
            deleted.append(obj)
        return _json(
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self.api.store.rv)},
                "items": deleted,
            }
        )
