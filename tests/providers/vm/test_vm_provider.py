"""The shared VM provider's cloud-free half: the nodes a package renders to, the first-boot
script, plans and previews planned from the cluster's state."""

from __future__ import annotations

import pytest

from openpitrix.providers.base import ClusterState, NodeState, PlanRequest, ProviderError
from openpitrix.providers.qingcloud.provider import QingCloudProvider
from openpitrix.providers.vm.nodes import nodes_of_spec, user_data
from openpitrix.providers.vm.package import render_package
from tests.support.qingcloud_vm import shop_package
from tests.support.vmpackages import build_vm_package, op_create_package

provider = QingCloudProvider()


def test_a_package_renders_to_one_object_per_node_in_role_order() -> None:
    spec = render_package(build_vm_package(shop_package()), {"cluster": {"web": {"count": 3}}})
    objects = nodes_of_spec(spec)
    assert [(o["node_id"], o["role"], o["cpu"], o["memory"]) for o in objects] == [
        ("web-1", "web", 1, 1024),
        ("web-2", "web", 1, 1024),
        ("web-3", "web", 1, 1024),
        ("db-1", "db", 2, 4096),
    ]
    assert (objects[0]["image"], objects[0]["volume_size"]) == ("bionic1x64", 0)
    assert (objects[-1]["image"], objects[-1]["volume_size"]) == ("", 10)
    assert objects[0]["env"] == {"APP": "shop", "PORT": "8080"}


def test_a_docker_role_boots_the_default_image_and_names_its_container() -> None:
    spec = render_package(build_vm_package(op_create_package()), {})
    [first, *_] = nodes_of_spec(spec)
    assert (first["node_id"], first["image"]) == ("role_name1-1", "")
    script = user_data(first)
    assert "export OP_CONTAINER_IMAGE=nginx\n" in script


def test_the_boot_script_exports_env_quoted_and_runs_init_then_start_by_order() -> None:
    script = user_data(
        {
            "node_id": "web-1",
            "role": "web",
            "env": {"GREETING": "it's $HOME", "bad-name": "skipped", "N": 3},
            "services": {
                "start": {"cmd": "run start", "order": 0},
                "init": {"cmd": "run init", "order": 5},
                "scale_in": {"cmd": "run scale_in"},
            },
        }
    )
    assert script.startswith("#!/bin/sh\nset -e\n")
    assert "export GREETING='it'\"'\"'s $HOME'\n" in script
    assert "export N=3\n" in script and "bad-name" not in script
    # `order` decides: start (0) before init (5); other services never run at boot.
    assert script.index("run start") < script.index("run init")
    assert "scale_in" not in script


def _state() -> ClusterState:
    return ClusterState(
        nodes=[
            NodeState(node_id="web-1", role="web", status="running", cpu=1, memory=1024),
            NodeState(node_id="web-7", role="web", status="running", cpu=1, memory=1024),
            NodeState(node_id="db-1", role="db", status="running", volume_size=10),
        ]
    )


def _plan(action: str, params: dict[str, object]) -> list[list[tuple[str, dict[str, object]]]]:
    request = PlanRequest(action, dict(params), "cl-1", "pek3a", _state())
    return [[(t.action, t.params) for t in layer] for layer in provider.plan(request)]


def test_plans_carry_the_actions_parameters_to_their_tasks() -> None:
    add = _plan("add_nodes", {"role": "web", "count": 2})
    assert add[1] == [("launch", {"role": "web", "node_ids": ["web-8", "web-9"]})]
    assert add[4] == [
        ("services", {"role": "web", "node_ids": ["web-8", "web-9"], "services": ["scale_out"]})
    ]
    assert _plan("cease", {}) == [
        [("services", {"all": True, "services": ["stop"]})],
        [("terminate", {"all": True})],
        [("survey", {})],
    ]
    assert _plan("delete", {}) == [
        [("services", {"services": ["stop"]})],
        [("stop", {})],
        [("survey", {})],
    ]
    gone = _plan("delete_nodes", {"node_ids": ["web-7"]})
    assert gone[0] == [("services", {"node_ids": ["web-7"], "services": ["stop", "scale_in"]})]
    resize = _plan("resize", {"role": "db", "volume_size": 20})
    assert resize[0] == [("resize", {"role": "db", "volume_size": 20})]
    for action, params in (("add_nodes", {"role": "cache"}), ("resize", {"role": "x", "cpu": 2})):
        with pytest.raises(ProviderError) as refused:
            _plan(action, params)
        assert refused.value.code == "no_such_role"
