"""Rendering real chart archives with Helm's engine: values, subcharts, errors, hooks, ordering."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

import helm_python
import pytest

from openpitrix.providers.kubernetes.render import (
    CHART_INVALID,
    CHART_TOO_LARGE,
    MANIFEST_INVALID,
    RELEASE_INVALID,
    TEMPLATE_FAILED,
    VALUES_INVALID,
    RenderedRelease,
    RenderError,
    install_order,
    render_chart,
)
from tests.support.chart_builder import chart_yaml, package_chart
from tests.support.charts import ChartSpec, build_chart_package

_VALUES = """\
replicaCount: 1
image:
  repository: registry.example.org/shop
  tag: "2.3.1"
db:
  host: db.internal
  port: 5432
  password: ""
settings:
  greeting: hello
  features:
    search: true
    checkout: false
service:
  port: 8080
extra:
  enabled: false
cache:
  enabled: true
  maxMemory: 64mb
"""

_HELPERS = """\
{{- define "shop.fullname" -}}
{{ .Release.Name }}-{{ .Chart.Name }}
{{- end -}}
"""

_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "shop.fullname" . }}-settings
  namespace: {{ .Release.Namespace }}
data:
  greeting: {{ .Values.settings.greeting | quote }}
  search: {{ .Values.settings.features.search | quote }}
  checkout: {{ .Values.settings.features.checkout | quote }}
  release: {{ .Release.Name | quote }}
  revision: {{ .Release.Revision | quote }}
  upgrade: {{ .Release.IsUpgrade | quote }}
  install: {{ .Release.IsInstall | quote }}
  kubeVersion: {{ .Capabilities.KubeVersion.Version | quote }}
"""

_SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: {{ include "shop.fullname" . }}-db
type: Opaque
stringData:
  password: {{ required "db.password is required" .Values.db.password | quote }}
"""

_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: {{ include "shop.fullname" . }}
spec:
  ports:
    - port: {{ .Values.service.port }}
"""

_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "shop.fullname" . }}
spec:
  replicas: {{ .Values.replicaCount }}
  template:
    spec:
      containers:
        - name: shop
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
          env:
            - name: DB_HOST
              value: {{ .Values.db.host | quote }}
      volumes:
        - name: settings
          configMap:
            name: {{ include "shop.fullname" . }}-settings
            defaultMode: 0440
"""

# A custom resource of the CRD below; unknown kinds install after every built-in one.
_WIDGET = """\
apiVersion: example.org/v1
kind: Widget
metadata:
  name: {{ include "shop.fullname" . }}
"""

# Blank documents and a disabled block must not turn into objects.
_OPTIONAL = """\
---
{{- if .Values.extra.enabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: extra
{{- end }}
---
# nothing but a comment
---
"""

_MONITOR = """\
{{- if .Capabilities.APIVersions.Has "monitoring.coreos.com/v1" }}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "shop.fullname" . }}
{{- end }}
"""

_HOOK = """\
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "shop.fullname" . }}-migrate
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "-5"
spec:
  template:
    spec:
      restartPolicy: Never
      containers:
        - name: migrate
          image: "{{ .Values.image.repository }}:{{ .Values.image.tag }}"
"""

_NOTES = """\
{{- $host := printf "%s.%s.svc" (include "shop.fullname" .) .Release.Namespace -}}
Shop is at http://{{ $host }}:{{ .Values.service.port }}
"""

_CRD = """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.org
spec:
  group: example.org
  names:
    kind: Widget
    plural: widgets
  scope: Namespaced
"""

_CACHE_CONFIGMAP = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cache
data:
  maxMemory: {{ .Values.maxMemory | quote }}
  port: {{ .Values.port | quote }}
  policy: {{ .Values.policy | quote }}
"""

SHOP_FILES: dict[str, str] = {
    "Chart.yaml": chart_yaml(
        "shop",
        "1.4.0",
        app_version="2.3.1",
        dependencies="  - name: cache\n    version: 0.2.0\n    condition: cache.enabled\n",
    ),
    "values.yaml": _VALUES,
    "templates/_helpers.tpl": _HELPERS,
    "templates/configmap.yaml": _CONFIGMAP,
    "templates/secret.yaml": _SECRET,
    "templates/service.yaml": _SERVICE,
    "templates/deployment.yaml": _DEPLOYMENT,
    "templates/widget.yaml": _WIDGET,
    "templates/optional.yaml": _OPTIONAL,
    "templates/servicemonitor.yaml": _MONITOR,
    "templates/hook-migrate.yaml": _HOOK,
    "templates/NOTES.txt": _NOTES,
    "crds/widgets.yaml": _CRD,
    "charts/cache/Chart.yaml": chart_yaml("cache", "0.2.0", app_version="7.2"),
    "charts/cache/values.yaml": "maxMemory: 32mb\nport: 6379\npolicy: allkeys-lru\n",
    "charts/cache/templates/configmap.yaml": _CACHE_CONFIGMAP,
    "charts/cache/templates/NOTES.txt": "the cache is ready\n",
}
SHOP = package_chart("shop", SHOP_FILES)
PASSWORD = {"db": {"password": "s3cret"}}


