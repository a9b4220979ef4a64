"""Secrets at rest: Fernet encryption with key rotation (MultiFernet).

New writes use the newest key; every configured key still decrypts, so an operator rotates by
putting a new key first and keeping the old ones until `openpitrix secrets rotate` re-encrypted
the stored rows.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import orjson
from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from openpitrix.settings import Settings

KEY_FILE = "secret.key"


class SecretError(Exception):
    """A stored secret no configured key can open (a key was dropped too early)."""


class SecretBox:
    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._fernet = MultiFernet([Fernet(k) for k in keys])
        self._newest = Fernet(keys[0])

    def seal(self, value: dict[str, Any]) -> str:
        return self._fernet.encrypt(orjson.dumps(value)).decode()

    def open(self, token: str) -> dict[str, Any]:
        try:
            value = orjson.loads(self._fernet.decrypt(token.encode()))
        except InvalidToken as exc:
            raise SecretError("no configured key decrypts this secret") from exc
        if not isinstance(value, dict):
            raise SecretError("a stored secret is not an object")
        return value

    def is_current(self, token: str) -> bool:
        """Whether the newest key alone opens `token`, so resealing it would change nothing."""
        try:
            self._newest.decrypt(token.encode())
        except InvalidToken:
            return False
        return True

    def reseal(self, token: str) -> str:
        """Re-encrypt under the newest key (rotation)."""
        try:
            return self._fernet.rotate(token.encode()).decode()
        except InvalidToken as exc:
            raise SecretError("no configured key decrypts this secret") from exc


def generate_key() -> str:
    return Fernet.generate_key().decode()


def _key_file(path: Path) -> bytes:
    """Read the key file, creating it once (mode 0600) if it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(Fernet.generate_key())
    return path.read_bytes().strip()


def load_secret_box(settings: Settings) -> SecretBox:
    keys = [k.get_secret_value().encode() for k in settings.auth.secret_keys]
    if not keys:
        keys = [_key_file(settings.data_dir.resolve() / KEY_FILE)]
    return SecretBox(keys)
