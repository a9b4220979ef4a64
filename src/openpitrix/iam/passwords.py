"""Password hashing with argon2id, the password policy, and timing-safe verification."""

from __future__ import annotations

import asyncio
import functools
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8
MAX_LENGTH = 128

# argon2-cffi's defaults are RFC 9106's low-memory argon2id profile (64 MiB, 3 passes).
_hasher = PasswordHasher()


class PasswordPolicyError(ValueError):
    """The password breaks the policy (length)."""


def check_policy(password: str) -> None:
    # The upper bound keeps a single request from making the server hash megabytes.
    if not MIN_LENGTH <= len(password) <= MAX_LENGTH:
        raise PasswordPolicyError(f"a password must have {MIN_LENGTH} to {MAX_LENGTH} characters")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    """argon2 compares digests in constant time; a malformed stored hash counts as a mismatch."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    """True when the hash was made with weaker parameters than the current ones."""
    try:
        return _hasher.check_needs_rehash(password_hash)
    except InvalidHashError:
        return True


@functools.cache
def _dummy_hash() -> str:
    return _hasher.hash(secrets.token_urlsafe(16))


def verify_dummy(password: str) -> None:
    """Spend the time a real verification costs, so an unknown email answers as slowly as a
    wrong password and response timing does not reveal which emails have accounts."""
    verify_password(_dummy_hash(), password)


def generate_password() -> str:
    return secrets.token_urlsafe(18)


# argon2 burns ~50 ms of CPU by design: run it in a thread so the event loop keeps serving.
async def hash_password_async(password: str) -> str:
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    if password_hash is None:
        await asyncio.to_thread(verify_dummy, password)
        return False
    return await asyncio.to_thread(verify_password, password_hash, password)
