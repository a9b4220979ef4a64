"""Prefixed random ids in OpenPitrix's style (repo-xxxxxxxxxxxx)."""

from __future__ import annotations

import secrets

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"

REPO = "repo"
APP = "app"
APP_VERSION = "appv"
JOB = "j"
TASK = "t"
USER = "usr"
REFRESH = "rtk"  # refresh token rows
REFRESH_FAMILY = "rtf"  # one login and its rotations
API_CLIENT = "cli"
RUNTIME = "runtime"
RUNTIME_CREDENTIAL = "rc"
CLUSTER = "cl"


def new_id(prefix: str, length: int = 12) -> str:
    return f"{prefix}-" + "".join(secrets.choice(_ALPHABET) for _ in range(length))
