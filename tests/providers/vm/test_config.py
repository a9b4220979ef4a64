"""config.json: the package's own settings tree checked, and a user's settings checked against
it with defaults filled in, each problem naming its file and field."""

from __future__ import annotations

from typing import Any

from openpitrix.providers.vm.config import (
    ConfigItem,
    check_config,
    default_settings,
    fill_settings,
)
from tests.support.vmpackages import op_create_config


def _tree(*items: dict[str, Any]) -> ConfigItem:
    cluster = {"key": "cluster", "type": "array", "properties": list(items)}
    return ConfigItem.model_validate({"type": "array", "properties": [cluster]})


def _web(**cpu: Any) -> dict[str, Any]:
    item = {"key": "cpu", "type": "integer", "default": 1, "range": [1, 2, 4], **cpu}
    return {"key": "web", "type": "array", "properties": [item]}


def _errors(root: ConfigItem, conf: Any) -> list[str]:
    return [str(e) for e in fill_settings(root, conf)[1]]


def test_defaults_fill_every_leaf_like_openpitrix_get_default_config() -> None:
    root = ConfigItem.model_validate(op_create_config("nginx"))
    assert check_config(root) == []
    assert default_settings(root) == {
        "cluster": {
            "name": "nginx",
            "description": "",
            "subnet": "",
            "role_name1": {
                "cpu": 1,
                "memory": 2048,
                "count": 3,
                "volume_size": 10,
                "instance_class": 0,
            },
        }
    }
    # An item without a default takes its type's zero value.
    bare = _tree(
        {"key": "n", "type": "integer"},
        {"key": "f", "type": "number"},
        {"key": "b", "type": "boolean"},
        {"key": "s", "type": "string"},
    )
    assert default_settings(bare) == {"cluster": {"n": 0, "f": 0, "b": False, "s": ""}}


def test_the_users_values_replace_defaults_and_the_rest_are_kept() -> None:
    root = ConfigItem.model_validate(op_create_config())
    filled, errors = fill_settings(
        root, {"cluster": {"subnet": "vxnet-1", "role_name1": {"count": 5, "cpu": None}}}
    )
    assert errors == []
    assert filled["cluster"]["subnet"] == "vxnet-1"
    assert filled["cluster"]["role_name1"] == {
        "cpu": 1,  # null means "the default", as in OpenPitrix
        "memory": 2048,
        "count": 5,
        "volume_size": 10,
        "instance_class": 0,
    }


def test_a_default_outside_its_range_names_config_json_and_the_field() -> None:
    root = _tree(_web(default=3))
    assert [str(e) for e in check_config(root)] == [
        "config.json: cluster.web.cpu: default 3 not in range [1, 2, 4]"
    ]


def test_the_package_tree_itself_is_checked() -> None:
    root = ConfigItem.model_validate(
        {
            "type": "array",
            "properties": [
                {"key": "a", "type": "array", "properties": []},
                {"key": "b", "type": "string", "pattern": "(a+)+$"},
                {"key": "c", "type": "string", "pattern": "[unclosed"},
                {"key": "d", "type": "integer", "min": 5, "max": 1},
                {"key": "d", "type": "string"},
                {"type": "string"},
            ],
        }
    )
    found = [str(e) for e in check_config(root)]
    assert found[0] == "config.json: a: a group (type array) needs properties"
    assert found[1] == "config.json: b: pattern '(a+)+$' nests quantifiers"
    assert found[2].startswith("config.json: c: pattern '[unclosed' is invalid")
    assert found[3:] == [
        "config.json: d: min 5 is above max 1",
        "config.json: d: key appears twice",
        "config.json: (root): an item has no key",
    ]


def test_types_are_checked_strictly() -> None:
    root = _tree(
        {"key": "n", "type": "integer", "default": 1},
        {"key": "f", "type": "number", "default": 1.5},
        {"key": "b", "type": "boolean", "default": False},
        {"key": "s", "type": "string", "default": "x"},
        {"key": "p", "type": "password", "default": "x"},
    )
    conf = {"cluster": {"n": "1", "f": True, "b": 1, "s": 5, "p": ["x"]}}
    assert _errors(root, conf) == [
        "conf: cluster.n: '1' is not an integer",
        "conf: cluster.f: true is not a number",
        "conf: cluster.b: 1 is not a boolean",
        "conf: cluster.s: 5 is not a string",
        "conf: cluster.p: ['x'] is not a string",
    ]
    assert _errors(root, {"cluster": {"n": 2.0}}) == ["conf: cluster.n: 2 is not an integer"]
    assert _errors(root, {"cluster": {"n": 7, "f": 2, "b": True, "s": "", "p": "y"}}) == []


def test_range_min_max_step_pattern_and_required() -> None:
    root = _tree(
        _web(),
        {"key": "count", "type": "integer", "default": 1, "min": 1, "max": 10},
        {"key": "size", "type": "integer", "default": 10, "step": 10},
        {"key": "ratio", "type": "number", "default": 0.5, "min": 0.1, "max": 0.9},
        {"key": "email", "type": "string", "default": "a@b", "pattern": "^[^@]+@[^@]+$"},
        {"key": "owner", "type": "string", "default": "me", "required": True},
        {"key": "subnet", "type": "string", "default": "", "required": True},
        {"key": "flag", "type": "boolean", "default": False, "range": [False]},
    )
    conf = {
        "cluster": {
            "web": {"cpu": 3},
            "count": 11,
            "size": 15,
            "ratio": 0.05,
            "email": "nobody",
            "owner": "",
            "flag": True,
        }
    }
    assert _errors(root, conf) == [
        "conf: cluster.web.cpu: 3 not in range [1, 2, 4]",
        "conf: cluster.count: 11 is more than max 10",
        "conf: cluster.size: 15 is not a multiple of step 10",
        "conf: cluster.ratio: 0.05 is less than min 0.1",
        "conf: cluster.email: does not match pattern '^[^@]+@[^@]+$'",
        "conf: cluster.owner: is required",
        "conf: cluster.flag: true not in range [false]",
    ]
    # A boolean is not a member of a range of numbers, though True == 1 in Python.
    assert _errors(root, {"cluster": {"web": {"cpu": True}}}) == [
        "conf: cluster.web.cpu: true is not an integer"
    ]


def test_unknown_settings_and_wrong_shapes_are_named() -> None:
    root = _tree(_web())
    assert _errors(root, {"cluster": {"web": {"cpu": 2, "gpu": 1}, "db": {}}, "env": 1}) == [
        "conf: env: unknown setting",
        "conf: cluster.db: unknown setting",
        "conf: cluster.web.gpu: unknown setting",
    ]
    assert _errors(root, {"cluster": {"web": 4}}) == [
        "conf: cluster.web: must be an object of settings"
    ]
    assert _errors(root, [1]) == ["conf: (root): must be an object of settings"]
