"""Render Helm charts offline with Helm's own engine (helm-python-sdk) into Kubernetes objects."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from helm_python import Chart

log = logging.getLogger(__name__)

CHART_TOO_LARGE: Final = "chart_too_large"
CHART_INVALID: Final = "chart_invalid"
VALUES_INVALID: Final = "values_invalid"
RELEASE_INVALID: Final = "release_invalid"
TEMPLATE_FAILED: Final = "template_failed"
MANIFEST_INVALID: Final = "manifest_invalid"

# Compressed size; Helm's loader separately bounds what the archive may expand to.
DEFAULT_MAX_CHART_BYTES: Final = 10 * 1024 * 1024

HOOK_ANNOTATION: Final = "helm.sh/hook"
_HOOK_EVENTS: Final = frozenset(
    {
        "pre-install",
        "post-install",
        "pre-delete",
        "post-delete",
        "pre-upgrade",
        "post-upgrade",
        "pre-rollback",
        "post-rollback",
        "test",
        "test-success",
    }
)
_NOTES_FILE: Final = "NOTES.txt"

# Helm's InstallOrder (helm v4 pkg/release/v1/util/kind_sorter.go) with one change: Helm lists
# CustomResourceDefinition after the PVCs, we put it first. Nothing a CRD depends on can be in the
# release, while custom resources further down need it established, so first is always safe.
_INSTALL_ORDER: Final = (
    "CustomResourceDefinition",
    "PriorityClass",
    "Namespace",
    "NetworkPolicy",
    "ResourceQuota",
    "LimitRange",
    "PodSecurityPolicy",
    "PodDisruptionBudget",
    "ServiceAccount",
    "Secret",
    "SecretList",
    "ConfigMap",
    "StorageClass",
    "PersistentVolume",
    "PersistentVolumeClaim",
    "ClusterRole",
    "ClusterRoleList",
    "ClusterRoleBinding",
    "ClusterRoleBindingList",
    "Role",
    "RoleList",
    "RoleBinding",
    "RoleBindingList",
    "Service",
    "DaemonSet",
    "Pod",
    "ReplicationController",
    "ReplicaSet",
    "Deployment",
    "HorizontalPodAutoscaler",
    "StatefulSet",
    "Job",
    "CronJob",
    "IngressClass",
    "Ingress",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
)
_KIND_RANK: Final = {kind: rank for rank, kind in enumerate(_INSTALL_ORDER)}

# Helm's SplitManifests separator, with Go's `\s` spelled out: Python's is Unicode-wide.
_DOCUMENT_SEPARATOR: Final = re.compile(r"(?:^|[\t\n\f\r ]*\n)---[\t\n\f\r ]*")


class RenderError(Exception):
    """A chart could not be rendered; `message` is Helm's own text whenever Helm produced one."""

    code: str
    message: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message

    def __repr__(self) -> str:
        return f"RenderError({self.code!r}, {self.message!r})"


@dataclass(frozen=True, slots=True)
class RenderedRelease:
    """A release rendered offline: the objects to apply, in install order, and their inputs.

    `crds` come from the charts' `crds/` directories: Helm creates them before anything else and
    never upgrades or deletes them, so they are kept apart from `manifests`. `hooks` keep their
    `helm.sh/hook*` annotations; `notes` is the parent chart's rendered NOTES.txt.
    """

    chart_name: str
    chart_version: str
    app_version: str
    values: dict[str, Any]
    crds: list[dict[str, Any]]
    manifests: list[dict[str, Any]]
    hooks: list[dict[str, Any]]
    notes: str


@dataclass(frozen=True, slots=True)
class _Release:
    name: str
    namespace: str
    revision: int
    is_upgrade: bool
    kube_version: str | None
    api_versions: tuple[str, ...]


