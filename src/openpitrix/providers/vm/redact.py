"""What the API shows of a VM release: the values of the package's `password` settings hidden
wherever the template rendered them (a role's env, a service's command, any other text) and
wherever the user's settings hold them.

Each node object of a rendered manifest carries those values under `secrets` (see
`nodes.nodes_of_spec`); the stored manifest keeps them as rendered, because the nodes a later
add-nodes makes boot from it and services run its commands. Only what is shown is redacted."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Final

REDACTED: Final = "******"
SECRETS_KEY: Final = "secrets"
# A node's identity: names our code and the cloud key on, never text a setting renders into.
KEPT: Final = frozenset({"kind", "node_id", "name", "role"})


def secrets_of(objects: Iterable[dict[str, Any]]) -> list[str]:
    """Every secret the objects carry, longest first (a secret holding another goes whole)."""
    found = {s for obj in objects for s in obj.get(SECRETS_KEY) or () if isinstance(s, str) and s}
    return sorted(found, key=lambda s: (-len(s), s))


def hide(text: str, secrets: Sequence[str]) -> str:
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def redact_value(value: Any, secrets: Sequence[str]) -> Any:
    """A JSON value with every secret in its text replaced (keys are names, left alone)."""
    if not secrets:
        return value
    if isinstance(value, str):
        return hide(value, secrets)
    if isinstance(value, dict):
        return {k: redact_value(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v, secrets) for v in value]
    return value


def redact_settings(values: dict[str, Any], objects: list[dict[str, Any]]) -> dict[str, Any]:
    """A release's settings as shown: the password settings' values hidden. Until the release
    is rendered (or when its manifest predates `secrets`), which settings are passwords is not
    known here, so every text setting is hidden."""
    if not any(SECRETS_KEY in obj for obj in objects):
        return _every_text_hidden(values)  # type: ignore[no-any-return]
    return redact_value(values, secrets_of(objects))  # type: ignore[no-any-return]


def _every_text_hidden(value: Any) -> Any:
    if isinstance(value, str):
        return REDACTED
    if isinstance(value, dict):
        return {k: _every_text_hidden(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_every_text_hidden(v) for v in value]
    return value


def redact_objects(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A manifest as shown: its secrets' list dropped, their values hidden in every field but
    the node's identity."""
    secrets = secrets_of(objects)
    return [
        {
            k: v if k in KEPT else redact_value(v, secrets)
            for k, v in obj.items()
            if k != SECRETS_KEY
        }
        for obj in objects
    ]
