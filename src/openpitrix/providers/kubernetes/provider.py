"""The kubernetes provider: a runtime is a namespace reached through a kubeconfig."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import aiohttp

from openpitrix.jobs.plan import PlannedTask
from openpitrix.netguard import AddressPolicy
from openpitrix.providers.base import (
    Capabilities,
    Change,
    Credential,
    CredentialInvalid,
    EndpointRefused,
    PackageFetcher,
    PlanRequest,
    Preview,
    PreviewRequest,
    Produces,
    Provider,
    ProviderError,
    Release,
    TaskKind,
    TaskRun,
    ZoneUnavailable,
)
from openpitrix.providers.kubernetes import quota, readiness
from openpitrix.providers.kubernetes.render import RenderedRelease, RenderError, render_chart
from openpitrix.providers.lazy import import_off_loop

# kubernetes_asyncio and the modules built on it (deploy, preview, clients) are imported by
# the methods that call a cluster, not here: the client's ~850 model modules cost a process
# ~36 MB, and a gateway or worker that never touches a Kubernetes runtime (or has not yet)
# should not carry them. The first call pays the import (~0.5 s of CPU) once, in a thread
# (`_client_library`), so the event loop serves on meanwhile.
if TYPE_CHECKING:
    from kubernetes_asyncio import client
    from kubernetes_asyncio.client.exceptions import ApiException
    from kubernetes_asyncio.dynamic import DynamicClient

    from openpitrix.providers.kubernetes.clients import ClientPool

RUNTIME_LABEL = "openpitrix.io/runtime"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGER = "openpitrix"
REQUEST_TIMEOUT_SECONDS = 15.0
REDACTED = "<redacted>"  # what a secret's value reads as in manifests and previews
CLIENT_MODULES = (
    "kubernetes_asyncio.client",
    "kubernetes_asyncio.config",
    "kubernetes_asyncio.dynamic",
    "openpitrix.providers.kubernetes.deploy",
    "openpitrix.providers.kubernetes.clients",
    "openpitrix.providers.kubernetes.preview",
)


async def _client_library() -> None:
    """kubernetes_asyncio and our modules on it, imported off the event loop at first use:
    every method that calls a cluster awaits this before its own imports."""
    await import_off_loop(*CLIENT_MODULES)


T = TypeVar("T")


# Statuses callers decide about themselves (forbidden, missing, conflict); any other refusal
# becomes a provider error here.
HANDLED = frozenset({403, 404, 409})


async def _call(call: Awaitable[T], what: str) -> T:
    """One API call with its failures mapped to provider errors: auth refusals are the
    credential's fault; throttling, 5xx and network trouble are worth retrying."""
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        return await call
    except ApiException as exc:
        if exc.status == 401:
            raise CredentialInvalid(f"{what}: the cluster refused the credential (401)") from None
        if exc.status == 429 or exc.status >= 500:
            raise ProviderError(
                "provider_unavailable", f"{what}: HTTP {exc.status} {exc.reason}", retryable=True
            ) from None
        if exc.status in HANDLED:
            raise
        raise ProviderError("provider_error", f"{what}: HTTP {exc.status} {exc.reason}") from None
    except aiohttp.ClientConnectorCertificateError as exc:
        raise ProviderError(
            "provider_unavailable",
            f"{what}: the API server's TLS certificate was not accepted ({exc.certificate_error})",
        ) from None
    except (aiohttp.ClientError, TimeoutError) as exc:
        detail = str(exc)
        if not detail and isinstance(exc, TimeoutError):
            detail = "timed out"
        raise ProviderError(
            "provider_unavailable",
            f"{what}: cannot reach the API server ({type(exc).__name__}: {detail})",
            retryable=True,
        ) from None


NOT_KUBERNETES = "not_kubernetes"


async def _answered(call: Awaitable[T], what: str, server: str) -> T:
    """A call whose answer must come from a Kubernetes API server: one that is not (a web
    server answering 404 or HTML) gets a clear refusal instead of a failure to decode."""
    from kubernetes_asyncio.client.exceptions import ApiException

    try:
        return await _call(call, what)
    except ApiException as exc:
        if exc.status == 404:
            raise EndpointRefused(
                NOT_KUBERNETES,
                f"{server} is not a Kubernetes API server: {what} answered HTTP 404",
            ) from None
        raise
    except (ValueError, TypeError, KeyError, AttributeError):
        # The client decodes the body into its model; anything else fails in there.
        raise EndpointRefused(
            NOT_KUBERNETES,
            f"{server} is not a Kubernetes API server: {what} did not answer with a "
            "Kubernetes object",
        ) from None


