"""No password, token or stored secret ever reaches the logs."""

from __future__ import annotations

import logging

import httpx
import pytest

from openpitrix.db.engine import Database
from tests.conftest import unique
from tests.helpers import create_repo, wait_job
from tests.iam.conftest import Account, login, make_user, token_request
from tests.support.http_repo import RepoServer


async def test_secrets_and_tokens_stay_out_of_the_logs(
    anon: httpx.AsyncClient,
    db: Database,
    admin: Account,
    chart_repo: RepoServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    account = await login(anon, await make_user(db))
    secrets = [account.password, account.access_token, account.refresh_token]
    refreshed = await token_request(
        anon, grant_type="refresh_token", refresh_token=account.refresh_token
    )
    secrets += [refreshed.json()["access_token"], refreshed.json()["refresh_token"]]
    # A failed login with a password-like string, and a reused (revoked) refresh token.
    await token_request(anon, grant_type="password", username=account.email, password="Wr0ng-pw!")
    secrets.append("Wr0ng-pw!")
    await token_request(anon, grant_type="refresh_token", refresh_token=account.refresh_token)

    made = await anon.post("/v1/api-clients", json={"name": "ci"}, headers=admin.headers)
    client_secret = made.json()["client_secret"]
    secrets.append(client_secret)
    await token_request(
        anon,
        grant_type="client_credentials",
        client_id=made.json()["client_id"],
        client_secret=client_secret,
    )
    repo_token = "repo-credential-s3cr3t"
    secrets.append(repo_token)
    admin_http = httpx.AsyncClient(base_url=str(anon.base_url), headers=admin.headers)
    async with admin_http:
        repo = await create_repo(
            admin_http, unique(), chart_repo.url, credential={"token": repo_token}
        )
        await wait_job(admin_http, repo["index_job_id"])
    # The repo server did receive the credential: the logs simply do not carry it.
    assert any(repo_token in h.get("authorization", "") for h in chart_repo.headers)

    assert caplog.records, "nothing was logged: the check below would prove nothing"
    text = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    leaked = [s[:6] + "..." for s in secrets if s in text]
    assert not leaked, f"secrets found in logs: {leaked}"
