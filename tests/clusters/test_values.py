"""Cluster request fields that JSON or the database cannot hold are refused as validation
errors (422), not 500s."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.helpers import assert_error

# Built by hand: httpx's encoder would refuse to send an unpaired surrogate.
UNSTORABLE = {
    "integer past 64 bits": '{"replicaCount": 475518140855017799680}',
    "unpaired surrogate": '{"name": "\\ud800"}',
}


@pytest.mark.parametrize("values", UNSTORABLE.values(), ids=UNSTORABLE.keys())
@pytest.mark.parametrize("idempotency_key", [None, "fuzz-1"])
async def test_unstorable_values_are_a_validation_error(
    client: httpx.AsyncClient, values: str, idempotency_key: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    create = json.dumps({"version_id": "appv-x", "runtime_id": "runtime-x", "name": "shop"})
    requests = [
        ("/v1/clusters", create[:-1] + f', "values": {values}}}'),
        ("/v1/clusters/cl-x/actions/update-env", f'{{"values": {values}}}'),
        ("/v1/clusters/cl-x/actions/upgrade", f'{{"version_id": "appv-x", "values": {values}}}'),
    ]
    for path, body in requests:
        resp = await client.post(path, content=body, headers=headers)
        error = assert_error(resp, 422, "validation_error")
        assert error["details"]["errors"][0]["loc"][:2] == ["body", "values"], error


@pytest.mark.parametrize("idempotency_key", [None, "fuzz-2"])
async def test_a_rollback_revision_past_the_column_range_is_a_validation_error(
    client: httpx.AsyncClient, idempotency_key: str | None
) -> None:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    resp = await client.post(
        "/v1/clusters/cl-x/actions/rollback", json={"revision": 10**30}, headers=headers
    )
    error = assert_error(resp, 422, "validation_error")
    assert error["details"]["errors"][0]["loc"] == ["body", "revision"], error
