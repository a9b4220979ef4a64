"""QingCloud IaaS request signing, signature version 1 (HMAC-SHA256 over the sorted query).

The string to sign is `METHOD\\nPATH\\nQUERY`, where QUERY is every parameter but `signature`,
sorted by name (byte order), each name and value percent-encoded in UTF-8 with upper-case hex,
a space as `%20` (never `+`), only `-_.~` and alphanumerics left as they are. The signature is
the base64 of the HMAC-SHA256 digest under the secret access key, sent as `signature`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Mapping
from datetime import UTC, datetime
from urllib.parse import quote

SIGNATURE_METHOD = "HmacSHA256"
SIGNATURE_VERSION = 1
API_VERSION = 1


def encode(text: str) -> str:
    """Percent-encode one name or value the way the signature defines it."""
    return quote(text, safe="-_.~")


def canonical_query(params: Mapping[str, str]) -> str:
    """The sorted, encoded query the signature covers (everything but `signature` itself)."""
    # Names are sorted as the server sorts them: by their UTF-8 bytes, before encoding.
    names = sorted((name for name in params if name != "signature"), key=lambda n: n.encode())
    return "&".join(f"{encode(name)}={encode(params[name])}" for name in names)


def string_to_sign(method: str, path: str, params: Mapping[str, str]) -> str:
    return f"{method.upper()}\n{path}\n{canonical_query(params)}"


def signature(secret_access_key: str, method: str, path: str, params: Mapping[str, str]) -> str:
    """The base64 HMAC-SHA256 signature of a request (not yet URL-encoded)."""
    digest = hmac.new(
        secret_access_key.encode(),
        string_to_sign(method, path, params).encode(),
        hashlib.sha256,
    ).digest()
    return base64.b64encode(digest).decode().strip()


def time_stamp(now: datetime | None = None) -> str:
    """The `time_stamp` parameter: ISO 8601 in UTC to the second (`2013-08-27T14:30:10Z`)."""
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def sign_params(
    params: Mapping[str, str],
    *,
    access_key_id: str,
    secret_access_key: str,
    method: str,
    path: str,
    now: datetime | None = None,
) -> dict[str, str]:
    """The parameters of a request with the common ones and the signature added."""
    signed = {
        **params,
        "access_key_id": access_key_id,
        "signature_method": SIGNATURE_METHOD,
        "signature_version": str(SIGNATURE_VERSION),
        "version": str(API_VERSION),
        "time_stamp": time_stamp(now),
    }
    signed["signature"] = signature(secret_access_key, method, path, signed)
    return signed


def encoded_query(params: Mapping[str, str]) -> str:
    """The full query of a signed request: the canonical query, then the signature (whose `+`,
    `/` and `=` are encoded like any other value)."""
    return f"{canonical_query(params)}&signature={encode(params['signature'])}"
