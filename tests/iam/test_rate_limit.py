"""Login rate limits: per account and per client address, shared by gateway replicas via NATS."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import nats
import pytest

from openpitrix.bus.topology import ensure_topology
from openpitrix.db.engine import Database
from openpitrix.iam import passwords
from openpitrix.settings import AuthSettings, BusSettings, Settings
from tests.conftest import LiveServer, make_settings
from tests.iam.conftest import make_user, unique_email

WINDOW = 60


def limited_settings(database_url: str, nats_url: str, tmp_path: Path, **limits: int) -> Settings:
    """Test settings with the given login limits (others off) and a bucket of their own, so no
    other test's counts leak in."""
    base = make_settings(database_url, nats_url, tmp_path / "data")
    auth = AuthSettings.model_validate(
        {
            "login_failures_per_account": 0,
            "login_attempts_per_address": 0,
            "login_account_window_seconds": WINDOW,
            "login_address_window_seconds": WINDOW,
            **limits,
        }
    )
    bus = base.bus.model_copy(update={"login_limits_bucket": f"LOGIN_{uuid.uuid4().hex[:10]}"})
    return base.model_copy(update={"auth": auth, "bus": bus})


@pytest.fixture
def verifications(monkeypatch: pytest.MonkeyPatch) -> list[str | None]:
    """Every argon2 verification the token endpoint runs (the stored hash, None for the dummy
    one of an unknown account)."""
    calls: list[str | None] = []
    real = passwords.verify_password_async

    async def counting(password_hash: str | None, password: str) -> bool:
        calls.append(password_hash)
        return await real(password_hash, password)

    monkeypatch.setattr(passwords, "verify_password_async", counting)
    return calls


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        LiveServer(settings, run_workers=False) as live,
        httpx.AsyncClient(base_url=live.url, timeout=30) as http,
    ):
        yield http


async def password_login(
    client: httpx.AsyncClient, email: str, password: str, address: str | None = None
) -> httpx.Response:
    # uvicorn trusts X-Forwarded-For from loopback by default, as it would from a local proxy.
    headers = {"X-Forwarded-For": address} if address else {}
    return await client.post(
        "/v1/oauth2/token",
        data={"grant_type": "password", "username": email, "password": password},
        headers=headers,
    )


def assert_limited(resp: httpx.Response, window: int = WINDOW) -> int:
    assert resp.status_code == 429, resp.text
    assert resp.json() == {"error": "slow_down", "error_description": "too many login attempts"}
    assert resp.headers["cache-control"] == "no-store"
    retry_after = int(resp.headers["retry-after"])
    assert 0 < retry_after <= window
    return retry_after


async def test_account_is_locked_after_its_failures_even_for_the_right_password(
    database_url: str, nats_url: str, tmp_path: Path, db: Database, verifications: list[str | None]
) -> None:
    settings = limited_settings(database_url, nats_url, tmp_path, login_failures_per_account=3)
    account = await make_user(db)
    other = await make_user(db)
    async with served(settings) as client:
        for _ in range(3):
            wrong = await password_login(client, account.email.upper(), "not-the-password")
            assert wrong.status_code == 400, wrong.text
        assert len(verifications) == 3

        retry_after = assert_limited(await password_login(client, account.email, account.password))
        # A fixed window that began moments ago: nearly all of it is left.
        assert retry_after >= WINDOW - 5
        assert len(verifications) == 3, "a limited login must not reach argon2"

        assert (await password_login(client, other.email, other.password)).status_code == 200


async def test_unknown_and_known_accounts_get_the_same_429(
    database_url: str, nats_url: str, tmp_path: Path, db: Database, verifications: list[str | None]
) -> None:
    settings = limited_settings(database_url, nats_url, tmp_path, login_failures_per_account=2)
    account = await make_user(db)
    unknown = unique_email("nobody")
    async with served(settings) as client:
        for email in (account.email, unknown) * 2:
            assert (await password_login(client, email, "wrong-password-1")).status_code == 400
        checked = len(verifications)
        known_answer = await password_login(client, account.email, account.password)
        unknown_answer = await password_login(client, unknown, "wrong-password-1")
        assert len(verifications) == checked
    assert_limited(known_answer)
    assert_limited(unknown_answer)
    assert known_answer.content == unknown_answer.content
    assert set(known_answer.headers) == set(unknown_answer.headers)
    retry_afters = (known_answer.headers["retry-after"], unknown_answer.headers["retry-after"])
    assert abs(int(retry_afters[0]) - int(retry_afters[1])) <= 1


async def test_address_limit_counts_every_attempt_and_spares_other_addresses(
    database_url: str, nats_url: str, tmp_path: Path, db: Database, verifications: list[str | None]
) -> None:
    settings = limited_settings(database_url, nats_url, tmp_path, login_attempts_per_address=3)
    account = await make_user(db)
    crowd = "203.0.113.7"
    async with served(settings) as client:
        # Successes count too, on different accounts: the limit is on the address.
        assert (await password_login(client, account.email, account.password, crowd)).is_success
        assert (await password_login(client, account.email, "wrong-pw-1", crowd)).status_code == 400
        assert (
            await password_login(client, unique_email(), "pw-whatever", crowd)
        ).status_code == 400
        checked = len(verifications)

        assert_limited(await password_login(client, account.email, account.password, crowd))
        assert len(verifications) == checked
        assert (
            await password_login(client, account.email, account.password, "198.51.100.9")
        ).is_success


