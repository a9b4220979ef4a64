"""Secrets at rest: what is stored is ciphertext, rotation keeps old rows readable, and a
server whose keys cannot open a secret says so instead of failing obscurely."""

from __future__ import annotations

import asyncio
import os
import stat
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, text
from sqlmodel import col

from openpitrix.crypto import SecretBox, SecretError, generate_key, load_secret_box
from openpitrix.db.engine import Database
from openpitrix.db.migrate import upgrade
from openpitrix.repos.models import Repo
from openpitrix.settings import Settings
from tests.conftest import LiveServer, make_settings, unique
from tests.helpers import create_repo, wait_job
from tests.support.http_repo import RepoServer


def test_sealed_secret_opens_and_hides_its_content() -> None:
    box = SecretBox([generate_key().encode()])
    sealed = box.seal({"username": "bob", "password": "hunter2-long"})
    assert "hunter2" not in sealed and "bob" not in sealed
    assert box.open(sealed) == {"username": "bob", "password": "hunter2-long"}


def test_rotation_keeps_old_secrets_readable_and_reseals_under_the_new_key() -> None:
    old, new = generate_key().encode(), generate_key().encode()
    sealed_before = SecretBox([old]).seal({"token": "t-1"})
    rotated = SecretBox([new, old])
    assert rotated.open(sealed_before) == {"token": "t-1"}
    resealed = rotated.reseal(sealed_before)
    assert SecretBox([new]).open(resealed) == {"token": "t-1"}  # the old key can now go
    with pytest.raises(SecretError):
        SecretBox([new]).open(sealed_before)


def test_key_file_is_created_private_once_and_reused(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = load_secret_box(settings)
    key_file = tmp_path / "secret.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    sealed = first.seal({"password": "x"})
    assert load_secret_box(Settings(data_dir=tmp_path)).open(sealed) == {"password": "x"}


async def test_repo_credential_is_stored_encrypted(
    client: httpx.AsyncClient, chart_repo: RepoServer, db: Database, settings: Settings
) -> None:
    repo = await create_repo(
        client,
        unique(),
        chart_repo.url,
        credential={"username": "alice", "password": "pa55-word-in-db"},
    )
    await wait_job(client, repo["index_job_id"])
    async with db.read_session() as session:
        stored = (
            await session.execute(
                select(col(Repo.credential_secret)).where(col(Repo.repo_id) == repo["repo_id"])
            )
        ).scalar_one()
        raw_row = (
            await session.execute(
                text("SELECT * FROM repos WHERE repo_id = :id"), {"id": repo["repo_id"]}
            )
        ).one()
    assert stored is not None
    assert all("pa55-word-in-db" not in str(v) for v in raw_row)
    assert load_secret_box(settings).open(stored) == {
        "username": "alice",
        "password": "pa55-word-in-db",
    }


async def test_rotated_keys_still_index_repos_saved_under_the_old_key(
    chart_repo: RepoServer,
    database_url: str,
    nats_url: str,
    tmp_path: Path,
    admin_headers: dict[str, str],
) -> None:
    old, new = generate_key(), generate_key()

    def with_keys(*keys: str) -> Settings:
        base = make_settings(database_url, nats_url, tmp_path / "data")
        auth = base.auth.model_copy(update={"secret_keys": [SecretStr(k) for k in keys]})
        return base.model_copy(update={"auth": auth})

    async with (
        LiveServer(with_keys(old)) as live,
        httpx.AsyncClient(base_url=live.url, headers=admin_headers) as http,
    ):
        repo = await create_repo(
            http, unique(), chart_repo.url, credential={"token": "bearer-token-123"}
        )
        assert (await wait_job(http, repo["index_job_id"]))["status"] == "successful"

    seen = len(chart_repo.headers)
    async with (
        LiveServer(with_keys(new, old)) as live,
        httpx.AsyncClient(base_url=live.url, headers=admin_headers) as http,
    ):
        job = (await http.post(f"/v1/repos/{repo['repo_id']}/index", json={"force": True})).json()
        assert (await wait_job(http, job["job_id"]))["status"] == "successful"
    sent = [h.get("authorization") for h in chart_repo.headers[seen:]]
    assert "Bearer bearer-token-123" in sent, sent

    # Without the old key the secret cannot be opened: the job says so plainly.
    async with (
        LiveServer(with_keys(new)) as live,
        httpx.AsyncClient(base_url=live.url, headers=admin_headers) as http,
    ):
        job = (await http.post(f"/v1/repos/{repo['repo_id']}/index", json={"force": True})).json()
        done = await wait_job(http, job["job_id"])
    assert done["status"] == "failed"
    assert done["error"]["code"] == "secret_unreadable"


async def test_migration_encrypts_credentials_stored_before_it(
    empty_database: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    key = generate_key()
    monkeypatch.setenv("OPENPITRIX_AUTH__SECRET_KEYS", f'["{key}"]')
    await asyncio.to_thread(upgrade, empty_database, "0002")
    db = Database(empty_database)
    try:
        async with db.transaction() as session:
            await session.execute(
                text(
                    "INSERT INTO repos (repo_id, name, description, type, url, providers, labels,"
                    " selectors, visibility, app_default_status, credential, status, owner,"
                    " owner_path, app_count, version_count, create_time, update_time,"
                    " status_time) VALUES ('repo-c', 'c', '', 'http', 'http://x', '[]', '[]',"
                    " '[]', 'public', 'active', :cred, 'active', 's', 'root', 0, 0, :now, :now,"
                    " :now)"
                ),
                {"cred": '{"username": "u", "password": "plain-old-secret"}', "now": _now()},
            )
        await asyncio.to_thread(upgrade, empty_database)
        async with db.read_session() as session:
            row = (await session.execute(text("SELECT * FROM repos"))).mappings().one()
        assert "credential" not in row
        assert "plain-old-secret" not in str(dict(row))
        assert SecretBox([key.encode()]).open(row["credential_secret"]) == {
            "username": "u",
            "password": "plain-old-secret",
        }
    finally:
        await db.dispose()


def _now() -> object:
    from openpitrix.db.types import utcnow

    return utcnow()
