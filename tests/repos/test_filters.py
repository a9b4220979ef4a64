"""Listing repos: paging, sorting, search and the typed, label and selector filters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.helpers import assert_error, closed_url, create_repo

Params = list[tuple[str, str | int]]


async def make(client: httpx.AsyncClient, name: str, **extra: Any) -> dict[str, Any]:
    url = extra.pop("url", None) or closed_url(extra.get("type", "http"))
    return await create_repo(client, name, url, **extra)


async def listed(client: httpx.AsyncClient, params: Params) -> dict[str, Any]:
    resp = await client.get("/v1/repos", params=params)
    assert resp.status_code == 200, resp.text
    page: dict[str, Any] = resp.json()
    assert set(page) == {"total_count", "items"}
    return page


async def names(client: httpx.AsyncClient, params: Params) -> list[str]:
    page = await listed(client, [*params, ("limit", 200)])
    assert page["total_count"] == len(page["items"])
    return [r["name"] for r in page["items"]]


# -------------------------------------------------------------------------------------- paging


async def test_paging_with_limit_and_offset_is_complete_and_stable(
    client: httpx.AsyncClient,
) -> None:
    word = unique("page")
    created = [(await make(client, f"{word}-{i}"))["repo_id"] for i in range(5)]

    seen: list[str] = []
    for offset in (0, 2, 4, 6):
        page = await listed(client, [("search_word", word), ("limit", 2), ("offset", offset)])
        assert page["total_count"] == 5
        assert len(page["items"]) == (2 if offset < 4 else 1 if offset == 4 else 0)
        seen += [r["repo_id"] for r in page["items"]]
    assert sorted(seen) == sorted(created)
    assert len(set(seen)) == 5
    # Default order: newest first.
    assert seen == list(reversed(created))

    again: list[str] = []
    for offset in (0, 2, 4):
        page = await listed(client, [("search_word", word), ("limit", 2), ("offset", offset)])
        again += [r["repo_id"] for r in page["items"]]
    assert again == seen


async def test_paging_is_stable_when_sort_values_tie(client: httpx.AsyncClient) -> None:
    word = unique("tie")
    created = {(await make(client, f"{word}-{i}"))["repo_id"] for i in range(5)}
    # Every repo has type http: the sort key ties, the id must break it.
    seen: list[str] = []
    for offset in (0, 2, 4):
        page = await listed(
            client,
            [("search_word", word), ("sort_key", "type"), ("limit", 2), ("offset", offset)],
        )
        seen += [r["repo_id"] for r in page["items"]]
    assert len(seen) == 5
    assert set(seen) == created


async def test_default_limit_is_20(client: httpx.AsyncClient) -> None:
    word = unique("deflim")
    for i in range(21):
        await make(client, f"{word}-{i:02d}")
    page = await listed(client, [("search_word", word)])
    assert page["total_count"] == 21
    assert len(page["items"]) == 20


@pytest.mark.parametrize(
    "params",
    [
        [("limit", 201)],
        [("limit", 0)],
        [("limit", "many")],
        [("offset", -1)],
        [("reverse", "sideways")],
    ],
)
async def test_bad_list_parameters_are_400_invalid_parameter(
    client: httpx.AsyncClient, params: Params
) -> None:
    body = assert_error(await client.get("/v1/repos", params=params), 400, "invalid_parameter")
    assert body["details"]["errors"]


async def test_limit_of_200_is_allowed(client: httpx.AsyncClient) -> None:
    resp = await client.get("/v1/repos", params={"limit": 200})
    assert resp.status_code == 200, resp.text


# ------------------------------------------------------------------------------------- sorting


async def test_unknown_sort_key_is_400_naming_the_allowed_keys(client: httpx.AsyncClient) -> None:
    body = assert_error(
        await client.get("/v1/repos", params={"sort_key": "credential"}), 400, "invalid_sort_key"
    )
    allowed = body["details"]["allowed"]
    assert {"name", "create_time"} <= set(allowed)
    assert "credential" not in allowed


async def test_sort_by_name_ascending_and_descending(client: httpx.AsyncClient) -> None:
    word = unique("sort")
    for suffix in ("c", "a", "d", "b"):
        await make(client, f"{word}-{suffix}")
    base: Params = [("search_word", word), ("sort_key", "name")]
    ascending = await names(client, [*base, ("reverse", "false")])
    assert ascending == [f"{word}-{s}" for s in "abcd"]
    descending = await names(client, base)
    assert descending == [f"{word}-{s}" for s in "dcba"]


async def test_sort_by_create_time_oldest_first_when_not_reversed(
    client: httpx.AsyncClient,
) -> None:
    word = unique("ctime")
    order = [f"{word}-{s}" for s in ("z", "x", "y")]
    for name in order:
        await make(client, name)
    got = await names(
        client, [("search_word", word), ("sort_key", "create_time"), ("reverse", "false")]
    )
    assert got == order


# -------------------------------------------------------------------------------------- search


async def test_search_word_matches_an_exact_repo_id_only(client: httpx.AsyncClient) -> None:
    repo = await make(client, unique("byid"))
    page = await listed(client, [("search_word", repo["repo_id"])])
    assert [r["repo_id"] for r in page["items"]] == [repo["repo_id"]]
    # Ids match exactly, not by substring.
    partial = await listed(client, [("search_word", repo["repo_id"][:-1])])
    assert partial["total_count"] == 0


async def test_search_word_matches_name_description_and_url_in_any_case(
    client: httpx.AsyncClient,
) -> None:
    word = unique("needle")
    by_name = await make(client, f"Alpha-{word.upper()}-repo")
    by_description = await make(client, unique(), description=f"Holds the {word} charts")
    by_url = await make(client, unique(), url=closed_url(path=f"charts/{word}/"))
    await make(client, unique(), description="unrelated")

    found = await listed(client, [("search_word", word.capitalize()), ("limit", 200)])
    assert {r["repo_id"] for r in found["items"]} == {
        by_name["repo_id"],
        by_description["repo_id"],
        by_url["repo_id"],
    }
    assert found["total_count"] == 3
    # Surrounding whitespace is not part of the word.
    padded = await listed(client, [("search_word", f"  {word}  ")])
    assert padded["total_count"] == 3
    # A URL fragment with slashes finds the repo by its URL.
    by_path = await listed(client, [("search_word", f"/charts/{word}/")])
    assert [r["repo_id"] for r in by_path["items"]] == [by_url["repo_id"]]


async def test_search_word_finds_non_ascii_text(client: httpx.AsyncClient) -> None:
    word = unique("umlaut")
    repo = await make(client, f"Ärger-{word.upper()}", description="Straße über Café")
    # The non-ASCII letters as stored, the ASCII ones in another case.
    found = await listed(client, [("search_word", f"Ärger-{word}")])
    assert [r["repo_id"] for r in found["items"]] == [repo["repo_id"]]
    found = await listed(client, [("search_word", f"ÄRGER-{word}")])
    assert [r["repo_id"] for r in found["items"]] == [repo["repo_id"]]
    in_description = await listed(client, [("search_word", "Straße über"), ("name", repo["name"])])
    assert in_description["total_count"] == 1


async def test_search_word_treats_like_wildcards_literally(client: httpx.AsyncClient) -> None:
    word = unique("wild")
    await make(client, f"{word}-a_b")
    await make(client, f"{word}-axb")
    await make(client, f"{word}-100%")
    await make(client, f"{word}-1000")
    assert await names(client, [("search_word", f"{word}-a_b")]) == [f"{word}-a_b"]
    assert await names(client, [("search_word", f"{word}-100%")]) == [f"{word}-100%"]


# ------------------------------------------------------------------------------ typed filters


async def test_type_filter_repeats(client: httpx.AsyncClient) -> None:
    word = unique("type")
    await make(client, f"{word}-plain", type="http")
    await make(client, f"{word}-tls", type="https")
    base: Params = [("search_word", word), ("sort_key", "name"), ("reverse", "false")]
    assert await names(client, [*base, ("type", "http")]) == [f"{word}-plain"]
    assert await names(client, [*base, ("type", "https")]) == [f"{word}-tls"]
    assert await names(client, [*base, ("type", "http"), ("type", "https")]) == [
        f"{word}-plain",
        f"{word}-tls",
    ]


async def test_name_filter_is_exact_and_repeats(client: httpx.AsyncClient) -> None:
    word = unique("name")
    a, b = f"{word}-a", f"{word}-b"
    for name in (a, b, f"{word}-c"):
        await make(client, name)
    assert await names(client, [("name", a)]) == [a]
    assert sorted(await names(client, [("name", a), ("name", b)])) == [a, b]
    assert await names(client, [("name", word)]) == []


async def test_visibility_filter(client: httpx.AsyncClient) -> None:
    word = unique("vis")
    await make(client, f"{word}-pub", visibility="public")
    await make(client, f"{word}-priv", visibility="private")
    assert await names(client, [("search_word", word), ("visibility", "private")]) == [
        f"{word}-priv"
    ]
    assert await names(client, [("search_word", word), ("visibility", "public")]) == [f"{word}-pub"]


async def test_owner_filter(client: httpx.AsyncClient) -> None:
    word = unique("owner")
    repo = await make(client, f"{word}-r")
    me = (await client.get("/v1/users/me")).json()["user_id"]
    assert repo["owner"] == me
    assert await names(client, [("search_word", word), ("owner", me)]) == [f"{word}-r"]
    assert await names(client, [("search_word", word), ("owner", "someone-else")]) == []


async def test_provider_filter_matches_any_given_provider(client: httpx.AsyncClient) -> None:
    word = unique("prov")
    await make(client, f"{word}-k8s", providers=["kubernetes"])
    await make(client, f"{word}-tc", providers=["testcloud"])
    await make(client, f"{word}-mix", providers=["kubernetes", "testcloud"])
    base: Params = [("search_word", word), ("sort_key", "name"), ("reverse", "false")]
    assert await names(client, [*base, ("provider", "testcloud")]) == [
        f"{word}-mix",
        f"{word}-tc",
    ]
    assert await names(client, [*base, ("provider", "kubernetes")]) == [
        f"{word}-k8s",
        f"{word}-mix",
    ]
    assert await names(client, [*base, ("provider", "kubernetes"), ("provider", "testcloud")]) == [
        f"{word}-k8s",
        f"{word}-mix",
        f"{word}-tc",
    ]
    # A provider not installed (no repo can name it) is a mistake, not an empty filter.
    resp = await client.get("/v1/repos", params=[*base, ("provider", "azure")])
    assert assert_error(resp, 400, "invalid_parameter")["details"]["parameter"] == "provider"


async def test_provider_filter_follows_a_providers_change(client: httpx.AsyncClient) -> None:
    word = unique("provchg")
    repo = await make(client, f"{word}-r", providers=["kubernetes"])
    resp = await client.patch(f"/v1/repos/{repo['repo_id']}", json={"providers": ["testcloud"]})
    assert resp.status_code == 200, resp.text
    base: Params = [("search_word", word)]
    assert await names(client, [*base, ("provider", "testcloud")]) == [f"{word}-r"]
    assert await names(client, [*base, ("provider", "kubernetes")]) == []


async def test_status_filter_shows_deleted_repos_only_when_asked(
    client: httpx.AsyncClient,
) -> None:
    word = unique("status")
    await make(client, f"{word}-live")
    gone = await make(client, f"{word}-gone")
    resp = await client.delete(f"/v1/repos/{gone['repo_id']}")
    assert resp.status_code == 202, resp.text
    base: Params = [("search_word", word), ("sort_key", "name"), ("reverse", "false")]
    assert await names(client, base) == [f"{word}-live"]
    assert await names(client, [*base, ("status", "deleted")]) == [f"{word}-gone"]
    assert await names(client, [*base, ("status", "active"), ("status", "deleted")]) == [
        f"{word}-gone",
        f"{word}-live",
    ]


# ------------------------------------------------------------------------ labels and selectors


def kv(*pairs: str) -> list[dict[str, str]]:
    return [{"key": k, "value": v} for k, v in (p.split("=", 1) for p in pairs)]


@pytest.mark.parametrize("kind", ["label", "selector"])
async def test_label_and_selector_filters_need_every_key_with_any_of_its_values(
    client: httpx.AsyncClient, kind: str
) -> None:
    word = unique(kind)
    field = f"{kind}s"
    await make(client, f"{word}-1", **{field: kv("env=prod", "tier=web")})
    await make(client, f"{word}-2", **{field: kv("env=dev", "tier=web")})
    await make(client, f"{word}-3", **{field: kv("env=prod", "tier=db")})
    await make(client, f"{word}-4")
    base: Params = [("search_word", word), ("sort_key", "name"), ("reverse", "false")]

    def q(*pairs: str) -> Params:
        return [*base, *((kind, p) for p in pairs)]

    assert await names(client, q("env=prod", "env=dev", "tier=web")) == [
        f"{word}-1",
        f"{word}-2",
    ]
    assert await names(client, q("env=prod", "tier=db")) == [f"{word}-3"]
    assert await names(client, q("env=prod")) == [f"{word}-1", f"{word}-3"]
    assert await names(client, q("tier=web", "tier=db")) == [
        f"{word}-1",
        f"{word}-2",
        f"{word}-3",
    ]
    assert await names(client, q("env=dev", "tier=db")) == []
    assert await names(client, q("env=qa")) == []
    assert await names(client, q("owner=prod")) == []
    # Whitespace around key and value is ignored.
    assert await names(client, q(" env = dev ")) == [f"{word}-2"]


async def test_label_and_selector_filters_do_not_see_each_other(
    client: httpx.AsyncClient,
) -> None:
    word = unique("kinds")
    await make(client, f"{word}-l", labels=kv("env=prod"))
    await make(client, f"{word}-s", selectors=kv("env=prod"))
    await make(client, f"{word}-p", providers=["testcloud"])
    base: Params = [("search_word", word)]
    assert await names(client, [*base, ("label", "env=prod")]) == [f"{word}-l"]
    assert await names(client, [*base, ("selector", "env=prod")]) == [f"{word}-s"]
    # Providers live next to labels internally; they must not answer a label filter.
    assert await names(client, [*base, ("label", "provider=testcloud")]) == []


async def test_label_filter_follows_a_labels_change(client: httpx.AsyncClient) -> None:
    word = unique("lblchg")
    repo = await make(client, f"{word}-r", labels=kv("env=prod"))
    resp = await client.patch(f"/v1/repos/{repo['repo_id']}", json={"labels": kv("env=dev")})
    assert resp.status_code == 200, resp.text
    base: Params = [("search_word", word)]
    assert await names(client, [*base, ("label", "env=dev")]) == [f"{word}-r"]
    assert await names(client, [*base, ("label", "env=prod")]) == []


@pytest.mark.parametrize("kind", ["label", "selector"])
@pytest.mark.parametrize("raw", ["envprod", "=prod", "env=", "  =  "])
async def test_malformed_label_filter_is_400_invalid_filter(
    client: httpx.AsyncClient, kind: str, raw: str
) -> None:
    resp = await client.get("/v1/repos", params={kind: raw})
    body = assert_error(resp, 400, "invalid_filter")
    assert kind in body["message"]


async def test_labels_and_selectors_keep_their_order_on_read(client: httpx.AsyncClient) -> None:
    labels = kv("zone=b", "app=x", "env=prod", "app=y")
    selectors = kv("tier=web", "env=dev", "env=prod")
    repo = await make(client, unique(), labels=labels, selectors=selectors)
    assert repo["labels"] == labels
    assert repo["selectors"] == selectors
    got = (await client.get(f"/v1/repos/{repo['repo_id']}")).json()
    assert got["labels"] == labels
    assert got["selectors"] == selectors
    page = await listed(client, [("search_word", repo["repo_id"])])
    assert page["items"][0]["labels"] == labels

    reordered = list(reversed(labels))
    resp = await client.patch(f"/v1/repos/{repo['repo_id']}", json={"labels": reordered})
    assert resp.status_code == 200, resp.text
    assert resp.json()["labels"] == reordered
    got = (await client.get(f"/v1/repos/{repo['repo_id']}")).json()
    assert got["labels"] == reordered
    assert got["selectors"] == selectors
