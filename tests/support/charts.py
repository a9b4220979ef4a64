"""Build real Helm chart packages and index.yaml files for tests, deterministically."""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

# Fixed timestamps keep packages byte-identical between runs, so digests are stable.
_EPOCH = datetime(2024, 1, 1, tzinfo=UTC)
_TAR_MTIME = int(_EPOCH.timestamp())

_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "fullname" . }}
  labels:
    {{- include "labels" . | nindent 4 }}
spec:
  replicas: {{ .Values.replicaCount }}
  selector:
    matchLabels:
      app.kubernetes.io/name: {{ .Chart.Name }}
      app.kubernetes.io/instance: {{ .Release.Name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {{ .Chart.Name }}
        app.kubernetes.io/instance: {{ .Release.Name }}
    spec:
      {{- $tag := .Values.image.tag | default .Chart.AppVersion }}
      containers:
        - name: {{ .Chart.Name }}
          image: "{{ .Values.image.repository }}:{{ $tag }}"
          ports:
            - name: http
              containerPort: {{ .Values.service.targetPort }}
              protocol: TCP
"""

_SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: {{ include "fullname" . }}
  labels:
    {{- include "labels" . | nindent 4 }}
spec:
  type: {{ .Values.service.type }}
  ports:
    - port: {{ .Values.service.port }}
      targetPort: http
      protocol: TCP
      name: http
  selector:
    app.kubernetes.io/name: {{ .Chart.Name }}
    app.kubernetes.io/instance: {{ .Release.Name }}
"""

_HELPERS = """\
{{- define "fullname" -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
"""


@dataclass
class ChartSpec:
    name: str
    version: str
    app_version: str = "1.0.0"
    description: str = ""
    keywords: list[str] = field(default_factory=list)
    extra_templates: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.description:
            self.description = f"{self.name} chart"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.tgz"


def chart_metadata(spec: ChartSpec) -> dict[str, Any]:
    """The Chart.yaml fields of a spec, in Helm's key names; the index repeats them per version."""
    return {
        "apiVersion": "v2",
        "name": spec.name,
        "version": spec.version,
        "appVersion": spec.app_version,
        "description": spec.description,
        "home": f"https://example.org/{spec.name}",
        "icon": f"https://example.org/{spec.name}/icon.png",
        "keywords": list(spec.keywords),
        "maintainers": [
            {
                "name": f"{spec.name} maintainers",
                "email": f"team-{spec.name}@example.org",
                "url": f"https://example.org/{spec.name}/team",
            }
        ],
        "sources": [f"https://github.com/example/{spec.name}"],
    }


def _values(spec: ChartSpec) -> dict[str, Any]:
    return {
        "replicaCount": 1,
        "image": {"repository": f"docker.io/example/{spec.name}", "tag": ""},
        "service": {"type": "ClusterIP", "port": 80, "targetPort": 8080},
    }


def build_chart_package(spec: ChartSpec, out_dir: Path) -> Path:
    """Write `<name>-<version>.tgz`: a gzip tarball Helm can install, rooted at `<name>/`."""
    files = {
        "Chart.yaml": yaml.safe_dump(chart_metadata(spec), sort_keys=False),
        "values.yaml": yaml.safe_dump(_values(spec), sort_keys=False),
        "templates/_helpers.tpl": _HELPERS,
        "templates/deployment.yaml": _DEPLOYMENT,
        "templates/service.yaml": _SERVICE,
    }
    files.update({f"templates/{name}": text for name, text in spec.extra_templates.items()})

    raw = io.BytesIO()
    # gzip's own header carries a timestamp too; pin it so the digest only depends on content.
    with (
        gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed,
        tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for relative, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{spec.name}/{relative}")
            info.size = len(data)
            info.mtime = _TAR_MTIME
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))

    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / spec.filename
    path.write_bytes(raw.getvalue())
    return path


def created_at(position: int) -> str:
    """The `created` stamp write_index gives the spec at `position`: Go's RFC 3339 with nanos."""
    moment = _EPOCH + timedelta(hours=position)
    nanos = (position * 123_456_789 + 1) % 1_000_000_000
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


def write_index(
    repo_dir: Path,
    specs: list[ChartSpec],
    *,
    base_url: str | None = None,
    packages: bool = True,
) -> Path:
    """Write `repo_dir/index.yaml` in Helm's format (and the packages it points at, by default)."""
    repo_dir.mkdir(parents=True, exist_ok=True)
    by_chart: dict[str, list[tuple[ChartSpec, dict[str, Any]]]] = {}
    for position, spec in enumerate(specs):
        if packages:
            digest = hashlib.sha256(build_chart_package(spec, repo_dir).read_bytes()).hexdigest()
        else:
            digest = hashlib.sha256(f"{spec.name}@{spec.version}".encode()).hexdigest()
        url = f"{base_url.rstrip('/')}/{spec.filename}" if base_url else spec.filename
        entry = chart_metadata(spec)
        entry.update({"created": created_at(position), "digest": digest, "urls": [url]})
        by_chart.setdefault(spec.name, []).append((spec, entry))

    index = {
        "apiVersion": "v1",
        "entries": {
            name: [entry for _, entry in sorted(versions, key=_release_order, reverse=True)]
            for name, versions in by_chart.items()
        },
        "generated": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    path = repo_dir / "index.yaml"
    path.write_text(yaml.safe_dump(index, sort_keys=False), encoding="utf-8")
    return path


_RELEASE = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:-(.+))?")


def _release_order(item: tuple[ChartSpec, dict[str, Any]]) -> tuple[Any, ...]:
    # Deliberately independent of the indexer's own ordering, which the tests check.
    match = _RELEASE.fullmatch(item[0].version)
    if match is None:
        return (0, item[0].version)
    major, minor, patch, pre = match.groups()
    return (1, (int(major), int(minor), int(patch)), pre is None, pre or "")


def make_specs(charts: int, versions: int, prefix: str = "chart") -> list[ChartSpec]:
    """`charts` charts named `<prefix>-000`... with versions 1.0.0, 1.1.0, ... each."""
    return [
        ChartSpec(
            name=f"{prefix}-{c:03d}",
            version=f"1.{v}.0",
            app_version=f"{2 + v}.{c % 7}.0",
            description=f"{prefix} number {c}, release 1.{v}.0",
            keywords=[prefix, f"group-{c % 10}"],
        )
        for c in range(charts)
        for v in range(versions)
    ]


REQUIRED_SECRET = """\
apiVersion: v1
kind: Secret
metadata:
  name: {{ .Release.Name }}-db
stringData:
  password: {{ required "dbPassword is required" .Values.dbPassword | quote }}
"""
CONFIG_V2 = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-extra
data:
  added: "in 2.0.0"
"""


# The charts cluster tests deploy: shop 1.0.0, shop 2.0.0 (adds a ConfigMap), and vault 1.0.0
# (a `required` value with no default).
SHOP_CHARTS = [
    ChartSpec("shop", "1.0.0", app_version="1.0"),
    ChartSpec("shop", "2.0.0", app_version="2.0", extra_templates={"extra.yaml": CONFIG_V2}),
    ChartSpec("vault", "1.0.0", extra_templates={"secret.yaml": REQUIRED_SECRET}),
]
