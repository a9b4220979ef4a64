"""An app version's package (a chart, a VM package), fetched with its repo's credential through
the process's guarded client, size-capped: for cluster jobs, previews and the render endpoint."""

from __future__ import annotations

import httpx

from openpitrix.apps.models import AppVersion
from openpitrix.crypto import SecretBox, SecretError
from openpitrix.fetch import INDEX_TOO_LARGE, INDEX_TRUNCATED, REPO_TIMEOUT, FetchError, fetch
from openpitrix.netguard import ADDRESS_NOT_ALLOWED
from openpitrix.providers.base import EndpointRefused, ProviderError
from openpitrix.repos.models import Repo

MAX_PACKAGE_BYTES = 10 * 1024 * 1024


async def version_package(
    http: httpx.AsyncClient, secrets: SecretBox, version: AppVersion, repo: Repo
) -> bytes:
    """The package of a version, with the repo's credential, size-capped; failures are
    ProviderErrors as a job's task meets them (retryable where trying again may help)."""
    if not version.package_url:
        raise ProviderError("chart_unavailable", f"app version {version.version_id} has no package")
    try:
        secret = secrets.open(repo.credential_secret) if repo.credential_secret else None
    except SecretError:
        raise ProviderError(
            "secret_unreadable", "the repo credential cannot be decrypted"
        ) from None
    url = version.package_url
    try:
        fetched = await fetch(http, url, credential=secret, max_bytes=MAX_PACKAGE_BYTES, timeout=60)
    except FetchError as exc:
        raise _chart_error(exc) from None
    if fetched.status != 200:
        raise ProviderError("chart_unavailable", f"GET {url}: HTTP {fetched.status}")
    return fetched.body


def _chart_error(exc: FetchError) -> ProviderError:
    if exc.code == ADDRESS_NOT_ALLOWED:
        # The process's client is guarded like every other: a package URL that leads to an
        # internal address is refused, and trying again would not change that.
        return EndpointRefused(ADDRESS_NOT_ALLOWED, exc.message)
    if exc.status is not None:
        transient = exc.status >= 500 or exc.status == 429
        return ProviderError("chart_unavailable", exc.message, retryable=transient)
    if exc.code == INDEX_TOO_LARGE:
        return ProviderError("chart_unavailable", f"the package is over {MAX_PACKAGE_BYTES} bytes")
    # Network trouble (a reset, a timeout, a body cut short) may pass; a credential that no
    # header can carry, or a URL that cannot be requested, will not.
    transient = exc.code in (REPO_TIMEOUT, INDEX_TRUNCATED) or isinstance(
        exc.__cause__, httpx.HTTPError
    )
    return ProviderError("chart_unavailable", exc.message, retryable=transient)
