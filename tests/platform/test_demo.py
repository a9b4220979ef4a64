"""`openpitrix serve`'s local start: where the first admin's password is, and `--demo`'s chart
repo (charts Helm renders, a repo added once and kept across restarts)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import select, update
from sqlmodel import col

from openpitrix import demo
from openpitrix.cli import _prepare_local
from openpitrix.db.engine import Database
from openpitrix.iam import passwords
from openpitrix.iam.models import User
from openpitrix.jobs.models import Job
from openpitrix.providers.kubernetes.render import render_chart
from openpitrix.repos.models import Repo
from openpitrix.settings import Settings


async def _state(url: str) -> tuple[list[Repo], list[Job], list[User]]:
    db = Database(url)
    try:
        async with db.read_session() as session:
            repos = list((await session.execute(select(Repo))).scalars())
            jobs = list(
                (await session.execute(select(Job).order_by(col(Job.create_time)))).scalars()
            )
            users = list((await session.execute(select(User))).scalars())
        return repos, jobs, users
    finally:
        await db.dispose()


async def test_the_generated_password_is_written_0600_and_pointed_at_on_every_start(
    fresh_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=fresh_database)
    password_file = (tmp_path / "admin-password").resolve()
    with caplog.at_level(logging.WARNING):
        await _prepare_local(settings, demo=False)
    assert password_file.stat().st_mode & 0o777 == 0o600
    [admin] = (await _state(fresh_database))[2]
    assert (admin.email, admin.role) == ("admin@localhost", "admin")
    assert passwords.verify_password(admin.password_hash, password_file.read_text().strip())
    assert f"its password is in {password_file}" in caplog.text
    assert password_file.read_text().strip() not in caplog.text  # the path, never the password

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        await _prepare_local(settings, demo=False)
    assert f"log in as email=admin@localhost with the password in {password_file}" in caplog.text
    assert len((await _state(fresh_database))[2]) == 1

    # Once the file no longer holds the admin's password, the log stops pointing at it.
    password_file.write_text("not-the-password-any-more\n")
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        await _prepare_local(settings, demo=False)
    assert "with the password in" not in caplog.text


async def test_a_given_admin_password_is_used_and_no_file_is_written(
    fresh_database: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(
        data_dir=tmp_path,
        database_url=fresh_database,
        bootstrap_admin_password=SecretStr("local-admin-pw-1"),
    )
    await _prepare_local(settings, demo=False)
    [admin] = (await _state(fresh_database))[2]
    assert passwords.verify_password(admin.password_hash, "local-admin-pw-1")
    assert not (tmp_path / "admin-password").exists()

    # Given again once users exist, it changes nothing, and the log says so.
    other = settings.model_copy(update={"bootstrap_admin_password": SecretStr("other-pw-2345")})
    with caplog.at_level(logging.WARNING):
        await _prepare_local(other, demo=False)
    [admin] = (await _state(fresh_database))[2]
    assert passwords.verify_password(admin.password_hash, "local-admin-pw-1")
    assert "the given admin password was not applied" in caplog.text


async def test_the_demo_repo_is_added_once_and_follows_the_gateways_address(
    fresh_database: str, tmp_path: Path
) -> None:
    settings = Settings(data_dir=tmp_path, database_url=fresh_database, port=9300)
    await _prepare_local(settings, demo=True)
    [repo], [job], [admin] = await _state(fresh_database)
    assert (repo.name, repo.owner, repo.url) == (
        "demo",
        admin.user_id,
        "http://127.0.0.1:9300/demo-charts",
    )
    assert (job.resource_id, job.action) == (repo.repo_id, "index_repo")
    index = json.loads((tmp_path / "demo-charts" / "index.yaml").read_text())
    assert {
        name: [v["version"] for v in versions] for name, versions in index["entries"].items()
    } == {
        "hello": ["0.1.0", "0.2.0"],
        "notes": ["1.0.0"],
    }
    stamp = (tmp_path / "demo-charts" / "hello-0.2.0.tgz").stat().st_mtime_ns

    # A restart on the same address changes nothing: no second repo, no new job, same files.
    await _prepare_local(settings, demo=True)
    repos, jobs, _ = await _state(fresh_database)
    assert [r.repo_id for r in repos] == [repo.repo_id] and len(jobs) == 1
    assert (tmp_path / "demo-charts" / "hello-0.2.0.tgz").stat().st_mtime_ns == stamp

    # On another port (or host) the repo follows, and is indexed there (once the first index
    # job has ended, as it has by any restart).
    db = Database(fresh_database)
    try:
        async with db.transaction() as session:
            await session.execute(update(Job).values(status="successful"))
            await session.execute(update(Repo).values(index_job_id=None))
    finally:
        await db.dispose()
    moved = settings.model_copy(update={"host": "0.0.0.0", "port": 9301})
    await _prepare_local(moved, demo=True)
    [repo], jobs, _ = await _state(fresh_database)
    assert repo.url == "http://127.0.0.1:9301/demo-charts"
    assert len(jobs) == 2 and repo.index_job_id == jobs[1].job_id


@pytest.mark.parametrize("chart", demo.CHARTS, ids=lambda c: f"{c.name}-{c.version}")
async def test_the_demo_charts_render_with_helm(chart: demo.DemoChart) -> None:
    rendered = await render_chart(
        chart.package(), release_name="cl-demo", namespace="team", values={"replicaCount": 2}
    )
    assert (rendered.chart_name, rendered.chart_version) == (chart.name, chart.version)
    kinds = sorted(o["kind"] for o in rendered.manifests)
    assert kinds == (["ConfigMap", "Deployment"] if chart.name == "hello" else ["ConfigMap"])
    assert chart.package() == chart.package()  # byte-identical, so digests hold across starts
