"""The import graph runs one way: leaves, infrastructure, HTTP edge, domains, composition root."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "openpitrix"

# Shared leaves: anyone may import them; they import only each other.
LEAVES = {"settings", "errors", "ids", "logs", "crypto", "netguard", "fetch", "heap"}
# Infrastructure: takes what it needs as parameters or hooks, never imports a domain.
INFRASTRUCTURE = {"db", "bus", "outbox", "workers", "events", "idempotency"}
# The HTTP edge every router uses (dependencies, error bodies, limits). The app itself is
# built by `gateway`, part of the composition root.
EDGE = {"api"}
# Each domain package and the domains it may ask; a domain imports no other. The table itself
# has no cycle (a test below), so no two domains import each other.
DOMAINS: dict[str, set[str]] = {
    "iam": set(),
    "jobs": {"iam", "feed"},
    "providers": {"jobs"},
    "repos": {"iam", "jobs", "providers"},
    "apps": {"iam", "repos", "providers"},
    "indexer": {"jobs", "repos", "apps"},
    "runtimes": {"iam", "jobs", "providers", "repos", "apps"},
    "clusters": {"iam", "jobs", "providers", "repos", "apps", "runtimes"},
    "feed": {"iam"},
}
# The composition root builds the processes and may import anything.
ROOT = {
    "gateway",
    "platform",
    "composition",
    "managers",
    "cli",
    "models",
    "demo",
    "secrets_rotation",
}
# The job engine's worker roles: only the managers' registry builds them, so a gateway (which
# asks jobs.service to cancel or retry) never loads them.
WORKER_ENGINE = {"openpitrix.jobs.manager", "openpitrix.jobs.tasks"}
WORKER_ENGINE_IMPORTERS = {"openpitrix.managers"}
# The edge reads the Platform (the process resources) off the app state: the one import of the
# composition root below it, in api/deps.py.
EDGE_MAY_IMPORT_ROOT = {("api.deps", "platform")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(["openpitrix", *parts])


def _imports(path: Path) -> set[str]:
    """Every openpitrix module the file imports, at any depth (functions, TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    module_name = _module_name(path)
    package = module_name if path.name == "__init__.py" else module_name.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            found.add(module)
            # `from openpitrix import x` imports the module openpitrix.x
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return {m for m in found if m == "openpitrix" or m.startswith("openpitrix.")}


def _unit(module: str) -> str | None:
    """The unit a module belongs to in the tables: its top package (or top module)."""
    parts = module.split(".")[1:]
    if not parts:
        return None
    return parts[0]


def _kind(unit: str) -> str:
    if unit in ROOT:
        return "root"
    if unit in LEAVES:
        return "leaf"
    if unit in INFRASTRUCTURE:
        return "infrastructure"
    if unit in EDGE:
        return "edge"
    if unit in DOMAINS:
        return "domain"
    return "unknown"


def _existing(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (SRC / rel).with_suffix(".py").exists() or (SRC / rel / "__init__.py").exists()


def _violation(importer: str, imported: str) -> str | None:
    src, dst = _unit(importer), _unit(imported)
    if src is None or dst is None or src == dst:
        return None
    src_kind, dst_kind = _kind(src), _kind(dst)
    if src_kind == "unknown" or dst_kind == "unknown":
        return "a package the layer table does not place"
    if src_kind == "root":
        return None
    if dst_kind == "root":
        pair = (".".join(importer.split(".")[1:3]), dst)
        if src_kind == "edge" and pair in EDGE_MAY_IMPORT_ROOT:
            return None
        return f"{src_kind} imports the composition root"
    allowed = {
        "leaf": {"leaf"},
        "infrastructure": {"leaf", "infrastructure"},
        "edge": {"leaf", "infrastructure", "edge"},
        "domain": {"leaf", "infrastructure", "edge", "domain"},
    }[src_kind]
    if dst_kind not in allowed:
        return f"{src_kind} imports {dst_kind}"
    if src_kind == "domain" and dst_kind == "domain" and dst not in DOMAINS[src]:
        return f"domain {src} may not import domain {dst}"
    return None


def _violations() -> list[str]:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        importer = _module_name(path)
        for imported in sorted(_imports(path)):
            if not _existing(imported):
                continue  # `from openpitrix.x import name` also yields openpitrix.x.name
            why = _violation(importer, imported)
            if why:
                found.append(f"{path.relative_to(SRC.parent)}: {imported} ({why})")
    return found


def test_every_package_has_a_place_in_the_layer_table() -> None:
    placed = LEAVES | INFRASTRUCTURE | EDGE | set(DOMAINS) | ROOT
    packages = {
        p.stem if p.is_file() else p.name
        for p in SRC.iterdir()
        if (p.suffix == ".py" or (p / "__init__.py").exists()) and p.name != "__init__.py"
    }
    assert packages, "no package found"
    assert sorted(packages - placed) == []


def test_domains_form_no_cycle() -> None:
    order: list[str] = []

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"domain cycle: {' -> '.join((*path, name))}"
        for dep in sorted(DOMAINS[name]):
            visit(dep, (*path, name))
        if name not in order:
            order.append(name)

    for name in sorted(DOMAINS):
        visit(name, ())
    assert len(order) == len(DOMAINS)


def test_imports_run_one_way() -> None:
    assert list(SRC.rglob("*.py")), "no module found"
    found = _violations()
    assert found == [], "imports against the layers:\n" + "\n".join(found)


def test_only_the_managers_import_the_workers_engine() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        importer = _module_name(path)
        if importer in WORKER_ENGINE_IMPORTERS | WORKER_ENGINE:
            continue
        found += [f"{importer}: {m}" for m in sorted(_imports(path) & WORKER_ENGINE)]
    assert all(_existing(m) for m in WORKER_ENGINE)
    assert found == []


@pytest.mark.parametrize(
    ("importer", "imported", "expected"),
    [
        ("openpitrix.events.sse", "openpitrix.jobs.schemas", "infrastructure imports domain"),
        ("openpitrix.workers.runner", "openpitrix.platform", "infrastructure imports the "),
        ("openpitrix.runtimes.service", "openpitrix.clusters.models", "domain runtimes may not"),
        ("openpitrix.jobs.stream", "openpitrix.platform", "domain imports the composition root"),
        ("openpitrix.clusters.jobs", "openpitrix.runtimes.service", None),
        ("openpitrix.api.deps", "openpitrix.platform", None),
        ("openpitrix.cli", "openpitrix.clusters.service", None),
    ],
)
def test_the_rules_tell_a_wrong_import_from_a_right_one(
    importer: str, imported: str, expected: str | None
) -> None:
    why = _violation(importer, imported)
    if expected is None:
        assert why is None
    else:
        assert why is not None and why.startswith(expected)
