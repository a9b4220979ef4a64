"""`openpitrix secrets rotate`: after it, the newest key alone opens every stored secret, so the
operator can drop the old one; rows it cannot open, or that changed meanwhile, stay as they are."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select, update
from sqlmodel import col

from openpitrix.crypto import SecretBox, SecretError, generate_key
from openpitrix.db.engine import Database
from openpitrix.models import metadata
from openpitrix.repos.models import Repo
from openpitrix.secrets_rotation import SECRET_COLUMNS, reseal_row, rotate_secrets
from tests.conftest import unique
from tests.e2e.procs import OPENPITRIX

REPOS_CREDENTIAL = SECRET_COLUMNS[0]


@pytest.fixture
async def own_db(fresh_database: str) -> AsyncIterator[Database]:
    """A database of its own: rotation walks whole tables, other tests' rows would count."""
    database = Database(fresh_database)
    yield database
    await database.dispose()


async def _add_repo(db: Database, secret: str | None) -> str:
    repo_id = unique("repo")
    async with db.transaction() as session:
        session.add(
            Repo(
                repo_id=repo_id,
                name=repo_id,
                type="http",
                url="http://charts.invalid",
                credential_secret=secret,
            )
        )
    return repo_id


async def _secrets(db: Database) -> dict[str, str | None]:
    async with db.read_session() as session:
        rows = await session.execute(select(col(Repo.repo_id), col(Repo.credential_secret)))
        return {repo_id: secret for repo_id, secret in rows.all()}


async def _run_cli(database_url: str, keys: list[str], *args: str) -> tuple[int, str, str]:
    """Run `openpitrix secrets rotate` in its own process: (exit code, summary line, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENPITRIX_")}
    env |= {
        "OPENPITRIX_DATABASE_URL": database_url,
        "OPENPITRIX_AUTH__SECRET_KEYS": json.dumps(keys),
    }
    proc = await asyncio.create_subprocess_exec(
        *OPENPITRIX,
        "secrets",
        "rotate",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode is not None
    # The summary is the command's last line on stdout.
    lines = out.decode().strip().splitlines()
    return proc.returncode, lines[-1] if lines else "", err.decode()


def test_every_registered_secret_column_exists_in_the_schema() -> None:
    for column in SECRET_COLUMNS:
        table = metadata.tables[column.table]
        assert [c.name for c in table.primary_key.columns] == [column.id_column]
        assert column.secret_column in table.c


async def test_rotation_leaves_every_secret_readable_by_the_new_key_alone(
    own_db: Database,
) -> None:
    old, new = generate_key().encode(), generate_key().encode()
    before = SecretBox([old])
    values = {await _add_repo(own_db, before.seal({"token": f"t-{i}"})): f"t-{i}" for i in range(7)}
    no_credential = await _add_repo(own_db, None)

    # A batch smaller than the table: the walk must page through every row exactly once.
    report = await rotate_secrets(own_db, SecretBox([new, old]), batch_size=3)

    assert (report.rotated, report.current, report.changed, report.unreadable) == (7, 0, 0, [])
    stored = await _secrets(own_db)
    only_new = SecretBox([new])
    for repo_id, token in values.items():
        secret = stored[repo_id]
        assert secret is not None
        assert only_new.open(secret) == {"token": token}
    assert stored[no_credential] is None

    # A second run finds nothing to do: that is how an operator checks before dropping `old`.
    again = await rotate_secrets(own_db, SecretBox([new, old]), batch_size=3)
    assert (again.rotated, again.current, again.unreadable) == (0, 7, [])
    assert await _secrets(own_db) == stored


async def test_guarded_update_keeps_a_credential_changed_after_it_was_read(
    own_db: Database,
) -> None:
    old, new = generate_key().encode(), generate_key().encode()
    box = SecretBox([new, old])
    repo_id = await _add_repo(own_db, SecretBox([old]).seal({"password": "before"}))
    read_token = (await _secrets(own_db))[repo_id]
    assert read_token is not None
    stale_reseal = box.reseal(read_token)

    # The user changes the credential between rotation's read and its write.
    changed = box.seal({"password": "after"})
    async with own_db.transaction() as session:
        await session.execute(
            update(Repo).where(col(Repo.repo_id) == repo_id).values(credential_secret=changed)
        )

    async with own_db.transaction() as session:
        written = await reseal_row(session, REPOS_CREDENTIAL, repo_id, read_token, stale_reseal)
    assert written is False
    assert (await _secrets(own_db))[repo_id] == changed

    # The same call with the token the row really holds does write.
    fresh_reseal = box.reseal(changed)
    async with own_db.transaction() as session:
        assert await reseal_row(session, REPOS_CREDENTIAL, repo_id, changed, fresh_reseal)
    assert (await _secrets(own_db))[repo_id] == fresh_reseal


async def test_cli_dry_run_writes_nothing_then_rotation_reseals(
    own_db: Database, fresh_database: str
) -> None:
    old, new = generate_key(), generate_key()
    first = await _add_repo(own_db, SecretBox([old.encode()]).seal({"token": "one"}))
    second = await _add_repo(own_db, SecretBox([old.encode()]).seal({"token": "two"}))
    current = await _add_repo(own_db, SecretBox([new.encode()]).seal({"token": "three"}))
    before = await _secrets(own_db)

    code, out, err = await _run_cli(fresh_database, [new, old], "--dry-run")
    assert code == 0, err
    assert out.startswith("rotated=2 unreadable=0 current=1 changed=0"), (out, err)
    assert "dry run" in out
    assert await _secrets(own_db) == before

    code, out, err = await _run_cli(fresh_database, [new, old])
    assert code == 0, err
    assert out == "rotated=2 unreadable=0 current=1 changed=0", (out, err)
    after = await _secrets(own_db)
    assert after[current] == before[current]
    only_new = SecretBox([new.encode()])
    for repo_id, token in ((first, "one"), (second, "two"), (current, "three")):
        secret = after[repo_id]
        assert secret is not None
        assert only_new.open(secret) == {"token": token}


async def test_cli_reports_unreadable_rows_leaves_them_and_exits_1(
    own_db: Database, fresh_database: str
) -> None:
    old, new, lost = generate_key(), generate_key(), generate_key()
    readable = await _add_repo(own_db, SecretBox([old.encode()]).seal({"token": "kept"}))
    orphan_token = SecretBox([lost.encode()]).seal({"token": "sealed-with-a-dropped-key"})
    orphan = await _add_repo(own_db, orphan_token)

    code, out, err = await _run_cli(fresh_database, [new, old])

    assert code == 1, (out, err)
    assert out == "rotated=1 unreadable=1 current=0 changed=0", (out, err)
    assert f"unreadable: repos/{orphan}" in err
    after = await _secrets(own_db)
    assert after[orphan] == orphan_token
    readable_secret = after[readable]
    assert readable_secret is not None
    assert SecretBox([new.encode()]).open(readable_secret) == {"token": "kept"}
    with pytest.raises(SecretError):
        SecretBox([new.encode(), old.encode()]).open(orphan_token)
