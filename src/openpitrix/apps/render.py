"""Render a VM app version: its package fetched with the repo's credential, the user's settings
checked against config.json, and cluster.json.tmpl rendered into the spec a deploy creates."""

from __future__ import annotations

import asyncio
from typing import Any, Final

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from openpitrix.apps.models import AppVersion, PackageKind
from openpitrix.apps.packages import version_package
from openpitrix.apps.schemas import RenderedCluster
from openpitrix.apps.service import get_version
from openpitrix.crypto import SecretBox
from openpitrix.errors import AppError, Conflict, NotFound
from openpitrix.iam.access import Access
from openpitrix.netguard import ADDRESS_NOT_ALLOWED
from openpitrix.providers.base import ProviderError
from openpitrix.providers.vm.package import (
    load_package,
    render_cluster,
    settings_for,
)
from openpitrix.repos.models import Repo

NOT_A_VM_PACKAGE: Final = "not_a_vm_package"


class PackageUnavailable(AppError):
    """The version's package could not be fetched from its repo."""

    status_code = 502
    code = "package_unavailable"


async def fetch_vm_package(
    http: httpx.AsyncClient, secrets: SecretBox, version: AppVersion, repo: Repo
) -> bytes:
    """The package bytes of a version (`version_package`), its failures as the API's."""
    try:
        return await version_package(http, secrets, version, repo)
    except ProviderError as exc:
        if exc.code == ADDRESS_NOT_ALLOWED:
            raise AppError(exc.message, code=ADDRESS_NOT_ALLOWED) from None
        if exc.code == "secret_unreadable":
            raise PackageUnavailable(exc.message, code=exc.code) from None
        raise PackageUnavailable(exc.message) from None


async def render_version(
    session: AsyncSession,
    http: httpx.AsyncClient,
    secrets: SecretBox,
    version_id: str,
    access: Access,
    conf: dict[str, Any],
) -> RenderedCluster:
    """The cluster spec a deploy of this VM version with `conf` would create."""
    await get_version(session, version_id, access)  # exists and the caller may see it
    version = await session.get(AppVersion, version_id)
    assert version is not None
    if version.package_kind != PackageKind.VM:
        raise Conflict(
            f"app version {version_id} is a {version.package_kind} package, not a VM package",
            code=NOT_A_VM_PACKAGE,
            details={"package_kind": version.package_kind},
        )
    repo = await session.get(Repo, version.repo_id)
    if repo is None:
        raise NotFound("repo", version.repo_id)
    data = await fetch_vm_package(http, secrets, version, repo)
    # Unpacking and rendering are CPU work on bounded input: off the event loop.
    package = await asyncio.to_thread(load_package, data)
    spec = await asyncio.to_thread(render_cluster, package, conf)
    filled = settings_for(package, conf)
    return RenderedCluster(
        version_id=version_id,
        package_kind=PackageKind.VM,
        conf=filled,
        cluster=spec,
    )
