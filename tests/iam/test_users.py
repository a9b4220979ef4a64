"""The /v1/users routes: admin CRUD, role checks, self-service password change."""

from __future__ import annotations

import httpx

from openpitrix.db.engine import Database
from openpitrix.iam.schemas import Role
from tests.helpers import assert_error
from tests.iam.conftest import Account, login, make_user, token_request, unique_email

USER_FIELDS = {
    "user_id",
    "group_path",
    "email",
    "name",
    "role",
    "status",
    "create_time",
    "update_time",
    "status_time",
}


async def test_admin_creates_reads_lists_updates_and_deletes_a_user(
    client: httpx.AsyncClient, admin: Account
) -> None:
    email = unique_email("crud")
    resp = await client.post(
        "/v1/users",
        json={"email": email.upper(), "name": "Crud One", "role": "isv", "password": "s3cret-pw"},
        headers=admin.headers,
    )
    assert resp.status_code == 201, resp.text
    user = resp.json()
    assert set(user) == USER_FIELDS
    assert user["user_id"].startswith("usr-")
    assert user["email"] == email
    assert (user["role"], user["status"]) == ("isv", "active")
    assert resp.headers["location"] == f"/v1/users/{user['user_id']}"
    user_id = user["user_id"]

    got = await client.get(f"/v1/users/{user_id}", headers=admin.headers)
    assert got.json() == user

    # The new user can log in with the password the admin set.
    created = await login(client, Account(user_id, email, "s3cret-pw"))

    listed = await client.get("/v1/users", params={"email": email.upper()}, headers=admin.headers)
    assert listed.json() == {"total_count": 1, "items": [user]}
    by_word = await client.get(
        "/v1/users", params={"search_word": email[5:15], "role": "isv"}, headers=admin.headers
    )
    assert [u["user_id"] for u in by_word.json()["items"]] == [user_id]
    by_role = await client.get(
        "/v1/users", params={"search_word": email, "role": "admin"}, headers=admin.headers
    )
    assert by_role.json()["total_count"] == 0
    assert_error(
        await client.get("/v1/users", params={"sort_key": "password_hash"}, headers=admin.headers),
        400,
        "invalid_sort_key",
    )

    patched = await client.patch(
        f"/v1/users/{user_id}",
        json={"name": "Crud Two", "role": "developer"},
        headers=admin.headers,
    )
    assert patched.status_code == 200, patched.text
    assert (patched.json()["name"], patched.json()["role"]) == ("Crud Two", "developer")
    assert_error(
        await client.patch(f"/v1/users/{user_id}", json={"role": None}, headers=admin.headers),
        422,
        "validation_error",
    )

    deleted = await client.delete(f"/v1/users/{user_id}", headers=admin.headers)
    assert deleted.status_code == 204
    assert (await client.get(f"/v1/users/{user_id}", headers=admin.headers)).json()[
        "status"
    ] == "deleted"
    hidden = await client.get("/v1/users", params={"email": email}, headers=admin.headers)
    assert hidden.json()["total_count"] == 0
    shown = await client.get(
        "/v1/users", params={"email": email, "status": "deleted"}, headers=admin.headers
    )
    assert [u["user_id"] for u in shown.json()["items"]] == [user_id]

    # A deleted user's access and refresh tokens stop working at once, and so does the login.
    assert_error(await client.get("/v1/users/me", headers=created.headers), 401, "unauthorized")
    refreshed = await token_request(
        client, grant_type="refresh_token", refresh_token=created.refresh_token
    )
    assert refreshed.status_code == 400
    assert refreshed.json()["error"] == "invalid_grant"
    relogin = await token_request(
        client, grant_type="password", username=email, password="s3cret-pw"
    )
    assert relogin.json()["error"] == "invalid_grant"

    # The email of a deleted user is free again.
    again = await client.post(
        "/v1/users",
        json={"email": email, "name": "Crud Three", "password": "s3cret-pw"},
        headers=admin.headers,
    )
    assert again.status_code == 201, again.text
    assert again.json()["role"] == "user"
    # Restoring the old user now collides with the new one.
    assert_error(
        await client.patch(
            f"/v1/users/{user_id}", json={"status": "active"}, headers=admin.headers
        ),
        409,
        "user_email_taken",
    )


async def test_duplicate_email_is_409_whatever_the_case(
    client: httpx.AsyncClient, admin: Account, db: Database
) -> None:
    existing = await make_user(db)
    resp = await client.post(
        "/v1/users",
        json={"email": existing.email.title(), "name": "Dup", "password": "s3cret-pw"},
        headers=admin.headers,
    )
    assert_error(resp, 409, "user_email_taken")


