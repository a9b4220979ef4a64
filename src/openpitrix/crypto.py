"""Secrets at rest: Fernet encryption with key rotation (MultiFernet).

New writes use the newest key; every configured key still decrypts, so an operator rotates by
putting a new key first and keeping the old ones until `openpitrix secrets rotate` re-encrypted
the stored rows.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Callable
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


def read_or_create_key_file(path: Path, make: Callable[[], bytes]) -> bytes:
    """Read a key file, creating it (mode 0600) with `make()` if it does not exist yet.

    Every process sharing the data dir must use the same key, so the first one to start writes
    it and the others read it back. The key is written in full under a private name, then
    linked into place: link() fails when the file exists, so of two racing processes the first
    key wins and nobody ever reads a half-written (or empty) file.
    """
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(make())
                fh.flush()
                os.fsync(fh.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return path.read_bytes().strip()


def load_secret_box(settings: Settings) -> SecretBox:
    keys = [k.get_secret_value().encode() for k in settings.auth.secret_keys]
    if not keys:
        path = settings.data_dir.resolve() / KEY_FILE
        key = read_or_create_key_file(path, Fernet.generate_key)
        if not key:
            raise RuntimeError(f"{path} holds no key; delete it to make a new one")
        keys = [key]
    return SecretBox(keys)
