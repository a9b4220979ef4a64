"""What a release asks of a namespace's ResourceQuotas, and the reasons it does not fit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from openpitrix.providers.kubernetes.quota import (
    QuantityError,
    parse_quantity,
    shortfalls,
    usage,
)


def deployment(name: str, replicas: int | None, **resources: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "template": {"spec": {"containers": [{"name": "c", "image": "x", "resources": resources}]}}
    }
    if replicas is not None:
        spec["replicas"] = replicas
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name}, "spec": spec}


def quota(hard: dict[str, str], used: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"name": "team"}, "status": {"hard": hard, "used": used}}


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("250m", Decimal("0.25")),
        ("2", Decimal(2)),
        (3, Decimal(3)),
        ("1.5Gi", Decimal(3 * 2**29)),
        ("128Mi", Decimal(128 * 2**20)),
        ("1k", Decimal(1000)),
        ("1e3", Decimal(1000)),
    ],
)
def test_quantities_parse_as_kubernetes_writes_them(text: object, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "abc", "1Xi", "1..2"])
def test_a_malformed_quantity_is_refused(text: str) -> None:
    with pytest.raises(QuantityError):
        parse_quantity(text)


def test_usage_multiplies_pod_resources_by_replicas_and_counts_objects() -> None:
    objects = [
        deployment("web", 3, requests={"cpu": "100m", "memory": "64Mi"}, limits={"cpu": "1"}),
        deployment("worker", None, limits={"memory": "1Gi"}),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}},
        {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "data"},
            "spec": {"resources": {"requests": {"storage": "10Gi"}}},
        },
    ]
    used = usage(objects)
    assert used["pods"] == 4
    assert used["requests.cpu"] == Decimal("0.3")
    assert used["limits.cpu"] == 3
    # A limit without a request is the request too, as Kubernetes defaults it.
    assert used["requests.memory"] == 3 * 64 * 2**20 + 2**30
    assert used["services"] == 1
    assert used["persistentvolumeclaims"] == 1
    assert used["requests.storage"] == 10 * 2**30


def test_a_release_that_does_not_fit_names_each_quota_key_short() -> None:
    wanted = [deployment("web", 3, requests={"cpu": "500m"})]
    problems = shortfalls([quota({"pods": "4", "cpu": "1"}, {"pods": "2", "cpu": "0"})], wanted)
    assert problems == [
        "quota team: cpu would be 1500m of 1 (0 used, 1500m more asked)",
        "quota team: pods would be 5 of 4 (2 used, 3 more asked)",
    ]
    assert shortfalls([quota({"pods": "5", "cpu": "2"}, {"pods": "2"})], wanted) == []


def test_an_upgrade_counts_only_what_it_adds_over_the_revision_it_replaces() -> None:
    before = [deployment("web", 2, requests={"memory": "1Gi"})]
    after = [deployment("web", 3, requests={"memory": "1Gi"})]
    # The namespace is full with the current revision: one more replica does not fit...
    full = quota({"requests.memory": "2Gi"}, {"requests.memory": "2Gi"})
    assert shortfalls([full], after, before) == [
        "quota team: requests.memory would be 3072Mi of 2048Mi (2048Mi used, 1024Mi more asked)"
    ]
    # ...while scaling down, or keeping the same size, always fits.
    assert shortfalls([full], before, after) == []
    assert shortfalls([full], before, before) == []
