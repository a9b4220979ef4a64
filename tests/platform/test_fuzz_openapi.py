"""Fuzz every operation of the OpenAPI document against the live server: no 5xx, and no answer
the document does not describe (status code, content type, body schema, headers)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from hypothesis.strategies import SearchStrategy
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from openpitrix.gateway import create_app
from openpitrix.iam.schemas import Role
from openpitrix.settings import Settings
from tests.conftest import LiveServer
from tests.helpers import wait_job
from tests.support.auth import bearer, create_account, mint_token
from tests.support.deployments import deploy, prepare_runtime
from tests.support.http_repo import RepoServer
from tests.support.kube import FakeKube

# Bounded and reproducible: a fixed number of examples per operation and generation mode, drawn
# derandomized (the same cases on every run), no deadline (a 2-core CI box is slow at times).
MAX_EXAMPLES = 12
MODES = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]

# Streams that follow live events never end, and schemathesis reads a whole body: these two
# are left out of the stateless run and fuzzed by test_event_streams_answer_as_documented,
# which checks the status code and headers before the body.
ENDLESS_STREAMS = {"stream_events", "stream_job_events"}


@dataclass
class Report:
    """Failures found, one example kept per (operation, failure type)."""

    found: dict[tuple[str, str], str] = field(default_factory=dict)
    calls: int = 0
    streams: int = 0

    def add(
        self, operation_id: str, failure: Failure, case: schemathesis.Case, base_url: str
    ) -> None:
        key = (operation_id, type(failure).__name__)
        example = case.as_curl_command(base_url=base_url)
        self.found.setdefault(key, f"{failure.title}: {failure.message[:600]}\n  {example}")


@dataclass
class Identities:
    """Tokens and ids the destructive operations act on, so the fuzzer never locks itself out,
    and real resources so that answers about existing rows are checked too, not only 404s."""

    admin: dict[str, str]
    # A user of its own for `change_my_password` (every token of the user stops working).
    self_service: dict[str, str]
    # Users the fuzzer may update and delete in place of guessing ids.
    victims: list[str]
    # Path parameter name -> id of a row that exists.
    real: dict[str, Any] = field(default_factory=dict)


def _fixed_inputs(operation_id: str, who: Identities) -> tuple[dict[str, str], dict[str, Any]]:
    """Headers and fixed strategy arguments for one operation."""
    if operation_id == "change_my_password":
        return who.self_service, {}
    if operation_id == "delete_user":
        return who.admin, {"path_parameters": {"user_id": who.victims[0]}}
    if operation_id == "update_user":
        return who.admin, {"path_parameters": {"user_id": who.victims[1]}}
    return who.admin, {}


def _path_names(operation: schemathesis.APIOperation) -> set[str]:
    return {p.name for p in operation.iter_parameters() if p.location == "path"}


def _passes(
    operation: schemathesis.APIOperation, who: Identities
) -> list[tuple[str, dict[str, str], SearchStrategy[schemathesis.Case], int]]:
    """(name, headers, cases, how many) for one operation."""
    operation_id = operation.definition.raw["operationId"]
    headers, fixed = _fixed_inputs(operation_id, who)
    passes = [
        (mode.value, headers, operation.as_strategy(generation_mode=mode, **fixed), MAX_EXAMPLES)
        for mode in MODES
    ]
    examples = operation.get_strategies_from_examples()
    if examples:
        passes.append(("examples", headers, st.one_of(examples), 2 * len(examples)))
    # Without a token: every protected operation must document its 401.
    passes.append(("anonymous", {}, operation.as_strategy(**fixed), 2))
    names = _path_names(operation)
    if names and not fixed and names <= who.real.keys():
        real = {name: who.real[name] for name in names}
        passes.append(("real", headers, operation.as_strategy(path_parameters=real), MAX_EXAMPLES))
    return passes


def _bounded(
    cases: SearchStrategy[schemathesis.Case],
    count: int,
    call: Callable[[schemathesis.Case], None],
) -> Callable[[], None]:
    """`call` on `count` cases, the same ones on every run."""

    @settings(
        max_examples=count,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def run(case: schemathesis.Case) -> None:
        call(case)

    return run


def _caller(
    operation_id: str, base_url: str, headers: dict[str, str], report: Report
) -> Callable[[schemathesis.Case], None]:
    def call(case: schemathesis.Case) -> None:
        report.calls += 1
        try:
            case.call_and_validate(base_url=base_url, headers=headers, checks=CHECKS, timeout=30)
        except FailureGroup as group:
            for failure in group.exceptions:
                report.add(operation_id, failure, case, base_url)
        except Failure as failure:
            report.add(operation_id, failure, case, base_url)

    return call


def _fuzz_operation(
    operation: schemathesis.APIOperation, base_url: str, who: Identities, report: Report
) -> None:
    operation_id = operation.definition.raw["operationId"]
    for name, headers, cases, count in _passes(operation, who):
        run = _bounded(cases, count, _caller(operation_id, base_url, headers, report))
        try:
            run()
        except Unsatisfiable:
            # Nothing to make invalid (no parameters, no body): only the positive cases apply.
            if name != schemathesis.GenerationMode.NEGATIVE.value:
                raise


def _fuzz_all(base_url: str, who: Identities) -> Report:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    report = Report()
    operations = [result.ok() for result in schema.get_all_operations()]
    # Deletions come last: what they delete (a victim, the real rows) is not needed after them.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    for operation in operations:
        if operation.definition.raw["operationId"] in ENDLESS_STREAMS:
            continue
        _fuzz_operation(operation, base_url, who, report)
    return report


async def _identities(database_url: str) -> Identities:
    admin = await create_account(database_url, Role.ADMIN)
    own = await create_account(database_url, Role.ADMIN)
    victims = [await create_account(database_url, Role.USER) for _ in range(2)]
    return Identities(
        admin=bearer(mint_token(admin, Role.ADMIN)),
        self_service=bearer(mint_token(own, Role.ADMIN)),
        victims=victims,
        real={"user_id": await create_account(database_url, Role.USER)},
    )


async def _create_real_rows(http: httpx.AsyncClient, who: Identities) -> None:
    """An API client and a repo with its index job (where no workers run, the job waits and
    its event stream stays open)."""
    created = await http.post("/v1/api-clients", json={"name": "fuzz"})
    assert created.status_code == 201, created.text
    who.real["client_id"] = created.json()["client_id"]
    repo = await http.post(
        "/v1/repos",
        json={
            "name": "fuzz",
            "type": "https",
            "url": "https://charts.example.org/fuzz",
            "providers": ["kubernetes"],
        },
    )
    assert repo.status_code == 201, repo.text
    who.real["repo_id"] = repo.json()["repo_id"]
    who.real["job_id"] = repo.json()["index_job_id"]


async def _deploy_real_rows(
    http: httpx.AsyncClient, kube: FakeKube, repo_url: str, who: Identities
) -> None:
    """Every kind of row the API serves, for the "real" pass: an indexed repo with its apps, a
    credential and runtime on the fake Kubernetes API, a deployed cluster and its job."""
    await _create_real_rows(http, who)
    setup = await prepare_runtime(http, kube, repo_url)
    made = await deploy(http, setup, "shop@1.0.0")
    assert (await wait_job(http, made["job_id"]))["status"] == "successful"
    version_id = setup["versions"]["shop@1.0.0"]
    who.real |= {
        "credential_id": setup["credential_id"],
        "runtime_id": setup["runtime"]["runtime_id"],
        "version_id": version_id,
        "app_id": (await http.get(f"/v1/app-versions/{version_id}")).json()["app_id"],
        "cluster_id": made["cluster_id"],
        "job_id": made["job_id"],
        "revision": 1,
    }


def _describe(found: dict[tuple[str, str], str]) -> str:
    return "\n\n".join(f"{op} / {kind}\n{detail}" for (op, kind), detail in sorted(found.items()))


async def test_every_operation_answers_as_documented_under_fuzzing(
    server: LiveServer, database_url: str, kube: FakeKube, shop_repo: RepoServer
) -> None:
    who = await _identities(database_url)
    async with httpx.AsyncClient(base_url=server.url, headers=who.admin, timeout=30) as http:
        await _deploy_real_rows(http, kube, shop_repo.url, who)
        # schemathesis calls are blocking: they run in a thread while the server serves here.
        report = await asyncio.to_thread(_fuzz_all, server.url, who)
        # The fuzzer still holds a working token at the end: it tested what it meant to.
        assert (await http.get("/v1/users/me")).status_code == 200
    assert report.calls > 50 * MAX_EXAMPLES
    assert not report.found, f"{len(report.found)} failures:\n\n{_describe(report.found)}"


def _fuzz_stream(
    operation: schemathesis.APIOperation,
    base_url: str,
    who: Identities,
    report: Report,
) -> None:
    operation_id = operation.definition.raw["operationId"]
    declared = {int(code) for code in operation.definition.raw["responses"]}
    names = _path_names(operation)
    strategies = [operation.as_strategy()]
    if names:
        # A job that exists (its stream is live and never ends): the status and headers only.
        real = {name: who.real[name] for name in names}
        strategies.append(operation.as_strategy(path_parameters=real))
    for cases in strategies:

        @settings(
            max_examples=MAX_EXAMPLES * 2,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        @given(case=cases)
        def run(case: schemathesis.Case) -> None:
            report.calls += 1
            sent = case.as_transport_kwargs(base_url=base_url, headers=who.admin)
            with (
                httpx.Client(timeout=10) as http,
                http.stream(
                    sent["method"], sent["url"], params=sent.get("params"), headers=sent["headers"]
                ) as response,
            ):
                # Only the status line and headers: a 200 stream follows live events forever.
                kind = response.headers.get("content-type", "")
                expected = (
                    "text/event-stream" if response.status_code == 200 else "application/json"
                )
                if response.status_code not in declared or not kind.startswith(expected):
                    key = (operation_id, f"{response.status_code} {kind}")
                    report.found.setdefault(key, f"{sent['url']} {sent.get('params')}")
                if response.status_code == 200:
                    report.streams += 1

        run()


async def test_event_streams_answer_as_documented(settings: Settings, database_url: str) -> None:
    who = await _identities(database_url)
    async with LiveServer(settings, run_workers=False) as live:
        async with httpx.AsyncClient(base_url=live.url, headers=who.admin) as http:
            await _create_real_rows(http, who)

        def fuzz_streams() -> Report:
            schema = schemathesis.openapi.from_url(f"{live.url}/openapi.json")
            report = Report()
            for result in schema.get_all_operations():
                operation = result.ok()
                if operation.definition.raw["operationId"] in ENDLESS_STREAMS:
                    _fuzz_stream(operation, live.url, who, report)
            return report

        report = await asyncio.to_thread(fuzz_streams)
    assert report.calls >= 3 * 2 * MAX_EXAMPLES
    assert report.streams > 0, "no fuzzed request opened a stream"
    assert not report.found, _describe(report.found)


pytestmark = pytest.mark.timeout(900)


def _operations() -> list[tuple[str, dict[str, Any]]]:
    spec = create_app(Settings()).openapi()
    return [
        (op["operationId"], op) for methods in spec["paths"].values() for op in methods.values()
    ]


def test_every_operation_with_a_body_documents_the_size_limit() -> None:
    with_body = [(op_id, op) for op_id, op in _operations() if "requestBody" in op]
    assert len(with_body) > 10
    missing = [op_id for op_id, op in with_body if "413" not in op["responses"]]
    assert not missing, f"no 413 documented on {missing}"


def test_every_operation_needing_the_database_documents_503_with_the_error_body() -> None:
    error_body = {"$ref": "#/components/schemas/ErrorBody"}
    for op_id, op in _operations():
        if op_id == "healthz":
            assert "503" not in op["responses"]
            continue
        documented = op["responses"].get("503")
        assert documented, f"{op_id} documents no 503"
        # readyz answers its 503 in the one error shape, with the failing checks in details.
        assert documented["content"]["application/json"]["schema"] == error_body, op_id


def test_event_streams_document_their_stream_cap() -> None:
    streams = {op_id: op for op_id, op in _operations() if op_id in ENDLESS_STREAMS}
    assert streams.keys() == ENDLESS_STREAMS
    for op_id, op in streams.items():
        assert "429" in op["responses"], op_id