async def test_an_ipv6_64_counts_as_one_address(
    database_url: str, nats_url: str, tmp_path: Path, db: Database
) -> None:
    settings = limited_settings(database_url, nats_url, tmp_path, login_attempts_per_address=1)
    account = await make_user(db)
    async with served(settings) as client:
        assert (
            await password_login(client, account.email, account.password, "2001:db8::1")
        ).is_success
        assert_limited(await password_login(client, account.email, account.password, "2001:db8::2"))
        assert (
            await password_login(client, account.email, account.password, "2001:db8:0:1::1")
        ).is_success


async def test_limits_are_shared_by_two_gateway_replicas(
    database_url: str, nats_url: str, tmp_path: Path, db: Database, verifications: list[str | None]
) -> None:
    settings = limited_settings(database_url, nats_url, tmp_path, login_failures_per_account=4)
    account = await make_user(db)
    async with (
        LiveServer(settings, run_workers=False) as first,
        LiveServer(settings, run_workers=False) as second,
        httpx.AsyncClient(base_url=first.url, timeout=30) as one,
        httpx.AsyncClient(base_url=second.url, timeout=30) as two,
    ):
        # Ten wrong guesses at once, split over both replicas: compare-and-set loses no count,
        # and counting before verifying lets exactly the limit through.
        answers = await asyncio.gather(
            *(
                password_login(c, account.email, f"guess-{i:04}")
                for i, c in enumerate([one, two] * 5)
            )
        )
        codes = sorted(a.status_code for a in answers)
        assert codes == [400] * 4 + [429] * 6
        assert len(verifications) == 4
        for client in (one, two):
            assert_limited(await password_login(client, account.email, account.password))


async def test_the_account_is_free_again_when_its_window_ends(
    database_url: str, nats_url: str, tmp_path: Path, db: Database
) -> None:
    settings = limited_settings(
        database_url,
        nats_url,
        tmp_path,
        login_failures_per_account=2,
        # Long enough for three Argon2 logins on a loaded machine (two xdist workers at once):
        # with 2 s the window could end before the third login was checked.
        login_account_window_seconds=5,
    )
    account = await make_user(db)
    async with served(settings) as client:
        for _ in range(2):
            assert (await password_login(client, account.email, "wrong-pw-1")).status_code == 400
        retry_after = assert_limited(
            await password_login(client, account.email, account.password), window=5
        )
        await asyncio.sleep(retry_after)  # rounded up, so the window has ended by then
        assert (await password_login(client, account.email, account.password)).is_success


async def test_a_success_gives_back_its_own_count_but_not_earlier_failures(
    database_url: str, nats_url: str, tmp_path: Path, db: Database
) -> None:
    settings = limited_settings(database_url, nats_url, tmp_path, login_failures_per_account=3)
    account = await make_user(db)
    async with served(settings) as client:
        for _ in range(2):
            assert (await password_login(client, account.email, "wrong-pw-1")).status_code == 400
        assert (await password_login(client, account.email, account.password)).is_success
        # Two failures still count: one more is allowed, and then the account is limited.
        assert (await password_login(client, account.email, "wrong-pw-1")).status_code == 400
        assert_limited(await password_login(client, account.email, account.password))


async def test_logins_go_on_unlimited_when_the_bucket_is_unavailable(
    database_url: str,
    nats_url: str,
    tmp_path: Path,
    db: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = limited_settings(
        database_url, nats_url, tmp_path, login_failures_per_account=1, login_attempts_per_address=1
    )
    account = await make_user(db)
    async with served(settings) as client:
        nc = await nats.connect(nats_url)
        try:
            await nc.jetstream().delete_key_value(settings.bus.login_limits_bucket)
        finally:
            await nc.close()
        with caplog.at_level(logging.WARNING, logger="openpitrix.iam.ratelimit"):
            for _ in range(3):
                assert (
                    await password_login(client, account.email, "wrong-pw-1")
                ).status_code == 400
            assert (await password_login(client, account.email, account.password)).is_success
    assert any("login limits unavailable" in r.getMessage() for r in caplog.records)


async def test_the_bucket_ttl_is_the_longest_login_window_and_follows_it(nats_url: str) -> None:
    bus = BusSettings(login_limits_bucket=f"LOGIN_{uuid.uuid4().hex[:10]}")
    stream = f"KV_{bus.login_limits_bucket}"
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await ensure_topology(js, bus, AuthSettings(login_account_window_seconds=300))
        assert (await js.stream_info(stream)).config.max_age == 900  # the address window's
        # A longer window set later stretches the bucket's TTL in place.
        await ensure_topology(js, bus, AuthSettings(login_address_window_seconds=3600))
        assert (await js.stream_info(stream)).config.max_age == 3600
        await js.delete_key_value(bus.login_limits_bucket)
    finally:
        await nc.close()
