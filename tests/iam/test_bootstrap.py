"""Setting up identity: the first admin, the signing key file, and `openpitrix users create`."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlmodel import select

from openpitrix.db.engine import Database
from openpitrix.errors import Conflict
from openpitrix.iam import service
from openpitrix.iam.bootstrap import DEFAULT_ADMIN_EMAIL, ensure_bootstrap_admin
from openpitrix.iam.models import User
from openpitrix.iam.schemas import Role, UserUpdate
from openpitrix.iam.tokens import KEY_FILE, load_signing_key, read_or_create_key
from openpitrix.settings import AuthSettings, Settings
from tests.conftest import LiveServer, make_settings
from tests.iam.conftest import Account, login, make_user, token_request, unique_email

OPENPITRIX = Path(sys.executable).parent / "openpitrix"


async def _users(db: Database) -> list[User]:
    async with db.read_session() as session:
        return list((await session.execute(select(User))).scalars().all())


async def test_concurrent_bootstraps_create_exactly_one_admin(
    fresh_database: str, settings: Settings
) -> None:
    # Separate engines stand in for separate processes starting at once.
    dbs = [Database(fresh_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(ensure_bootstrap_admin(d, settings) for d in dbs))
        generated = [r for r in results if r is not None]
        assert len(generated) == 1
        users = await _users(dbs[0])
        assert [(u.email, u.role, u.status) for u in users] == [
            (DEFAULT_ADMIN_EMAIL, "admin", "active")
        ]
        # Once a user exists, later starts do nothing.
        assert await ensure_bootstrap_admin(dbs[0], settings) is None
        assert len(await _users(dbs[0])) == 1
    finally:
        for d in dbs:
            await d.dispose()


async def test_serve_prints_the_generated_password_once_and_it_works(
    fresh_database: str,
    nats_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = make_settings(fresh_database, nats_url, tmp_path / "data")
    caplog.set_level(logging.WARNING, logger="openpitrix")
    for _ in range(2):  # a restart must not create or print anything again
        async with (
            LiveServer(settings, run_workers=False) as live,
            httpx.AsyncClient(base_url=live.url) as client,
        ):
            lines = [r.getMessage() for r in caplog.records if "first admin" in r.getMessage()]
            assert len(lines) == 1, lines
            password = lines[0].split("password=")[1].split()[0]
            admin = await login(client, Account("", DEFAULT_ADMIN_EMAIL, password))
            me = await client.get("/v1/users/me", headers=admin.headers)
            assert (me.json()["email"], me.json()["role"]) == (DEFAULT_ADMIN_EMAIL, "admin")


async def test_bootstrap_admin_from_settings_is_not_printed(
    fresh_database: str, settings: Settings
) -> None:
    email = unique_email("boot")
    configured = settings.model_copy(
        update={
            "bootstrap_admin_email": email,
            "bootstrap_admin_password": SecretStr("from-the-env-1"),
        }
    )
    db = Database(fresh_database)
    try:
        assert await ensure_bootstrap_admin(db, configured) is None
        users = await _users(db)
        assert [(u.email, u.role) for u in users] == [(email, "admin")]
    finally:
        await db.dispose()


async def test_the_last_active_admin_cannot_be_demoted_or_deleted(
    fresh_database: str, settings: Settings
) -> None:
    db = Database(fresh_database)
    try:
        await ensure_bootstrap_admin(db, settings)
        (admin,) = await _users(db)
        with pytest.raises(Conflict) as demote:
            async with db.transaction() as session:
                await service.update_user(session, admin.user_id, UserUpdate(role=Role.USER))
        assert demote.value.code == "last_admin"
        with pytest.raises(Conflict) as delete:
            async with db.transaction() as session:
                await service.delete_user(session, admin.user_id)
        assert delete.value.code == "last_admin"
        # With a second admin, the first may step down.
        async with db.transaction() as session:
            await service.create_user(
                session, email=unique_email(), name="Second", role=Role.ADMIN, password="pw-second1"
            )
        async with db.transaction() as session:
            user = await service.update_user(session, admin.user_id, UserUpdate(role=Role.USER))
        assert user.role == "user"
    finally:
        await db.dispose()


def test_jwt_key_is_made_once_private_and_shared(tmp_path: Path) -> None:
    path = tmp_path / "data" / KEY_FILE
    # Several processes starting together all end up with the same key.
    with ThreadPoolExecutor(8) as pool:
        keys = set(pool.map(lambda _: read_or_create_key(path), range(16)))
    assert len(keys) == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [KEY_FILE]  # no temp files left over
    settings = Settings(data_dir=tmp_path / "data")
    assert load_signing_key(settings) == keys.pop()
    configured = settings.model_copy(update={"auth": AuthSettings(jwt_secret=SecretStr("k" * 40))})
    assert load_signing_key(configured) == b"k" * 40


async def _me_status(settings: Settings, account: Account) -> int:
    async with (
        LiveServer(settings, run_workers=False) as live,
        httpx.AsyncClient(base_url=live.url) as client,
    ):
        if not account.headers:
            await login(client, account)
        return (await client.get("/v1/users/me", headers=account.headers)).status_code


async def test_servers_sharing_a_data_dir_accept_each_others_tokens(
    database_url: str, nats_url: str, tmp_path: Path, db: Database
) -> None:
    account = await make_user(db)
    # No configured signing secret: each data dir keeps its own key file.
    keyless = AuthSettings(login_attempts_per_address=0)
    shared = make_settings(database_url, nats_url, tmp_path / "shared", auth=keyless)
    elsewhere = make_settings(database_url, nats_url, tmp_path / "elsewhere", auth=keyless)
    assert await _me_status(shared, account) == 200  # logs in: writes the key file
    assert (tmp_path / "shared" / KEY_FILE).exists()
    assert await _me_status(shared, account) == 200  # a later process reuses it
    assert await _me_status(elsewhere, account) == 401  # another key refuses the token


async def _cli(database_url: str, *args: str, stdin: str = "") -> tuple[int, str, str]:
    env = {**os.environ, "OPENPITRIX_DATABASE_URL": database_url}
    proc = await asyncio.create_subprocess_exec(
        str(OPENPITRIX),
        "users",
        "create",
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate(stdin.encode())
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_cli_users_create_makes_a_user_who_can_log_in(
    database_url: str, client: httpx.AsyncClient
) -> None:
    email = unique_email("cli")
    code, out, err = await _cli(
        database_url,
        "--email",
        email,
        "--name",
        "Cli User",
        "--role",
        "isv",
        "--password-stdin",
        stdin="cli-s3cret-pw\n",
    )
    assert code == 0, err
    user_id = out.strip()
    assert user_id.startswith("usr-")
    assert "cli-s3cret-pw" not in out + err
    account = await login(client, Account(user_id, email, "cli-s3cret-pw"))
    me = (await client.get("/v1/users/me", headers=account.headers)).json()
    assert (me["user_id"], me["role"], me["name"]) == (user_id, "isv", "Cli User")

    code, _, err = await _cli(
        database_url, "--email", email.upper(), "--name", "Again", "--password", "another-pw1"
    )
    assert code == 1
    assert "already exists" in err
    code, _, _ = await _cli(
        database_url, "--email", unique_email(), "--name", "Short", "--password", "short"
    )
    assert code == 2
    bad = await token_request(client, grant_type="password", username=email, password="nope-nope")
    assert bad.json()["error"] == "invalid_grant"
