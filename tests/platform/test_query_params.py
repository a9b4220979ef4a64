"""Query parameters: unknown ones, bad enum values and out-of-range integers are a 400
`invalid_parameter` naming the parameter, on every route, before any answer starts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from fastapi.routing import APIRoute, iter_route_contexts

from openpitrix.api.params import declared_query_names
from openpitrix.db.listing import MAX_OFFSET
from openpitrix.events.sse import MAX_SEQUENCE
from openpitrix.gateway import create_app
from openpitrix.settings import Settings
from tests.conftest import LiveServer, make_settings
from tests.helpers import assert_error

PATH_SAMPLES = {"{revision}": "1", "{action}": "stop"}


def _concrete(path: str) -> str:
    return "/".join(
        PATH_SAMPLES.get(p, "zz-none") if p.startswith("{") else p for p in path.split("/")
    )


def _get_routes() -> list[tuple[str, frozenset[str]]]:
    """(path, declared query names) of every GET API route, from the app's route table, so a
    route added later is covered too."""
    out = []
    for context in iter_route_contexts(create_app(Settings()).routes):
        route = context.original_route
        if isinstance(route, APIRoute) and "GET" in route.methods:
            out.append((str(context.path), declared_query_names(route.dependant)))
    assert len(out) > 15, out
    return out


GET_ROUTES = _get_routes()
LIST_ROUTES = [path for path, names in GET_ROUTES if "offset" in names]
STATUS_ROUTES = [path for path, names in GET_ROUTES if "status" in names]


@pytest.fixture
async def gateway(database_url: str, nats_url: str, tmp_path: Path) -> AsyncIterator[LiveServer]:
    settings = make_settings(database_url, nats_url, tmp_path / "data", relay_enabled=False)
    async with LiveServer(settings, run_workers=False) as live:
        yield live


@pytest.fixture
async def admin(
    gateway: LiveServer, admin_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30, headers=admin_headers) as http:
        yield http


async def _status_and_body(http: httpx.AsyncClient, path: str, **kwargs: object) -> httpx.Response:
    # Event streams would answer for ever once started: read only what a refusal carries.
    async with http.stream("GET", path, **kwargs) as resp:  # type: ignore[arg-type]
        if resp.status_code == 200 and resp.headers["content-type"].startswith("text/event"):
            return resp
        await resp.aread()
        return resp


async def test_every_get_route_refuses_an_unknown_query_parameter(
    admin: httpx.AsyncClient,
) -> None:
    wrong = []
    for path, _ in GET_ROUTES:
        resp = await _status_and_body(admin, _concrete(path), params={"no_such_filter": "1"})
        body = resp.json() if resp.status_code == 400 else {}
        if body.get("error") != "invalid_parameter" or body["details"].get("parameter") != (
            "no_such_filter"
        ):
            wrong.append((path, resp.status_code))
    assert not wrong, wrong


async def test_an_app_list_filtered_by_a_parameter_it_does_not_have_is_400(
    admin: httpx.AsyncClient,
) -> None:
    body = assert_error(
        await admin.get("/v1/apps", params={"category": "web"}), 400, "invalid_parameter"
    )
    assert body["details"]["parameter"] == "category"
    assert "status" in body["details"]["allowed"]
    assert "category" in body["message"]


async def test_declared_parameters_still_work(admin: httpx.AsyncClient) -> None:
    resp = await admin.get(
        "/v1/apps", params=[("status", "active"), ("status", "draft"), ("limit", 5)]
    )
    assert resp.status_code == 200, resp.text
    assert set(resp.json()) == {"total_count", "items"}


async def test_a_bogus_status_is_400_on_every_list_with_a_status_filter(
    admin: httpx.AsyncClient,
) -> None:
    assert len(STATUS_ROUTES) >= 8, STATUS_ROUTES  # repos, apps, versions, jobs, tasks, ...
    wrong = []
    for path in STATUS_ROUTES:
        resp = await admin.get(_concrete(path), params={"status": "bogus"})
        body = resp.json()
        if resp.status_code != 400 or body["details"].get("parameter") != "status":
            wrong.append((path, resp.status_code, body))
    assert not wrong, wrong


@pytest.mark.parametrize(
    ("path", "parameter", "value"),
    [
        ("/v1/repos", "type", "ftp"),
        ("/v1/repos", "visibility", "secret"),
        ("/v1/repos", "provider", "azure"),
        ("/v1/runtimes", "provider", "Not A Provider"),
        ("/v1/users", "role", "emperor"),
    ],
)
async def test_a_bad_enum_filter_value_is_400_naming_it(
    admin: httpx.AsyncClient, path: str, parameter: str, value: str
) -> None:
    body = assert_error(await admin.get(path, params={parameter: value}), 400, "invalid_parameter")
    assert body["details"]["parameter"] == parameter


async def test_offset_is_bounded_on_every_list(admin: httpx.AsyncClient) -> None:
    assert len(LIST_ROUTES) >= 9, LIST_ROUTES
    wrong = []
    for path in LIST_ROUTES:
        # 2**63 overflowed SQLite's integer (a 500); past the bound it is refused up front.
        for value in (2**63, MAX_OFFSET + 1):
            resp = await admin.get(_concrete(path), params={"offset": value})
            if resp.status_code != 400 or resp.json()["details"].get("parameter") != "offset":
                wrong.append((path, value, resp.status_code))
        # The largest allowed offset reaches the database and answers an empty page.
        resp = await admin.get(_concrete(path), params={"offset": MAX_OFFSET})
        if "{" not in path and (resp.status_code != 200 or resp.json()["items"] != []):
            wrong.append((path, MAX_OFFSET, resp.status_code))
    assert not wrong, wrong


async def test_too_many_values_of_one_filter_are_400(admin: httpx.AsyncClient) -> None:
    params = [("owner", f"usr-{i}") for i in range(101)]
    body = assert_error(await admin.get("/v1/repos", params=params), 400, "invalid_parameter")
    assert body["details"]["parameter"] == "owner"


@pytest.mark.parametrize("path", ["/v1/events", "/v1/jobs/zz-none/events"])
@pytest.mark.parametrize("value", [2**64, 2**63, -1])
async def test_an_out_of_range_after_is_400_before_the_stream_starts(
    admin: httpx.AsyncClient, path: str, value: int
) -> None:
    resp = await _status_and_body(admin, path, params={"after": value})
    body = assert_error(resp, 400, "invalid_parameter")
    assert body["details"]["parameter"] == "after"


async def test_an_out_of_range_last_event_id_is_400_before_the_stream_starts(
    admin: httpx.AsyncClient,
) -> None:
    for value in (2**64, MAX_SEQUENCE + 1):
        resp = await _status_and_body(admin, "/v1/events", headers={"Last-Event-ID": str(value)})
        body = assert_error(resp, 400, "invalid_last_event_id")
        assert body["details"]["parameter"] == "Last-Event-ID"


async def test_the_largest_sequence_is_a_valid_resume_point(admin: httpx.AsyncClient) -> None:
    async with admin.stream(
        "GET", "/v1/events", headers={"Last-Event-ID": str(MAX_SEQUENCE)}
    ) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        first = await anext(resp.aiter_lines())
        assert first == "retry: 2000"


async def test_a_huge_release_revision_is_400(admin: httpx.AsyncClient) -> None:
    resp = await admin.get(f"/v1/clusters/zz-none/releases/{2**63}")
    body = assert_error(resp, 400, "invalid_parameter")
    assert body["details"]["parameter"] == "revision"


# The hot lists read their query as one model (api.params.QueryModel); these queries must be
# answered exactly as a list whose parameters FastAPI solves itself (`/v1/repos`) answers them.
ODD_QUERIES: list[list[tuple[str, str]]] = [
    # A single parameter repeated: only the last one counts.
    [("limit", "0"), ("limit", "2")],
    [("limit", "2"), ("limit", "0")],
    [("limit", "0")],
    [("limit", "abc")],
    [("limit", "201")],
    [("offset", "-1")],
    [("reverse", "no")],
    [("reverse", "maybe")],
    [("search_word", "x" * 201)],
    [("sort_key", "create_time"), ("reverse", "false"), ("limit", "2")],
    [("sort_key", "no_such_key")],
    [("status", "active"), ("status", "bogus")],
    [("name", "x" * 201)],
    [("name", f"n{i}") for i in range(101)],
    [("name", "")],
]


def _answer(resp: httpx.Response) -> tuple[int, object]:
    body = resp.json()
    if resp.status_code != 200:
        return resp.status_code, (body["error"], body["details"].get("parameter"))
    return resp.status_code, sorted(body)


@pytest.mark.parametrize("path", ["/v1/apps", "/v1/jobs", "/v1/apps/zz-none/versions"])
async def test_a_query_model_list_answers_odd_queries_as_fastapi_solved_lists_do(
    admin: httpx.AsyncClient, path: str
) -> None:
    different = []
    for query in ODD_QUERIES:
        # The same values under the filter the route has, where /v1/repos's is `name`/`status`.
        mine = query
        if query[0][0] == "name" and path != "/v1/apps":
            mine = [("version" if "versions" in path else "action", v) for _, v in query]
        if query[0][0] == "status" and path == "/v1/jobs":
            mine = [("status", "pending"), ("status", "bogus")]
        reference = _answer(await admin.get("/v1/repos", params=query))
        answer = _answer(await admin.get(path, params=mine))
        if answer[1] == ("invalid_parameter", mine[0][0]):
            answer = (answer[0], ("invalid_parameter", query[0][0]))
        if path.endswith("/versions") and answer == (404, ("not_found", None)):
            answer = (200, ["items", "total_count"])  # valid query; no such app
        if answer != reference:
            different.append((query[:2], answer, reference))
    assert not different, different
