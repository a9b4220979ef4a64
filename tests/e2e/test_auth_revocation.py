"""A revocation made through one gateway process holds on every other one: the token check's
cached facts are dropped by the bus broadcast, not only when their time is up."""

from __future__ import annotations

import asyncio

import httpx

from openpitrix.iam.schemas import Role
from tests.e2e.procs import Processes
from tests.support.auth import bearer, create_account, mint_token

# Longer than the test waits (20 s): only the broadcast can make the second gateway see the changes.
LONG_CACHE = "60"


async def _until_status(
    http: httpx.AsyncClient, path: str, headers: dict[str, str], status: int
) -> int:
    """The status of `GET path` once it is `status`, or the last one seen after 20 s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 20
    while True:
        got = (await http.get(path, headers=headers)).status_code
        if got == status or loop.time() > deadline:
            return got
        await asyncio.sleep(0.05)


async def test_deleted_user_demoted_admin_and_revoked_client_are_refused_by_another_gateway(
    procs: Processes, database_url: str
) -> None:
    changer = await procs.api(OPENPITRIX_AUTH__CHECK_CACHE_SECONDS=LONG_CACHE)
    checker = await procs.api(OPENPITRIX_AUTH__CHECK_CACHE_SECONDS=LONG_CACHE)
    admin = bearer(mint_token(await create_account(database_url, Role.ADMIN), Role.ADMIN))
    victim = bearer(mint_token(await create_account(database_url, Role.DEVELOPER), Role.DEVELOPER))
    demoted_id = await create_account(database_url, Role.ADMIN)
    demoted = bearer(mint_token(demoted_id, Role.ADMIN))
    owner = bearer(mint_token(await create_account(database_url, Role.DEVELOPER), Role.DEVELOPER))
    async with (
        httpx.AsyncClient(base_url=changer.url, timeout=30) as via_changer,
        httpx.AsyncClient(base_url=checker.url, timeout=30) as via_checker,
    ):
        made = await via_changer.post("/v1/api-clients", json={"name": "ci"}, headers=owner)
        assert made.status_code == 201, made.text
        client = made.json()
        token = await via_changer.post(
            "/v1/oauth2/token",
            data={
                "grant_type": "client_credentials",
                "client_id": client["client_id"],
                "client_secret": client["client_secret"],
            },
        )
        assert token.status_code == 200, token.text
        as_client = bearer(token.json()["access_token"])
        victim_id = (await via_checker.get("/v1/users/me", headers=victim)).json()["user_id"]

        # The checker has read (and cached) every one of them as valid.
        assert (await via_checker.get("/v1/users/me", headers=victim)).status_code == 200
        assert (await via_checker.get("/v1/users", headers=demoted)).status_code == 200
        assert (await via_checker.get("/v1/users/me", headers=as_client)).status_code == 200

        deleted = await via_changer.delete(f"/v1/users/{victim_id}", headers=admin)
        assert deleted.status_code == 204, deleted.text
        demote = await via_changer.patch(
            f"/v1/users/{demoted_id}", json={"role": "user"}, headers=admin
        )
        assert demote.status_code == 200, demote.text
        revoked = await via_changer.delete(f"/v1/api-clients/{client['client_id']}", headers=owner)
        assert revoked.status_code == 204, revoked.text

        assert await _until_status(via_checker, "/v1/users/me", victim, 401) == 401
        assert await _until_status(via_checker, "/v1/users", demoted, 403) == 403
        assert await _until_status(via_checker, "/v1/users/me", as_client, 401) == 401
        # Still valid callers are not caught up in it.
        assert (await via_checker.get("/v1/users/me", headers=owner)).status_code == 200
