"""The committed OpenAPI export is what frontends generate clients from: it must be current."""

from __future__ import annotations

import json
from pathlib import Path

from openpitrix.gateway import create_app
from openpitrix.settings import Settings

EXPORT = Path(__file__).resolve().parents[2] / "openapi" / "openapi.json"


def test_committed_openapi_export_matches_the_app() -> None:
    live = create_app(Settings()).openapi()
    committed = json.loads(EXPORT.read_text())
    assert committed == json.loads(json.dumps(live)), (
        "openapi/openapi.json is stale: run `make openapi`"
    )


def test_every_route_has_a_stable_operation_id_and_a_tag() -> None:
    spec = create_app(Settings()).openapi()
    seen: set[str] = set()
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            assert op.get("operationId"), f"{method.upper()} {path} has no operation_id"
            assert "_" in op["operationId"] or op["operationId"].isalpha()
            assert op["operationId"] not in seen, f"duplicate operation_id {op['operationId']}"
            seen.add(op["operationId"])
            assert op.get("tags"), f"{method.upper()} {path} has no tag"


def test_request_bodies_carry_examples() -> None:
    spec = create_app(Settings()).openapi()
    schema = spec["components"]["schemas"]["RepoCreate"]
    assert schema.get("examples"), "RepoCreate needs an example for client generators"
