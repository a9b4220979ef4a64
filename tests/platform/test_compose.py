"""docker/compose.yaml deploys the whole production split: a service for every manager, and
the same signing and encryption keys in every OpenPitrix process."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from openpitrix.bus.topology import MANAGERS
from openpitrix.managers import MANAGER_FACTORIES

DOCKER = Path(__file__).resolve().parents[2] / "docker"
# What every process that signs (gateways: access tokens) or seals/opens stored credentials
# (gateways, workers, migrations) must share with its peers.
SHARED_KEYS = ("OPENPITRIX_AUTH__JWT_SECRET", "OPENPITRIX_AUTH__SECRET_KEYS")
OPENPITRIX_COMMANDS = {"api", "worker", "serve", "migrate"}
REQUIRED_VARIABLE = re.compile(r"^\$\{(?P<name>[A-Z0-9_]+):\?[^}]+\}$")


def services() -> dict[str, dict[str, Any]]:
    document = yaml.safe_load((DOCKER / "compose.yaml").read_text(encoding="utf-8"))
    found: dict[str, dict[str, Any]] = document["services"]
    return found


def openpitrix_services() -> dict[str, dict[str, Any]]:
    return {
        name: svc
        for name, svc in services().items()
        if svc.get("command") and svc["command"][0] in OPENPITRIX_COMMANDS
    }


def test_every_manager_has_a_service_running_it() -> None:
    assert set(MANAGER_FACTORIES) == set(MANAGERS)
    running: dict[str, list[str]] = {}
    for name, svc in openpitrix_services().items():
        command = svc["command"]
        if command[0] == "worker":
            managers = [command[i + 1] for i, arg in enumerate(command) if arg == "--manager"]
            assert managers, f"{name} runs every manager; give each its own service"
            for manager in managers:
                running.setdefault(manager, []).append(name)
    assert set(running) == set(MANAGERS), running
    assert "api" in {svc["command"][0] for svc in openpitrix_services().values()}


def test_every_openpitrix_service_gets_the_same_shared_keys_from_the_env_file() -> None:
    chosen = openpitrix_services()
    assert {"api", "migrate", *MANAGERS} <= set(chosen)
    for key in SHARED_KEYS:
        values = {name: svc.get("environment", {}).get(key) for name, svc in chosen.items()}
        missing = [name for name, value in values.items() if not value]
        assert not missing, f"{key} not set for {missing}"
        # One reference for all (so replicas and services agree), to a variable compose
        # refuses to start without: never a literal key in the file.
        assert len(set(values.values())) == 1, values
        [value] = set(values.values())
        assert REQUIRED_VARIABLE.match(value), value


def test_the_env_example_names_every_variable_compose_requires() -> None:
    text = (DOCKER / "compose.yaml").read_text(encoding="utf-8")
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required >= set(SHARED_KEYS)
    example = (DOCKER / ".env.example").read_text(encoding="utf-8")
    listed = set(re.findall(r"^([A-Z0-9_]+)=", example, re.MULTILINE))
    assert required <= listed, required - listed