async def render_shop(values: dict[str, Any] | None = None, **options: Any) -> RenderedRelease:
    release = {"release_name": "web", "namespace": "store", **options}
    return await render_chart(SHOP, values=PASSWORD if values is None else values, **release)


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    matches = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} matches"
    return matches[0]


async def test_chart_defaults_render_when_values_only_fill_required_ones() -> None:
    rendered = await render_shop()

    assert (rendered.chart_name, rendered.chart_version, rendered.app_version) == (
        "shop",
        "1.4.0",
        "2.3.1",
    )
    settings = find(rendered.manifests, "ConfigMap", "web-shop-settings")["data"]
    assert settings["greeting"] == "hello"
    assert (settings["search"], settings["checkout"]) == ("true", "false")
    deployment = find(rendered.manifests, "Deployment", "web-shop")
    assert deployment["spec"]["replicas"] == 1
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.org/shop:2.3.1"
    assert container["env"] == [{"name": "DB_HOST", "value": "db.internal"}]
    secret = find(rendered.manifests, "Secret", "web-shop-db")
    assert secret["stringData"] == {"password": "s3cret"}


async def test_values_merge_into_nested_defaults_instead_of_replacing_them() -> None:
    rendered = await render_shop(
        {
            "replicaCount": 3,
            "settings": {"features": {"checkout": True}},
            "db": {"password": "s3cret"},
        }
    )

    settings = find(rendered.manifests, "ConfigMap", "web-shop-settings")["data"]
    assert (settings["greeting"], settings["search"], settings["checkout"]) == (
        "hello",
        "true",
        "true",
    )
    assert find(rendered.manifests, "Deployment", "web-shop")["spec"]["replicas"] == 3
    assert rendered.values["settings"] == {
        "greeting": "hello",
        "features": {"search": True, "checkout": True},
    }
    assert rendered.values["db"] == {"host": "db.internal", "port": 5432, "password": "s3cret"}


async def test_subchart_renders_with_its_defaults_under_parent_overrides() -> None:
    defaults = await render_shop()
    overridden = await render_shop({**PASSWORD, "cache": {"policy": "noeviction"}})

    # maxMemory comes from the parent's values.yaml, port from the subchart's own.
    assert find(defaults.manifests, "ConfigMap", "web-cache")["data"] == {
        "maxMemory": "64mb",
        "port": "6379",
        "policy": "allkeys-lru",
    }
    assert find(overridden.manifests, "ConfigMap", "web-cache")["data"]["policy"] == "noeviction"
    assert overridden.values["cache"]["port"] == 6379


async def test_subchart_disabled_by_its_condition_is_not_rendered() -> None:
    rendered = await render_shop({**PASSWORD, "cache": {"enabled": False}})

    names = {o["metadata"]["name"] for o in rendered.manifests}
    assert "web-cache" not in names
    assert "web-shop-settings" in names


async def test_missing_required_value_fails_with_helms_own_message() -> None:
    with pytest.raises(RenderError) as caught:
        await render_shop({})

    assert caught.value.code == TEMPLATE_FAILED
    assert str(caught.value) == (
        "execution error at (shop/templates/secret.yaml:7:15): db.password is required"
    )


async def test_template_syntax_error_fails_with_helms_own_message() -> None:
    broken = package_chart(
        "broken",
        {
            "Chart.yaml": chart_yaml("broken"),
            "templates/ok.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\n",
            "templates/broken.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n"
            "  name: {{ .Release.Name \n",
        },
    )

    with pytest.raises(RenderError) as caught:
        await render_chart(broken, release_name="web", namespace="store", values={})

    assert caught.value.code == TEMPLATE_FAILED
    assert caught.value.message == (
        "parse error at (broken/templates/broken.yaml:5): "
        "unclosed action started at broken/templates/broken.yaml:4"
    )


@pytest.mark.parametrize(
    ("archive", "helm_says"),
    [
        (b"this is not a gzip archive", "gzip: invalid header"),
        (package_chart("nochart", {"values.yaml": "a: 1\n"}), "Chart.yaml file is missing"),
    ],
    ids=["not-gzip", "no-chart-yaml"],
)
async def test_invalid_archive_fails_with_helms_message(archive: bytes, helm_says: str) -> None:
    with pytest.raises(RenderError) as caught:
        await render_chart(archive, release_name="web", namespace="store", values={})

    assert caught.value.code == CHART_INVALID
    assert helm_says in caught.value.message


