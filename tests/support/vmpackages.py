"""Build VM app packages (.tgz) and OpenPitrix-style index.yaml files for tests, at test time."""

from __future__ import annotations

import copy
import gzip
import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.support.charts import ChartSpec, build_chart_package, chart_metadata

_MTIME = 1_704_067_200  # 2024-01-01: byte-identical packages between runs


@dataclass
class VmPackageSpec:
    """The three files of a package, as data (the template as text)."""

    package: dict[str, Any]
    config: dict[str, Any]
    template: str
    extra_files: dict[str, bytes] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.package["name"])

    @property
    def version(self) -> str:
        return str(self.package["version"])

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}.tgz"


def tar_bytes(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """A .tgz of exactly these members (for archives no packager would write)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for info, body in members:
            info.mtime = _MTIME
            if body is not None:
                info.size = len(body)
                archive.addfile(info, io.BytesIO(body))
            else:
                archive.addfile(info)
    return gzip.compress(raw.getvalue(), mtime=0)


def file_member(name: str, body: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.mode = 0o644
    return info, body


def build_vm_package(spec: VmPackageSpec, top: str | None = None) -> bytes:
    """The package as `op package` lays it out: one top directory named after the app."""
    base = top or spec.name
    files = {
        "package.json": json.dumps(spec.package, indent=2).encode(),
        "config.json": json.dumps(spec.config, indent=2).encode(),
        "cluster.json.tmpl": spec.template.encode(),
        **spec.extra_files,
    }
    return tar_bytes([file_member(f"{base}/{name}", body) for name, body in files.items()])


def write_vm_index(
    repo_dir: Path,
    specs: list[VmPackageSpec],
    *,
    helm_entries: dict[str, list[dict[str, Any]]] | None = None,
) -> Path:
    """Write the packages and an index.yaml as OpenPitrix's `op index` wrote it: the
    package.json fields in snake case (`api_version`, `app_version`) plus urls, digest and
    created. `helm_entries` adds Helm chart entries to the same index (a mixed repo)."""
    repo_dir.mkdir(parents=True, exist_ok=True)
    entries: dict[str, list[dict[str, Any]]] = copy.deepcopy(helm_entries or {})
    for spec in specs:
        body = build_vm_package(spec)
        (repo_dir / spec.filename).write_bytes(body)
        entry = {
            **spec.package,
            "urls": [spec.filename],
            "digest": hashlib.sha256(body).hexdigest(),
            "created": "2024-01-01T00:00:00Z",
        }
        entries.setdefault(spec.name, []).append(entry)
    index = {"api_version": "v1", "entries": entries, "generated": "2024-01-01T00:00:00Z"}
    path = repo_dir / "index.yaml"
    path.write_text(yaml.safe_dump(index, sort_keys=False), encoding="utf-8")
    return path


# ------------------------------------------------------------------------ example packages

# OpenPitrix's own example: what `op create` wrote (pkg/devkit/create.go), with the role's
# image filled in. Its default settings render as OpenPitrix rendered them.
OP_CREATE_TEMPLATE = """
{
    "name": "{{.cluster.name}}",
    "description": "{{.cluster.description}}",
    "subnet": "{{.cluster.subnet}}",
    "nodes": [{
        "role": "role_name1",
        "container": {
            "type": "docker",
            "image": "nginx"
        },
        "instance_class": "{{.cluster.role_name1.instance_class}}",
        "count": "{{.cluster.role_name1.count}}",
        "cpu": "{{.cluster.role_name1.cpu}}",
        "memory": "{{.cluster.role_name1.memory}}",
        "volume": {
            "size": "{{.cluster.role_name1.volume_size}}",
            "mount_point": "/test_data",
            "filesystem": "ext4"
        }
    }]
}
"""


def _item(key: str, kind: str, default: Any, **extra: Any) -> dict[str, Any]:
    return {"key": key, "label": key, "description": key, "type": kind, "default": default, **extra}


def op_create_config(app: str = "nginx") -> dict[str, Any]:
    role = {
        "key": "role_name1",
        "label": "role_name1",
        "description": "role-based role_name1 properties",
        "type": "array",
        "properties": [
            _item("cpu", "integer", 1, range=[1, 2, 4, 8, 16], required=True),
            _item("memory", "integer", 2048, range=[2048, 8192, 16384, 32768, 49152]),
            _item("count", "integer", 3, min=1, max=100, required=True),
            _item("volume_size", "integer", 10, min=10, max=1000, step=10, required=True),
            _item("instance_class", "integer", 0, range=[0, 1], required=True),
        ],
    }
    cluster = {
        "key": "cluster",
        "description": f"{app} cluster properties",
        "type": "array",
        "properties": [
            _item("name", "string", app, required=False),
            _item("description", "string", "", required=False),
            _item("subnet", "string", "", required=True),
            role,
        ],
    }
    return {"type": "array", "properties": [cluster]}


def op_create_package(name: str = "nginx", version: str = "0.1.0") -> VmPackageSpec:
    package = {
        "api_version": "v1",
        "name": name,
        "version": version,
        "app_version": "1.0",
        "description": f"{name} as op create writes it",
    }
    return VmPackageSpec(package, op_create_config(name), OP_CREATE_TEMPLATE)


def helm_entry(repo_dir: Path, spec: ChartSpec) -> dict[str, Any]:
    """A Helm chart's index entry (its package written into `repo_dir`), for a mixed index."""
    body = build_chart_package(spec, repo_dir).read_bytes()
    entry = chart_metadata(spec)
    entry.update(
        {
            "urls": [spec.filename],
            "digest": hashlib.sha256(body).hexdigest(),
            "created": "2024-01-01T00:00:00Z",
        }
    )
    return entry


_FENCE = re.compile(r"```json\n(.*?)```", re.DOTALL)


@dataclass(frozen=True)
class ReadmeExample:
    """The README's VM package example: the three files, the request and both answers."""

    package: VmPackageSpec
    request_line: str
    request: dict[str, Any]
    response: dict[str, Any]
    invalid_request: dict[str, Any]
    invalid_response: dict[str, Any]


def readme_example(readme: Path) -> ReadmeExample:
    text = readme.read_text(encoding="utf-8")
    section = text[text.index("## VM app packages") :]
    section = section[: section.index("\n## ", 1)]
    blocks = _FENCE.findall(section)
    assert len(blocks) == 6, "package.json, config.json, cluster.json.tmpl, request, 200, 422"
    package, config, template, request, response, invalid = blocks
    request_line, request_body = request.split("\n", 1)
    bad_conf = re.search(r"With `(\{.*?\})` it answers 422", section)
    assert bad_conf is not None
    return ReadmeExample(
        package=VmPackageSpec(json.loads(package), json.loads(config), template),
        request_line=request_line,
        request=json.loads(request_body),
        response=json.loads(response),
        invalid_request=json.loads(bad_conf.group(1)),
        invalid_response=json.loads(invalid),
    )
