"""The kubernetes provider: a runtime is a namespace reached through a kubeconfig."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, ClassVar, TypeVar

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from openpitrix.providers.base import (
    Capabilities,
    Credential,
    CredentialInvalid,
    Provider,
    ProviderError,
    ZoneUnavailable,
)
from openpitrix.providers.kubernetes.kubeconfig import api_client, parse_kubeconfig

RUNTIME_LABEL = "openpitrix.io/runtime"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "openpitrix"
REQUEST_TIMEOUT_SECONDS = 15.0

T = TypeVar("T")


async def _call(call: Awaitable[T], what: str) -> T:
    """One API call with its failures mapped to provider errors: auth refusals are the
    credential's fault; throttling, 5xx and network trouble are worth retrying."""
    try:
        return await call
    except ApiException as exc:
        if exc.status == 401:
            raise CredentialInvalid(f"{what}: the cluster refused the credential (401)") from None
        if exc.status == 429 or exc.status >= 500:
            raise ProviderError(
                "provider_unavailable", f"{what}: HTTP {exc.status} {exc.reason}", retryable=True
            ) from None
        raise
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ProviderError(
            "provider_unavailable",
            f"{what}: cannot reach the API server ({type(exc).__name__}: {exc})",
            retryable=True,
        ) from None


class KubernetesProvider(Provider):
    name: ClassVar[str] = "kubernetes"
    capabilities: ClassVar[Capabilities] = Capabilities(
        zone_kind="namespace",
        credential_format="kubeconfig (YAML) with inline certificates or a token",
        cluster_actions=frozenset(
            {"create", "upgrade", "rollback", "update_env", "delete", "cease"}
        ),
    )

    def parse_credential(self, content: str, endpoint_url: str) -> Credential:
        _, server = parse_kubeconfig(content)
        if endpoint_url and endpoint_url.rstrip("/") != server.rstrip("/"):
            raise CredentialInvalid(
                f"endpoint_url {endpoint_url!r} differs from the kubeconfig's server {server!r}"
            )
        return Credential(provider=self.name, endpoint_url=server, content=content)

    async def validate_credential(self, credential: Credential) -> None:
        doc, _ = parse_kubeconfig(credential.content)
        async with api_client(doc) as api:
            await _call(
                client.VersionApi(api).get_code(_request_timeout=REQUEST_TIMEOUT_SECONDS),
                "GET /version",
            )
            try:
                await _call(
                    client.CoreV1Api(api).list_namespace(
                        limit=1, _request_timeout=REQUEST_TIMEOUT_SECONDS
                    ),
                    "list namespaces",
                )
            except ApiException as exc:
                # Authenticated but not allowed to list namespaces: a namespace-scoped
                # credential is still a credential.
                if exc.status != 403:
                    raise ProviderError(
                        "provider_error", f"list namespaces: HTTP {exc.status} {exc.reason}"
                    ) from None

    async def describe_zones(self, credential: Credential) -> list[str]:
        doc, _ = parse_kubeconfig(credential.content)
        async with api_client(doc) as api:
            try:
                found = await _call(
                    client.CoreV1Api(api).list_namespace(_request_timeout=REQUEST_TIMEOUT_SECONDS),
                    "list namespaces",
                )
            except ApiException as exc:
                if exc.status == 403:
                    return [ns] if (ns := _context_namespace(doc)) else []
                raise ProviderError(
                    "provider_error", f"list namespaces: HTTP {exc.status} {exc.reason}"
                ) from None
        return sorted(item.metadata.name for item in found.items)

    async def claim_zone(
        self, credential: Credential, zone: str, *, runtime_id: str, create: bool
    ) -> None:
        doc, _ = parse_kubeconfig(credential.content)
        async with api_client(doc) as api:
            core = client.CoreV1Api(api)
            try:
                ns = await _call(
                    core.read_namespace(zone, _request_timeout=REQUEST_TIMEOUT_SECONDS),
                    f"read namespace {zone}",
                )
            except ApiException as exc:
                if exc.status != 404:
                    raise _refused(exc, f"read namespace {zone}") from None
                if not create:
                    raise ZoneUnavailable(
                        "zone_not_found", f"namespace {zone!r} does not exist"
                    ) from None
                await self._create_namespace(core, zone, runtime_id)
                return
            labels: dict[str, str] = dict(ns.metadata.labels or {})
            owner = labels.get(RUNTIME_LABEL)
            if owner == runtime_id:
                return
            if owner:
                raise ZoneUnavailable(
                    "zone_taken", f"namespace {zone!r} already belongs to runtime {owner}"
                )
            labels[RUNTIME_LABEL] = runtime_id
            ns.metadata.labels = labels
            try:
                # A replace carries the resourceVersion read above: of two runtimes claiming
                # the namespace at once, the second gets a 409 instead of overwriting.
                await _call(
                    core.replace_namespace(zone, ns, _request_timeout=REQUEST_TIMEOUT_SECONDS),
                    f"label namespace {zone}",
                )
            except ApiException as exc:
                if exc.status == 409:
                    raise ZoneUnavailable(
                        "zone_taken", f"namespace {zone!r} was claimed concurrently"
                    ) from None
                raise _refused(exc, f"label namespace {zone}") from None

    async def _create_namespace(self, core: client.CoreV1Api, zone: str, runtime_id: str) -> None:
        body = client.V1Namespace(
            metadata=client.V1ObjectMeta(
                name=zone, labels={RUNTIME_LABEL: runtime_id, MANAGED_BY_LABEL: MANAGER}
            )
        )
        try:
            await _call(
                core.create_namespace(body, _request_timeout=REQUEST_TIMEOUT_SECONDS),
                f"create namespace {zone}",
            )
        except ApiException as exc:
            if exc.status == 409:
                raise ZoneUnavailable(
                    "zone_taken", f"namespace {zone!r} was created concurrently"
                ) from None
            raise _refused(exc, f"create namespace {zone}") from None

    async def release_zone(self, credential: Credential, zone: str, *, runtime_id: str) -> None:
        doc, _ = parse_kubeconfig(credential.content)
        async with api_client(doc) as api:
            core = client.CoreV1Api(api)
            try:
                ns = await _call(
                    core.read_namespace(zone, _request_timeout=REQUEST_TIMEOUT_SECONDS),
                    f"read namespace {zone}",
                )
            except ApiException as exc:
                if exc.status == 404:
                    return
                raise _refused(exc, f"read namespace {zone}") from None
            if (ns.metadata.labels or {}).get(RUNTIME_LABEL) != runtime_id:
                return
            patch: dict[str, Any] = {"metadata": {"labels": {RUNTIME_LABEL: None}}}
            await _call(
                core.patch_namespace(zone, patch, _request_timeout=REQUEST_TIMEOUT_SECONDS),
                f"unlabel namespace {zone}",
            )


def _context_namespace(doc: dict[str, Any]) -> str | None:
    current = doc.get("current-context")
    for item in doc.get("contexts") or []:
        if isinstance(item, dict) and item.get("name") == current:
            ns = (item.get("context") or {}).get("namespace")
            return ns if isinstance(ns, str) and ns else None
    return None


def _refused(exc: ApiException, what: str) -> ProviderError:
    if exc.status == 403:
        return ZoneUnavailable("zone_forbidden", f"{what}: the credential may not do this (403)")
    return ProviderError("provider_error", f"{what}: HTTP {exc.status} {exc.reason}")