async def test_archive_over_the_size_cap_is_refused_before_helm_reads_it() -> None:
    # Garbage the SDK would call "invalid header": the size check must answer first.
    with pytest.raises(RenderError) as caught:
        await render_chart(
            b"x" * 2049, release_name="web", namespace="store", values={}, max_chart_bytes=2048
        )

    assert caught.value.code == CHART_TOO_LARGE
    assert "2049 bytes" in caught.value.message


@pytest.mark.parametrize(
    "values", [["replicaCount", 3], "replicaCount: 3", {"when": {1, 2}}], ids=repr
)
async def test_values_that_are_not_a_json_mapping_are_refused(values: Any) -> None:
    with pytest.raises(RenderError) as caught:
        await render_shop(values)

    assert caught.value.code == VALUES_INVALID


async def test_values_failing_the_chart_schema_report_helms_finding() -> None:
    chart = package_chart(
        "typed",
        {
            "Chart.yaml": chart_yaml("typed"),
            "values.yaml": "replicas: 1\n",
            "values.schema.json": '{"type": "object", "properties":'
            ' {"replicas": {"type": "integer"}}}',
            "templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: t\n",
        },
    )

    with pytest.raises(RenderError) as caught:
        await render_chart(chart, release_name="web", namespace="store", values={"replicas": "2"})

    assert caught.value.code == VALUES_INVALID
    assert "at '/replicas': got string, want integer" in caught.value.message


async def test_release_name_helm_rejects_is_refused() -> None:
    with pytest.raises(RenderError) as caught:
        await render_shop(release_name="Web_Shop")

    assert caught.value.code == RELEASE_INVALID
    assert caught.value.message.startswith("invalid release name")


async def test_library_chart_is_not_installable() -> None:
    library = package_chart(
        "common",
        {"Chart.yaml": chart_yaml("common", chart_type="library"), "templates/_x.tpl": ""},
    )

    with pytest.raises(RenderError) as caught:
        await render_chart(library, release_name="web", namespace="store", values={})

    assert (caught.value.code, caught.value.message) == (
        CHART_INVALID,
        "library charts are not installable",
    )


async def test_dependency_missing_from_charts_dir_fails_like_helm_install() -> None:
    files = {k: v for k, v in SHOP_FILES.items() if not k.startswith("charts/")}

    with pytest.raises(RenderError) as caught:
        await render_chart(
            package_chart("shop", files), release_name="web", namespace="store", values=PASSWORD
        )

    assert caught.value.code == CHART_INVALID
    assert caught.value.message == "found in Chart.yaml, but missing in charts/ directory: cache"


async def test_document_that_is_not_a_kubernetes_object_fails() -> None:
    chart = package_chart(
        "odd",
        {"Chart.yaml": chart_yaml("odd"), "templates/odd.yaml": "name: {{ .Release.Name }}\n"},
    )

    with pytest.raises(RenderError) as caught:
        await render_chart(chart, release_name="web", namespace="store", values={})

    assert caught.value.code == MANIFEST_INVALID
    assert caught.value.message.startswith("odd/templates/odd.yaml: document 1")


async def test_render_runs_off_the_event_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    entered = threading.Event()
    loop_ran = threading.Event()
    real_load = helm_python.Chart.load_archive

    def load_once_the_loop_has_run(data: bytes) -> helm_python.Chart:
        entered.set()
        # Only a task on a free event loop can set loop_ran; if this ran on the loop thread, the
        # wait would time out (a failure, not a hang).
        if not loop_ran.wait(timeout=10):
            raise AssertionError("the event loop stayed blocked while the chart was loading")
        return real_load(data)

    monkeypatch.setattr(helm_python.Chart, "load_archive", load_once_the_loop_has_run)

    async def keep_ticking() -> None:
        while not entered.is_set():
            await asyncio.sleep(0.001)
        loop_ran.set()

    ticker = asyncio.create_task(keep_ticking())
    rendered = await render_shop()
    await ticker

    assert find(rendered.manifests, "Deployment", "web-shop")


async def test_release_name_namespace_revision_and_upgrade_reach_the_templates() -> None:
    install = await render_shop()
    upgrade = await render_shop(
        release_name="shop-prod", namespace="prod", revision=4, is_upgrade=True
    )

    first = find(install.manifests, "ConfigMap", "web-shop-settings")
    assert first["metadata"]["namespace"] == "store"
    assert (first["data"]["release"], first["data"]["revision"]) == ("web", "1")
    assert (first["data"]["install"], first["data"]["upgrade"]) == ("true", "false")
    later = find(upgrade.manifests, "ConfigMap", "shop-prod-shop-settings")
    assert later["metadata"]["namespace"] == "prod"
    assert (later["data"]["release"], later["data"]["revision"]) == ("shop-prod", "4")
    assert (later["data"]["install"], later["data"]["upgrade"]) == ("false", "true")
    assert upgrade.notes == "Shop is at http://shop-prod-shop.prod.svc:8080\n"