def install_order(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """`objects` in creation order by kind; equal kinds keep their order, unknown kinds go last."""
    return sorted(objects, key=_install_rank)


def _install_rank(obj: Mapping[str, Any]) -> tuple[int, str]:
    kind = obj.get("kind")
    kind = kind if isinstance(kind, str) else ""
    rank = _KIND_RANK.get(kind)
    # As in Helm: unknown kinds (custom resources) after every known one, alphabetical by kind.
    return (len(_INSTALL_ORDER), kind) if rank is None else (rank, "")


async def render_chart(
    chart: bytes,
    *,
    release_name: str,
    namespace: str,
    values: Mapping[str, Any],
    revision: int = 1,
    is_upgrade: bool = False,
    kube_version: str | None = None,
    api_versions: Sequence[str] = (),
    max_chart_bytes: int = DEFAULT_MAX_CHART_BYTES,
) -> RenderedRelease:
    """Render a packaged chart (.tgz bytes) the way `helm install` would, without a cluster.

    `values` merge over the chart's defaults (nested tables merge, as with `helm -f`); subchart
    conditions, aliases and import-values apply. `kube_version` ("v1.30.2") and `api_versions`
    set `.Capabilities`; Helm's defaults are used otherwise. Raises `RenderError`.
    """
    if len(chart) > max_chart_bytes:
        raise RenderError(
            CHART_TOO_LARGE,
            f"chart archive is {len(chart)} bytes, over the {max_chart_bytes}-byte limit",
        )
    if not chart:
        raise RenderError(CHART_INVALID, "chart archive is empty")
    if not isinstance(values, Mapping):
        raise RenderError(VALUES_INVALID, f"values must be a mapping, not {type(values).__name__}")
    if not namespace:
        # The SDK would silently substitute "default".
        raise RenderError(RELEASE_INVALID, "namespace must not be empty")
    if revision < 1:
        raise RenderError(RELEASE_INVALID, f"revision must be at least 1, not {revision}")
    release = _Release(
        release_name, namespace, revision, is_upgrade, kube_version, tuple(api_versions)
    )
    # Helm's engine is Go code behind ctypes: the call blocks, but ctypes releases the GIL for
    # it, so a thread keeps the loop free. helm-c documents loading, rendering and value merging
    # as thread-safe and each render gets its own chart handle, so the shared default executor
    # is enough; no dedicated, serialized one. A cancelled caller does not stop the thread: the
    # render runs to completion and its handle is freed on the way out.
    return await asyncio.to_thread(_render, chart, values, release)


def _render(archive: bytes, values: Mapping[str, Any], release: _Release) -> RenderedRelease:
    # helm_python is imported where it is used, not with this module: loading the library starts
    # a Go runtime, which does not survive fork(), so only processes that really render load it.
    import helm_python as helm

    try:
        # A round trip through JSON is what the SDK does anyway; doing it first turns values it
        # cannot carry (sets, NaN, objects) into a clear error and normalizes keys to strings.
        plain_values: dict[str, Any] = json.loads(json.dumps(values, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise RenderError(VALUES_INVALID, f"values are not representable as JSON: {exc}") from None

    try:
        helm.validate_release_name(release.name)
        with helm.Chart.load_archive(archive) as chart:
            metadata = chart.metadata
            # Read before rendering: rendering prunes disabled subcharts from the loaded chart.
            _check_installable(metadata, chart.dependencies)
            files = _render_templates(chart, plain_values, release)
            # After rendering, so import-values from subcharts are included like in the render.
            merged = chart.merge_values(plain_values)
            crd_files = chart.crds
    except helm.HelmError as exc:
        raise RenderError(_code_for(exc), str(exc)) from None

    chart_name = str(metadata.get("name") or "")
    manifests: list[dict[str, Any]] = []
    hooks: list[dict[str, Any]] = []
    notes = ""
    # Sorted paths and file order within each, like Helm, so equal kinds apply in a stable order.
    for path in sorted(files):
        text = files[path]
        if path.endswith(_NOTES_FILE):
            # Only the parent chart's notes are shown; Helm drops subcharts' by default.
            if path == f"{chart_name}/templates/{_NOTES_FILE}":
                notes = text
            continue
        if path.rsplit("/", 1)[-1].startswith("_") or not text.strip():
            continue
        for obj in _parse_objects(path, text):
            hook = _hook_of(obj)
            if hook is None:
                manifests.append(obj)
            elif _is_known_hook(hook):
                hooks.append(obj)
            else:
                # Helm skips such a hook entirely: it is neither applied nor run.
                log.info("skipping hook with unknown event template=%s hook=%r", path, hook)

    crds = [obj for crd in crd_files for obj in _parse_objects(crd["filename"], crd["data"])]
    return RenderedRelease(
        chart_name=chart_name,
        chart_version=str(metadata.get("version") or ""),
        app_version=str(metadata.get("appVersion") or ""),
        values=merged,
        crds=crds,
        manifests=install_order(manifests),
        hooks=install_order(hooks),
        notes=notes,
    )


def _render_templates(chart: Chart, values: dict[str, Any], release: _Release) -> dict[str, str]:
    if release.kube_version is None and not release.api_versions:
        return chart.render(
            values,
            name=release.name,
            namespace=release.namespace,
            revision=release.revision,
            is_install=not release.is_upgrade,
            is_upgrade=release.is_upgrade,
        )
    # Chart.render does not forward capabilities, though the library's helm_render (helm-c
    # 0.2.2) takes `kube_version` and `api_versions`; its option decoder rejects unknown keys, so
    # a library without them fails loudly instead of rendering for the wrong cluster.
    from helm_python import _native

    options: dict[str, Any] = {
        "name": release.name,
        "namespace": release.namespace,
        "revision": release.revision,
        "is_install": not release.is_upgrade,
        "is_upgrade": release.is_upgrade,
    }
    if release.kube_version is not None:
        options["kube_version"] = release.kube_version
    if release.api_versions:
        options["api_versions"] = list(release.api_versions)
    rendered = _native.call_string(
        "helm_render", chart._raw(), json.dumps(values), json.dumps(options)
    )
    files: dict[str, str] = json.loads(rendered)
    return files


def _check_installable(metadata: Mapping[str, Any], loaded: list[dict[str, Any]]) -> None:
    # The checks `helm install` makes before rendering (action.CheckIfInstallable and
    # action.CheckDependencies), with Helm's wording; the engine alone skips both.
    chart_type = metadata.get("type") or "application"
    if chart_type != "application":
        raise RenderError(CHART_INVALID, f"{chart_type} charts are not installable")
    present = {dependency.get("name") for dependency in loaded}
    missing = [
        str(declared.get("name"))
        for declared in metadata.get("dependencies") or []
        if declared.get("name") not in present
    ]
    if missing:
        raise RenderError(
            CHART_INVALID,
            f"found in Chart.yaml, but missing in charts/ directory: {', '.join(missing)}",
        )


def _code_for(exc: Exception) -> str:
    import helm_python as helm

    if isinstance(exc, helm.HelmChartLoadError | helm.HelmChartInvalidError):
        return CHART_INVALID
    if isinstance(exc, helm.HelmValuesError):
        return VALUES_INVALID
    if isinstance(exc, helm.HelmInvalidArgError):
        # Release name, kube version: the rest of the arguments are checked before the SDK.
        return RELEASE_INVALID
    return TEMPLATE_FAILED


def _parse_objects(path: str, text: str) -> list[dict[str, Any]]:
    import helm_python as helm

    objects: list[dict[str, Any]] = []
    documents = (part.strip() for part in _DOCUMENT_SEPARATOR.split(text.strip()))
    for position, document in enumerate(filter(None, documents), start=1):
        # Parsed by Helm's values reader (sigs.k8s.io/yaml), the parser Helm and the API
        # machinery read manifests with: YAML 1.1, so `mode: 0644` is octal 420 and `yes` is
        # true. A YAML 1.2 parser such as yaml_rs would read 644 and silently change file modes.
        try:
            obj: dict[str, Any] = helm.values_from_yaml(document)
        except helm.HelmError as exc:
            raise RenderError(MANIFEST_INVALID, f"YAML parse error on {path}: {exc}") from None
        if not obj:
            continue  # only comments
        if not (_is_name(obj.get("apiVersion")) and _is_name(obj.get("kind"))):
            raise RenderError(
                MANIFEST_INVALID,
                f"{path}: document {position} is not a Kubernetes object: "
                "apiVersion and kind are required",
            )
        objects.append(obj)
    return objects


def _is_name(value: object) -> bool:
    return isinstance(value, str) and bool(value)


def _hook_of(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    annotations = metadata.get("annotations") if isinstance(metadata, dict) else None
    if not isinstance(annotations, dict) or HOOK_ANNOTATION not in annotations:
        return None
    return str(annotations[HOOK_ANNOTATION])


def _is_known_hook(hook: str) -> bool:
    return all(event.strip().lower() in _HOOK_EVENTS for event in hook.split(","))
