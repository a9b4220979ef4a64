"""Reading a VM package: the archive's safety rules, the three files checked with errors that
name the file and field, and rendering a spec from package bytes and settings."""

from __future__ import annotations

import gzip
import json
import tarfile

import pytest

from openpitrix.providers.vm.package import (
    MAX_UNPACKED_BYTES,
    ClusterSpec,
    PackageError,
    SettingsError,
    load_package,
    read_archive,
    render_cluster,
    render_cluster_json,
    render_package,
)
from tests.support.vmpackages import (
    build_vm_package,
    file_member,
    op_create_package,
    tar_bytes,
)

GOOD = [
    file_member("app/package.json", b'{"name": "app", "version": "1.0.0"}'),
    file_member("app/config.json", b"{}"),
    file_member("app/cluster.json.tmpl", b"{}"),
]


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = target
    return info, None


def _refused(data: bytes) -> str:
    with pytest.raises(PackageError) as caught:
        read_archive(data)
    assert caught.value.status_code == 422 and caught.value.code == "invalid_package"
    return str(caught.value)


def test_a_well_formed_archive_yields_the_three_files_below_its_top_directory() -> None:
    extra = file_member("app/scripts/init.sh", b"#!/bin/sh\n")
    files = read_archive(tar_bytes([*GOOD, extra]))
    assert files == {
        "package.json": b'{"name": "app", "version": "1.0.0"}',
        "config.json": b"{}",
        "cluster.json.tmpl": b"{}",
    }


@pytest.mark.parametrize(
    ("member", "message"),
    [
        (file_member("/etc/passwd", b"x"), "unsafe path '/etc/passwd'"),
        (file_member("app/../../evil", b"x"), "unsafe path 'app/../../evil'"),
        (_link("app/config.json", "/etc/passwd"), "'app/config.json' is a link or special file"),
        (_link("app/x", "app/package.json", tarfile.LNKTYPE), "'app/x' is a link or special"),
        (_link("app/fifo", "", tarfile.FIFOTYPE), "'app/fifo' is a link or special file"),
        (file_member("other/readme", b"x"), "exactly one top directory"),
        (file_member("loose.txt", b"x"), "exactly one top directory"),
    ],
)
def test_unsafe_archives_are_refused(
    member: tuple[tarfile.TarInfo, bytes | None], message: str
) -> None:
    assert message in _refused(tar_bytes([*GOOD, member]))


def test_size_caps_hold_before_anything_is_read() -> None:
    assert "over 100 bytes" in _refused_with_cap(tar_bytes(GOOD), 100)
    # A compression bomb: stopped once the inflated size passes the cap.
    bomb = gzip.compress(b"\0" * (MAX_UNPACKED_BYTES + 1024))
    assert f"unpacks to over {MAX_UNPACKED_BYTES} bytes" in _refused(bomb)
    big = file_member("app/config.json", b" " * (1024 * 1024 + 1))
    assert "config.json: the file is over" in _refused(tar_bytes([GOOD[0], big, GOOD[2]]))
    assert "not a gzip-compressed tar archive" in _refused(b"PK\x03\x04 a zip")
    assert "not a readable tar archive" in _refused(gzip.compress(b"not a tar" * 100))


def _refused_with_cap(data: bytes, cap: int) -> str:
    with pytest.raises(PackageError) as caught:
        read_archive(data, max_bytes=cap)
    return str(caught.value)


def test_a_missing_file_is_named() -> None:
    with pytest.raises(PackageError) as caught:
        read_archive(tar_bytes(GOOD[:1]))
    assert [e["file"] for e in caught.value.details["errors"]] == [
        "config.json",
        "cluster.json.tmpl",
    ]
    assert str(caught.value) == (
        "config.json: the file is missing; cluster.json.tmpl: the file is missing"
    )


def test_malformed_files_are_named_with_their_field() -> None:
    spec = op_create_package()
    spec.package = {"name": "x"}
    with pytest.raises(PackageError) as caught:
        load_package(build_vm_package(spec))
    assert caught.value.details["errors"] == [
        {"file": "package.json", "field": "version", "message": "Field required"}
    ]

    broken = tar_bytes([GOOD[0], file_member("app/config.json", b"{nope"), GOOD[2]])
    with pytest.raises(PackageError, match=r"config.json: not valid JSON: line 1"):
        load_package(broken)


def test_the_default_settings_must_render_a_valid_spec() -> None:
    spec = op_create_package()
    spec.template = spec.template.replace('"count": "{{.cluster.role_name1.count}}",', "")
    with pytest.raises(PackageError) as caught:
        load_package(build_vm_package(spec))
    assert caught.value.details["errors"] == [
        {
            "file": "cluster.json.tmpl (rendered)",
            "field": "nodes.0.count",
            "message": "Field required",
        }
    ]

    spec = op_create_package()
    spec.config["properties"][0]["properties"][3]["properties"][0]["default"] = 3
    with pytest.raises(PackageError) as caught:
        load_package(build_vm_package(spec))
    assert (
        str(caught.value)
        == "config.json: cluster.role_name1.cpu: default 3 not in range [1, 2, 4, 8, 16]"
    )


def test_render_from_package_bytes_and_settings() -> None:
    package = load_package(build_vm_package(op_create_package("nginx")))
    conf = {"cluster": {"subnet": "vxnet-1", "role_name1": {"count": 5, "cpu": 4}}}
    spec = render_cluster(package, conf)
    assert isinstance(spec, ClusterSpec)
    assert spec.subnet == "vxnet-1"
    (role,) = spec.nodes
    assert (role.role, role.count, role.cpu, role.memory) == ("role_name1", 5, 4, 2048)
    assert role.volume.size == 10 and role.volume.mount_point == "/test_data"
    assert render_package(build_vm_package(op_create_package("nginx")), conf) == spec
    raw = render_cluster_json(package, conf)
    assert raw["nodes"][0]["count"] == 5 and "gpu" not in raw["nodes"][0]
    assert json.loads(json.dumps(raw)) == raw

    with pytest.raises(SettingsError) as caught:
        render_cluster(package, {"cluster": {"role_name1": {"count": 101}}})
    assert caught.value.status_code == 422 and caught.value.code == "invalid_settings"
    assert caught.value.details["errors"] == [
        {"file": "conf", "field": "cluster.role_name1.count", "message": "101 is more than max 100"}
    ]


def test_two_node_entries_for_one_role_are_refused() -> None:
    spec = op_create_package()
    document = spec.template.strip()
    node = document[document.index("[{") + 1 : document.rindex("}]") + 1]
    spec.template = document.replace(node, f"{node}, {node}")
    with pytest.raises(PackageError, match="role 'role_name1' appears in more than one"):
        load_package(build_vm_package(spec))
