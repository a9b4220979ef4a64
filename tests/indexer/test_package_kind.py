"""How the indexer tells a VM package entry from a Helm chart entry in one index.yaml."""

from __future__ import annotations

from typing import Any

import orjson

from openpitrix.repos.helm import PACKAGE_KIND_ANNOTATION, parse_index


def _entry(name: str, **fields: Any) -> dict[str, Any]:
    return {"name": name, "version": "1.0.0", "urls": [f"{name}-1.0.0.tgz"], **fields}


def _kinds(index: dict[str, Any]) -> dict[str, tuple[str, str]]:
    parsed = parse_index(orjson.dumps(index), "https://repo.example.org/")
    return {
        name: (versions[0].package_kind, versions[0].app_version)
        for name, versions in parsed.charts.items()
    }


def test_each_entry_tells_its_kind_by_its_fields_or_its_annotation() -> None:
    index = {
        "apiVersion": "v1",
        "entries": {
            # Chart.yaml's camel case: Helm.
            "redis": [_entry("redis", apiVersion="v2", appVersion="7.0")],
            # package.json's snake case, as OpenPitrix's `op index` wrote it: VM.
            "mysql": [_entry("mysql", api_version="v1", app_version="8.0")],
            "nginx": [_entry("nginx", app_version="1.26")],
            # An annotation wins over the fields.
            "legacy": [
                _entry(
                    "legacy",
                    apiVersion="v2",
                    appVersion="3",
                    annotations={PACKAGE_KIND_ANNOTATION: "vm"},
                )
            ],
            "odd": [_entry("odd", annotations={PACKAGE_KIND_ANNOTATION: "zip"})],
            # Nothing to tell by: the index's kind (a Helm index here).
            "bare": [_entry("bare")],
        },
    }
    assert _kinds(index) == {
        "redis": ("helm", "7.0"),
        "mysql": ("vm", "8.0"),
        "nginx": ("vm", "1.26"),
        "legacy": ("vm", "3"),
        "odd": ("helm", ""),
        "bare": ("helm", ""),
    }


def test_an_openpitrix_vm_index_makes_bare_entries_vm() -> None:
    index = {"api_version": "v1", "entries": {"bare": [_entry("bare")]}}
    assert _kinds(index) == {"bare": ("vm", "")}