async def test_hooks_and_notes_are_kept_apart_from_manifests() -> None:
    rendered = await render_shop()

    assert [(h["kind"], h["metadata"]["name"]) for h in rendered.hooks] == [
        ("Job", "web-shop-migrate")
    ]
    assert rendered.hooks[0]["metadata"]["annotations"] == {
        "helm.sh/hook": "pre-install,pre-upgrade",
        "helm.sh/hook-weight": "-5",
    }
    assert all(o["kind"] != "Job" for o in rendered.manifests)
    # Only the parent chart's NOTES.txt, as with helm install; never parsed as a manifest.
    assert rendered.notes == "Shop is at http://web-shop.store.svc:8080\n"


async def test_crds_from_the_crds_directory_are_kept_apart() -> None:
    rendered = await render_shop()

    assert [c["metadata"]["name"] for c in rendered.crds] == ["widgets.example.org"]
    assert all(o["kind"] != "CustomResourceDefinition" for o in rendered.manifests)


async def test_manifests_come_in_install_order_without_empty_documents() -> None:
    rendered = await render_shop()

    assert [o["kind"] for o in rendered.manifests] == [
        "Secret",
        "ConfigMap",  # the subchart's: template paths break ties, as in Helm
        "ConfigMap",
        "Service",
        "Deployment",
        "Widget",
    ]


async def test_manifests_are_read_with_kubernetes_yaml_rules() -> None:
    rendered = await render_shop()

    volume = find(rendered.manifests, "Deployment", "web-shop")["spec"]["template"]["spec"][
        "volumes"
    ][0]
    # 0440 is octal to Helm and the API server; a YAML 1.2 reading (440) would grant o+w.
    assert volume["configMap"]["defaultMode"] == 0o440


async def test_kube_version_and_api_versions_set_capabilities() -> None:
    default = await render_shop()
    targeted = await render_shop(kube_version="v1.29.4", api_versions=["monitoring.coreos.com/v1"])

    assert all(o["kind"] != "ServiceMonitor" for o in default.manifests)
    assert find(targeted.manifests, "ServiceMonitor", "web-shop")
    settings = find(targeted.manifests, "ConfigMap", "web-shop-settings")
    assert settings["data"]["kubeVersion"] == "v1.29.4"


async def test_invalid_kube_version_is_refused_with_helms_message() -> None:
    with pytest.raises(RenderError) as caught:
        await render_shop(kube_version="banana")

    assert (caught.value.code, caught.value.message) == (
        RELEASE_INVALID,
        'could not parse "banana" as version',
    )


async def test_packages_from_the_shared_chart_builder_render(tmp_path: Path) -> None:
    spec = ChartSpec(name="nginx", version="1.2.0", app_version="1.27.0")
    archive = build_chart_package(spec, tmp_path).read_bytes()

    rendered = await render_chart(
        archive, release_name="edge", namespace="web", values={"service": {"port": 8080}}
    )

    assert [o["kind"] for o in rendered.manifests] == ["Service", "Deployment"]
    service, deployment = rendered.manifests
    assert service["spec"]["ports"][0]["port"] == 8080
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "docker.io/example/nginx:1.27.0"


def test_install_order_puts_crds_then_config_then_services_then_workloads() -> None:
    objects = [
        {"kind": "Deployment", "metadata": {"name": "app"}},
        {"kind": "Widget", "metadata": {"name": "w"}},
        {"kind": "Service", "metadata": {"name": "svc"}},
        {"kind": "Gadget", "metadata": {"name": "g"}},
        {"kind": "ConfigMap", "metadata": {"name": "first"}},
        {"kind": "Namespace", "metadata": {"name": "ns"}},
        {"kind": "CustomResourceDefinition", "metadata": {"name": "widgets.example.org"}},
        {"kind": "ConfigMap", "metadata": {"name": "second"}},
    ]

    ordered = [(o["kind"], o["metadata"]["name"]) for o in install_order(objects)]

    assert ordered == [
        ("CustomResourceDefinition", "widgets.example.org"),
        ("Namespace", "ns"),
        ("ConfigMap", "first"),
        ("ConfigMap", "second"),
        ("Service", "svc"),
        ("Deployment", "app"),
        # Kinds Helm does not know come last, alphabetically.
        ("Gadget", "g"),
        ("Widget", "w"),
    ]