async def test_user_bodies_are_validated(client: httpx.AsyncClient, admin: Account) -> None:
    for body in (
        {"email": unique_email(), "name": "Short", "password": "short"},
        {"email": unique_email(), "name": "Long", "password": "x" * 129},
        {"email": "not-an-email", "name": "Bad", "password": "s3cret-pw"},
        {"email": unique_email(), "name": "Role", "role": "root", "password": "s3cret-pw"},
    ):
        resp = await client.post("/v1/users", json=body, headers=admin.headers)
        err = assert_error(resp, 422, "validation_error")
        assert "s3cret-pw" not in resp.text and "x" * 129 not in resp.text, err
    assert_error(
        await client.get("/v1/users/usr-doesnotexist", headers=admin.headers), 404, "not_found"
    )


async def test_non_admins_are_forbidden_from_user_management(
    client: httpx.AsyncClient, member: Account, admin: Account
) -> None:
    target = admin.user_id
    for method, path, body in (
        ("GET", "/v1/users", None),
        ("POST", "/v1/users", {"email": unique_email(), "name": "N", "password": "s3cret-pw"}),
        ("GET", f"/v1/users/{target}", None),
        ("PATCH", f"/v1/users/{target}", {"role": "user"}),
        ("DELETE", f"/v1/users/{target}", None),
    ):
        resp = await client.request(method, path, json=body, headers=member.headers)
        assert_error(resp, 403, "forbidden")
        anonymous = await client.request(method, path, json=body)
        assert_error(anonymous, 401, "unauthorized")
    me = await client.get("/v1/users/me", headers=member.headers)
    assert me.status_code == 200
    assert me.json()["role"] == "developer"
    # The admin was not touched by any of the refused calls.
    still = await client.get(f"/v1/users/{target}", headers=admin.headers)
    assert (still.json()["role"], still.json()["status"]) == ("admin", "active")


async def test_role_change_applies_to_tokens_already_issued(
    client: httpx.AsyncClient, admin: Account, db: Database
) -> None:
    other = await login(client, await make_user(db, Role.ADMIN))
    assert (await client.get("/v1/users", headers=other.headers)).status_code == 200
    demote = await client.patch(
        f"/v1/users/{other.user_id}", json={"role": "user"}, headers=admin.headers
    )
    assert demote.status_code == 200
    assert_error(await client.get("/v1/users", headers=other.headers), 403, "forbidden")


async def test_password_change_revokes_refresh_tokens(
    client: httpx.AsyncClient, db: Database
) -> None:
    account = await login(client, await make_user(db))
    second = await login(client, Account(account.user_id, account.email, account.password))

    wrong = await client.post(
        "/v1/users/me/password",
        json={"old_password": "not-it-at-all", "new_password": "n3w-s3cret!"},
        headers=account.headers,
    )
    assert_error(wrong, 400, "wrong_password")
    short = await client.post(
        "/v1/users/me/password",
        json={"old_password": account.password, "new_password": "short"},
        headers=account.headers,
    )
    assert_error(short, 422, "validation_error")

    resp = await client.post(
        "/v1/users/me/password",
        json={"old_password": account.password, "new_password": "n3w-s3cret!"},
        headers=account.headers,
    )
    assert resp.status_code == 204, resp.text
    for refresh in (account.refresh_token, second.refresh_token):
        answer = await token_request(client, grant_type="refresh_token", refresh_token=refresh)
        assert answer.json()["error"] == "invalid_grant"
    old = await token_request(
        client, grant_type="password", username=account.email, password=account.password
    )
    assert old.json()["error"] == "invalid_grant"
    await login(client, Account(account.user_id, account.email, "n3w-s3cret!"))


async def test_admin_puts_users_in_groups_and_bad_group_paths_are_refused(
    client: httpx.AsyncClient, admin: Account
) -> None:
    body = {"email": unique_email(), "name": "Vendor", "role": "isv", "password": "s3cret-pw-1"}
    made = await client.post(
        "/v1/users", json={**body, "group_path": "Acme/Team-A"}, headers=admin.headers
    )
    assert made.status_code == 201, made.text
    assert made.json()["group_path"] == "acme/team-a"  # stored lower-cased
    user_id = made.json()["user_id"]
    moved = await client.patch(
        f"/v1/users/{user_id}", json={"group_path": "globex"}, headers=admin.headers
    )
    assert moved.json()["group_path"] == "globex"
    for bad in ("/acme", "acme/", "acme//x", "ac me", "acme:x", "a" * 201):
        resp = await client.patch(
            f"/v1/users/{user_id}", json={"group_path": bad}, headers=admin.headers
        )
        assert_error(resp, 422, "validation_error")
    still = await client.get(f"/v1/users/{user_id}", headers=admin.headers)
    assert still.json()["group_path"] == "globex"
