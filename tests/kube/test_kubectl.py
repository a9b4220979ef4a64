"""The real kubectl against the fake API server, with no flags that dodge a feature."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.kube import FakeKube

pytestmark = pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl not installed")

_MANIFEST = """\
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
  namespace: shop
data:
  greeting: {greeting}
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels: {{app: web}}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      containers:
      - name: nginx
        image: {image}
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {{app: web}}
  ports:
  - port: 80
    targetPort: 80
"""


@pytest.fixture
async def kube() -> AsyncIterator[FakeKube]:
    async with FakeKube() as fake:
        yield fake


def _manifest(tmp_path: Path, *, image: str = "nginx:1.27", greeting: str = "hello") -> str:
    path = tmp_path / f"manifest-{image.replace(':', '-')}-{greeting}.yaml"
    path.write_text(_MANIFEST.format(image=image, greeting=greeting))
    return str(path)


async def test_kubectl_apply_get_server_side_apply_and_delete(
    kube: FakeKube, tmp_path: Path
) -> None:
    applied = await kube.kubectl("apply", "-f", _manifest(tmp_path))
    assert applied.returncode == 0, applied.stderr
    assert applied.stdout.splitlines() == [
        "namespace/shop created",
        "configmap/web-config created",
        "deployment.apps/web created",
        "service/web created",
    ]
    assert kube.managers("Deployment", "shop", "web")["kubectl-client-side-apply"] == ["Update"]
    service = kube.get("Service", "shop", "web") or {}
    assert service["spec"]["clusterIP"].startswith("10.96.")

    await kube.settle()
    kube.make_ready("shop", "Deployment", "web")
    got = await kube.kubectl("get", "deploy", "-n", "shop", "-o", "json")
    assert got.returncode == 0, got.stderr
    [deployment] = got.json()["items"]
    assert deployment["metadata"]["name"] == "web"
    assert deployment["status"]["readyReplicas"] == 2
    pods = (await kube.kubectl("get", "pods", "-n", "shop", "-l", "app=web", "-o", "json")).json()
    assert len(pods["items"]) == 2

    # A changed manifest is patched (strategic merge) by client-side apply.
    changed = await kube.kubectl(
        "apply", "-f", _manifest(tmp_path, image="nginx:1.28", greeting="bye")
    )
    assert changed.returncode == 0, changed.stderr
    assert "deployment.apps/web configured" in changed.stdout
    assert "service/web unchanged" in changed.stdout
    stored = kube.get("Deployment", "shop", "web") or {}
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "nginx:1.28"
    assert stored["metadata"]["generation"] == 2
    assert (kube.get("ConfigMap", "shop", "web-config") or {})["data"] == {"greeting": "bye"}

    # Server-side apply of the same configuration shares ownership: no conflict.
    ssa = await kube.kubectl(
        "apply", "--server-side", "-f", _manifest(tmp_path, image="nginx:1.28", greeting="bye")
    )
    assert ssa.returncode == 0, ssa.stderr
    assert "deployment.apps/web serverside-applied" in ssa.stdout
    assert "Apply" in kube.managers("Deployment", "shop", "web")["kubectl"]
    applies = kube.requests_matching("PATCH", "/apis/apps/v1/namespaces/shop/deployments/web")
    assert any(
        r.content_type == "application/apply-patch+yaml" and r.param("fieldManager") == "kubectl"
        for r in applies
    )

    # Scaling by hand through /scale makes kubectl's next apply of replicas a conflict.
    scaled = await kube.kubectl("scale", "deploy/web", "-n", "shop", "--replicas=3")
    assert scaled.returncode == 0, scaled.stderr
    conflict = await kube.kubectl(
        "apply", "--server-side", "-f", _manifest(tmp_path, image="nginx:1.28", greeting="bye")
    )
    assert conflict.returncode == 1
    assert (
        'conflict with "kubectl" with subresource "scale" using apps/v1: .spec.replicas'
        in conflict.stderr
    )
    forced = await kube.kubectl(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        _manifest(tmp_path, image="nginx:1.28", greeting="bye"),
    )
    assert forced.returncode == 0, forced.stderr
    assert (kube.get("Deployment", "shop", "web") or {})["spec"]["replicas"] == 2

    deleted = await kube.kubectl(
        "delete", "-f", _manifest(tmp_path, image="nginx:1.28", greeting="bye")
    )
    assert deleted.returncode == 0, deleted.stderr
    assert 'deployment.apps "web" deleted' in deleted.stdout
    await kube.settle()
    assert kube.get("Namespace", "", "shop") is None
    assert kube.objects("Deployment", "shop") == [] and kube.objects("Pod", "shop") == []
    missing = await kube.kubectl("get", "deploy", "web", "-n", "shop")
    assert missing.returncode == 1
    # kubectl looks the namespace up after a 404, as it does against a real cluster.
    assert 'Error from server (NotFound): namespaces "shop" not found' in missing.stderr


async def test_kubectl_waits_on_rollout_through_watches(tmp_path: Path) -> None:
    async with FakeKube(auto_ready=True) as kube:
        applied = await kube.kubectl("apply", "-f", _manifest(tmp_path))
        assert applied.returncode == 0, applied.stderr
        rollout = await kube.kubectl(
            "rollout", "status", "deploy/web", "-n", "shop", "--timeout=10s"
        )
        assert rollout.returncode == 0, rollout.stderr
        assert 'deployment "web" successfully rolled out' in rollout.stdout
        waited = await kube.kubectl(
            "wait", "--for=condition=Available", "deploy/web", "-n", "shop", "--timeout=10s"
        )
        assert waited.returncode == 0, waited.stderr
        watches = [
            r
            for r in kube.requests_matching("GET", "/apis/apps/v1/namespaces/shop/deployments")
            if r.param("watch") == "true"
        ]
        assert watches


async def test_kubectl_rejects_unknown_fields_as_a_real_server_does(
    kube: FakeKube, tmp_path: Path
) -> None:
    path = tmp_path / "typo.yaml"
    path.write_text(
        "apiVersion: v1\nkind: ConfigMap\n"
        "metadata: {name: typo, namespace: default}\ndataa: {a: b}\n"
    )
    rejected = await kube.kubectl("apply", "-f", str(path))
    assert rejected.returncode == 1
    assert 'strict decoding error: unknown field "dataa"' in rejected.stderr
    assert kube.get("ConfigMap", "default", "typo") is None


async def test_kubectl_serves_custom_resources_once_their_crd_exists(
    kube: FakeKube, tmp_path: Path
) -> None:
    crd = tmp_path / "crd.yaml"
    crd.write_text(
        """\
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, shortNames: [wd]}
  versions:
  - name: v1
    served: true
    storage: true
    additionalPrinterColumns:
    - {name: Size, type: integer, jsonPath: .spec.size}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec: {type: object, properties: {size: {type: integer}}}
"""
    )
    widget = tmp_path / "widget.yaml"
    widget.write_text(
        "apiVersion: example.com/v1\nkind: Widget\n"
        "metadata: {name: w1, namespace: default}\nspec: {size: 3}\n"
    )
    before = await kube.kubectl("get", "widgets")
    assert before.returncode == 1
    assert 'the server doesn\'t have a resource type "widgets"' in before.stderr

    assert (await kube.kubectl("apply", "-f", str(crd))).returncode == 0
    made = await kube.kubectl("apply", "--server-side", "-f", str(widget))
    assert made.returncode == 0, made.stderr
    table = await kube.kubectl("get", "wd")
    assert table.returncode == 0, table.stderr
    assert table.stdout.split("\n")[1].split()[:2] == ["w1", "3"]

    removed = await kube.kubectl("delete", "-f", str(crd))
    assert removed.returncode == 0, removed.stderr
    assert kube.store.items(kube.registry.find("crd")) == []
    assert not [r for r in kube.registry.all() if r.group == "example.com"]