class KubernetesProvider(Provider):
    name: ClassVar[str] = "kubernetes"
    capabilities: ClassVar[Capabilities] = Capabilities(
        zone_kind="namespace",
        credential_format="kubeconfig (YAML) with inline certificates or a token",
        cluster_actions=frozenset(
            {"create", "upgrade", "rollback", "update_env", "delete", "cease", "refresh"}
        ),
        task_kinds=(
            TaskKind(
                "render",
                "render the chart with the release's values (Helm's engine)",
                Produces.MANIFEST,
            ),
            TaskKind("check", "refuse a release the namespace's ResourceQuotas cannot hold"),
            TaskKind("apply", "server-side apply every object of the release"),
            TaskKind("wait", "wait until the release's workloads are ready"),
            TaskKind("prune", "delete what the previous release had and this one does not"),
            TaskKind("describe", "find the cluster's workloads and pods", Produces.STATE),
            TaskKind("delete", "delete every object labelled with the cluster"),
            TaskKind("wait_deleted", "wait until the cluster's objects are gone"),
            TaskKind("purge", "delete whatever of the cluster is left"),
        ),
    )

    def __init__(self) -> None:
        # Clients for job tasks, reused across tasks on one cluster (see clients.py). One-off
        # calls from the API (validate, zones) use a client of their own. Made at first use.
        self._pool: ClientPool | None = None

    @property
    def _clients(self) -> ClientPool:
        if self._pool is None:
            from openpitrix.providers.kubernetes.clients import ClientPool

            self._pool = ClientPool()
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()

    def redact_manifest(self, objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Secrets keep their keys, not their values."""
        for obj in objects:
            if obj.get("kind") == "Secret":
                for field in ("data", "stringData"):
                    if isinstance(obj.get(field), dict):
                        obj[field] = dict.fromkeys(obj[field], REDACTED)
        return objects

    def parse_credential(self, content: str, endpoint_url: str) -> Credential:
        from openpitrix.providers.kubernetes.kubeconfig import parse_kubeconfig

        _, server = parse_kubeconfig(content)
        if endpoint_url and endpoint_url.rstrip("/") != server.rstrip("/"):
            raise CredentialInvalid(
                f"endpoint_url {endpoint_url!r} differs from the kubeconfig's server {server!r}"
            )
        return Credential(provider=self.name, endpoint_url=server, content=content)

    async def validate_credential(self, credential: Credential, policy: AddressPolicy) -> None:
        await _client_library()
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        from openpitrix.providers.kubernetes.kubeconfig import api_client, parse_kubeconfig

        doc, server = parse_kubeconfig(credential.content)
        async with api_client(doc, policy) as api:
            try:
                await _answered(
                    client.VersionApi(api).get_code(_request_timeout=REQUEST_TIMEOUT_SECONDS),
                    "GET /version",
                    server,
                )
            except ApiException as exc:
                raise ProviderError(
                    "provider_error", f"GET /version: HTTP {exc.status} {exc.reason}"
                ) from None
            try:
                await _answered(
                    client.CoreV1Api(api).list_namespace(
                        limit=1, _request_timeout=REQUEST_TIMEOUT_SECONDS
                    ),
                    "list namespaces",
                    server,
                )
            except ApiException as exc:
                # Authenticated but not allowed to list namespaces: a namespace-scoped
                # credential is still a credential.
                if exc.status != 403:
                    raise ProviderError(
                        "provider_error", f"list namespaces: HTTP {exc.status} {exc.reason}"
                    ) from None

    async def describe_zones(self, credential: Credential, policy: AddressPolicy) -> list[str]:
        await _client_library()
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        from openpitrix.providers.kubernetes.kubeconfig import api_client, parse_kubeconfig

        doc, _ = parse_kubeconfig(credential.content)
        async with api_client(doc, policy) as api:
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
        self,
        credential: Credential,
        zone: str,
        *,
        runtime_id: str,
        create: bool,
        policy: AddressPolicy,
    ) -> None:
        await _client_library()
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        from openpitrix.providers.kubernetes.kubeconfig import api_client, parse_kubeconfig

        doc, _ = parse_kubeconfig(credential.content)
        async with api_client(doc, policy) as api:
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
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

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

    async def release_zone(
        self, credential: Credential, zone: str, *, runtime_id: str, policy: AddressPolicy
    ) -> None:
        await _client_library()
        from kubernetes_asyncio import client
        from kubernetes_asyncio.client.exceptions import ApiException

        from openpitrix.providers.kubernetes.kubeconfig import api_client, parse_kubeconfig

        doc, _ = parse_kubeconfig(credential.content)
        async with api_client(doc, policy) as api:
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

    def plan(self, request: PlanRequest) -> list[list[PlannedTask]]:
        layers = PLANS.get(request.action)
        if layers is None:
            raise ProviderError(
                "action_unsupported", f"kubernetes clusters do not support {request.action!r}"
            )
        return [[PlannedTask(action=name) for name in layer] for layer in layers]

    async def run_task(self, run: TaskRun) -> dict[str, Any]:
        await _client_library()
        from openpitrix.providers.kubernetes import deploy
        from openpitrix.providers.kubernetes.kubeconfig import parse_kubeconfig

        if run.action == "render":
            return await self._render(run)
        if run.action == "describe":
            return await self.describe_cluster(run.credential, run.zone, run.cluster_id, run.policy)
        if run.action == "check":
            return await self.check_resources(run)
        doc, _ = parse_kubeconfig(run.credential.content)
        async with self._clients.lease(doc, run.policy) as (_, dyn):
            if run.action == "apply":
                objects = _objects_of(run.release, "apply")
                await deploy.apply_objects(
                    dyn,
                    objects,
                    namespace=run.zone,
                    cluster_id=run.cluster_id,
                    revision=_revision(run.release),
                    report=run.report,
                )
                return {"applied": len(objects)}
            if run.action == "wait":
                # It only reads the workloads until they are ready: the runtime's slot may go
                # to another job's apply meanwhile.
                await run.watch_only()
                await deploy.wait_ready(
                    dyn,
                    _objects_of(run.release, "wait"),
                    namespace=run.zone,
                    timeout_seconds=max(run.timeout_seconds - WAIT_MARGIN_SECONDS, 1.0),
                    report=run.report,
                )
                return {}
            if run.action == "prune":
                keep = {deploy.object_key(o) for o in _objects_of(run.release, "prune")}
                old = run.previous.manifest if run.previous and run.previous.manifest else []
                gone = [o for o in old if deploy.object_key(o) not in keep]
                pruned = await deploy.delete_objects(dyn, gone, namespace=run.zone)
                await run.report(f"pruned {pruned} objects", None, {"pruned": pruned})
                return {"pruned": pruned}
            if run.action in ("delete", "purge"):
                found = await deploy.labelled_objects(
                    dyn,
                    [*known_kinds(run.history), *COMMON_KINDS],
                    namespace=run.zone,
                    cluster_id=run.cluster_id,
                )
                deleted = await deploy.delete_objects(dyn, found, namespace=run.zone)
                await run.report(f"deleted {deleted} objects", None, {"deleted": deleted})
                return {"deleted": deleted}
            if run.action == "wait_deleted":
                await run.watch_only()
                return await self._wait_deleted(dyn, run)
        raise ProviderError("action_unsupported", f"unknown kubernetes task {run.action!r}")

    async def check_resources(self, run: TaskRun) -> dict[str, Any]:
        await _client_library()
        """Refuse a release the namespace's ResourceQuotas cannot hold, before applying any
        of it (Kubernetes would otherwise accept the Deployment and leave its pods unmade)."""
        from openpitrix.providers.kubernetes import deploy
        from openpitrix.providers.kubernetes.kubeconfig import parse_kubeconfig

        wanted = _objects_of(run.release, "check")
        replaced = run.previous.manifest if run.previous and run.previous.manifest else []
        doc, _ = parse_kubeconfig(run.credential.content)
        async with self._clients.lease(doc, run.policy) as (_, dyn):
            quotas = await deploy.resource_quotas(dyn, namespace=run.zone)
        _check_quotas(quotas, wanted, replaced, run.zone)
        message = (
            f"fits the {len(quotas)} quotas of namespace {run.zone}"
            if quotas
            else (f"namespace {run.zone} has no quota")
        )
        await run.report(message, None, {"quotas": len(quotas)})
        return {"quotas": len(quotas)}

    async def _render(self, run: TaskRun) -> dict[str, Any]:
        if run.release is None:
            raise ProviderError("render_failed", "nothing to render: the job has no release")
        rendered = await _render_release(
            run.fetch_package,
            run.cluster_id,
            run.zone,
            run.release,
            is_upgrade=run.previous is not None,
        )
        objects = [*rendered.crds, *rendered.manifests]
        await run.report(
            f"rendered {rendered.chart_name} {rendered.chart_version}: {len(objects)} objects",
            None,
            {"objects": len(objects)},
        )
        return {
            "objects": objects,
            "chart_version": rendered.chart_version,
            "notes": rendered.notes,
        }

    async def preview(self, request: PreviewRequest) -> Preview:
        """Deploys: render as the render task would, check the quotas as the check task
        would, dry-run apply every object and list what the prune would delete. Delete and
        cease: every object of the cluster goes."""
        await _client_library()
        from openpitrix.providers.kubernetes import deploy
        from openpitrix.providers.kubernetes import preview as previews
        from openpitrix.providers.kubernetes.kubeconfig import parse_kubeconfig

        if request.action not in PLANS or request.action == "refresh":
            return await super().preview(request)  # a refresh changes nothing to preview
        doc, _ = parse_kubeconfig(request.credential.content)
        kinds = [*known_kinds(request.history), *COMMON_KINDS]
        if request.release is None:
            async with self._clients.lease(doc, request.policy) as (_, dyn):
                found = await deploy.labelled_objects(
                    dyn, kinds, namespace=request.zone, cluster_id=request.cluster_id
                )
            return Preview(
                action=request.action,
                changes=[Change(kind="delete", resource=previews.ref(o)) for o in found],
            )
        rendered = await _render_release(
            request.fetch_package,
            request.cluster_id,
            request.zone,
            request.release,
            is_upgrade=request.deployed is not None,
        )
        objects = [*rendered.crds, *rendered.manifests]
        replaced = (
            request.deployed.manifest if request.deployed and request.deployed.manifest else []
        )
        async with self._clients.lease(doc, request.policy) as (_, dyn):
            quotas = await deploy.resource_quotas(dyn, namespace=request.zone)
            _check_quotas(quotas, objects, replaced, request.zone)
            changes, notes = await previews.object_changes(
                dyn,
                objects,
                namespace=request.zone,
                cluster_id=request.cluster_id,
                revision=request.release.revision,
            )
            keep = {deploy.object_key(o) for o in objects}
            kinds += [(str(o.get("apiVersion")), str(o.get("kind"))) for o in objects]
            # A cluster still to be created has nothing to prune.
            found = (
                await deploy.labelled_objects(
                    dyn, kinds, namespace=request.zone, cluster_id=request.cluster_id
                )
                if request.action != "create"
                else []
            )
        changes += previews.deletions(found, keep)
        if request.deployed is not None:
            notes.append(
                f"every object's {deploy.REVISION_LABEL} label becomes "
                f"{request.release.revision}; not listed in the diffs"
            )
        return Preview(action=request.action, changes=changes, notes=notes)

    async def _wait_deleted(self, dyn: DynamicClient, run: TaskRun) -> dict[str, Any]:
        from openpitrix.providers.kubernetes import deploy

        deadline = asyncio.get_running_loop().time() + run.timeout_seconds - WAIT_MARGIN_SECONDS
        while True:
            left = await deploy.labelled_objects(
                dyn,
                [*known_kinds(run.history), *COMMON_KINDS],
                namespace=run.zone,
                cluster_id=run.cluster_id,
            )
            if not left:
                return {}
            await run.report(f"{len(left)} objects still terminating", None, {"left": len(left)})
            if asyncio.get_running_loop().time() >= deadline:
                names = ", ".join(sorted(readiness.ref(o) for o in left)[:10])
                raise ProviderError("delete_stuck", f"objects still present: {names}")
            await asyncio.sleep(deploy.POLL_SECONDS)

    async def describe_cluster(
        self, credential: Credential, zone: str, cluster_id: str, policy: AddressPolicy
    ) -> dict[str, Any]:
        await _client_library()
        from openpitrix.providers.kubernetes import deploy
        from openpitrix.providers.kubernetes.kubeconfig import parse_kubeconfig

        doc, _ = parse_kubeconfig(credential.content)
        async with self._clients.lease(doc, policy) as (_, dyn):
            found = await deploy.labelled_objects(
                dyn,
                [*COMMON_KINDS, ("v1", "Pod")],
                namespace=zone,
                cluster_id=cluster_id,
            )
        roles = []
        nodes = []
        for obj in found:
            if obj.get("kind") == "Pod":
                status = obj.get("status") or {}
                problem = readiness.pod_problem(obj)
                meta = obj["metadata"]
                nodes.append(
                    {
                        "node_id": meta["name"],
                        "role": _workload_of(meta),
                        "instance_id": meta.get("uid") or "",
                        "private_ip": status.get("podIP") or "",
                        "status": status.get("phase", "Unknown"),
                        "name": meta["name"],
                        "phase": status.get("phase", "Unknown"),
                        "node": (obj.get("spec") or {}).get("nodeName"),
                        "ip": status.get("podIP"),
                        "problem": problem[0] if problem else None,
                    }
                )
            elif obj.get("kind") in readiness.TRACKED:
                state = readiness.assess(obj)
                roles.append(
                    {
                        "role": f"{str(obj['kind']).lower()}/{obj['metadata']['name']}",
                        "status": "ready" if state.ready else "not ready",
                        "kind": obj["kind"],
                        "name": obj["metadata"]["name"],
                        "ready": state.ready,
                        "summary": state.summary,
                    }
                )
        return {"roles": roles, "nodes": nodes}


async def _render_release(
    fetch_package: PackageFetcher,
    cluster_id: str,
    zone: str,
    release: Release,
    *,
    is_upgrade: bool,
) -> RenderedRelease:
    chart = await fetch_package()
    try:
        return await render_chart(
            chart,
            release_name=cluster_id[:RELEASE_NAME_MAX],
            namespace=zone,
            values=release.values,
            revision=release.revision,
            is_upgrade=is_upgrade,
        )
    except RenderError as exc:
        raise ProviderError("render_failed", str(exc)) from None


def _check_quotas(
    quotas: list[dict[str, Any]],
    wanted: list[dict[str, Any]],
    replaced: list[dict[str, Any]],
    zone: str,
) -> None:
    try:
        problems = quota.shortfalls(quotas, wanted, replaced)
    except quota.QuantityError as exc:
        raise ProviderError("invalid_manifest", f"check: {exc}") from None
    if problems:
        raise ProviderError(
            "insufficient_resources",
            f"namespace {zone} has no room for this release: " + "; ".join(problems),
        )


def _workload_of(meta: dict[str, Any]) -> str:
    """The role (`<kind>/<name>`, as kubectl names objects) of the workload a pod belongs to:
    its controller, or for a Deployment's pod (owned by a ReplicaSet named
    `<deployment>-<hash>`) the Deployment."""
    for owner in meta.get("ownerReferences") or []:
        if isinstance(owner, dict) and owner.get("controller"):
            kind, name = str(owner.get("kind") or ""), str(owner.get("name") or "")
            if kind == "ReplicaSet" and "-" in name:
                return f"deployment/{name.rsplit('-', 1)[0]}"
            return f"{kind.lower()}/{name}"
    return ""


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


# --- cluster jobs ------------------------------------------------------------------------------

DEPLOY_PLAN = [["render"], ["check"], ["apply"], ["wait"], ["prune"], ["describe"]]
PLANS: dict[str, list[list[str]]] = {
    "create": DEPLOY_PLAN,
    "upgrade": DEPLOY_PLAN,
    "rollback": DEPLOY_PLAN,
    "update_env": DEPLOY_PLAN,
    "delete": [["delete"], ["wait_deleted"]],
    "cease": [["purge"]],
    "refresh": [["describe"]],
}
# Kinds looked for on delete besides those the releases named: what charts commonly make.
COMMON_KINDS = [
    ("apps/v1", "Deployment"),
    ("apps/v1", "StatefulSet"),
    ("apps/v1", "DaemonSet"),
    ("batch/v1", "Job"),
    ("v1", "Service"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "PersistentVolumeClaim"),
    ("v1", "ServiceAccount"),
]
RELEASE_NAME_MAX = 53  # Helm's limit: names derived from it must stay valid DNS labels
WAIT_MARGIN_SECONDS = 5.0


def _objects_of(release: Release | None, task: str) -> list[dict[str, Any]]:
    if release is None or release.manifest is None:
        raise ProviderError("task_out_of_order", f"{task}: the release has not been rendered")
    return release.manifest


def known_kinds(history: tuple[Release, ...]) -> list[tuple[str, str]]:
    """Every (apiVersion, kind) the cluster's rendered releases ever had: what a delete looks
    for, so an object of a kind a later release dropped is still found."""
    return sorted(
        {
            (str(obj.get("apiVersion")), str(obj.get("kind")))
            for release in history
            for obj in release.manifest or ()
        }
    )


def _revision(release: Release | None) -> int:
    return release.revision if release is not None else 0
