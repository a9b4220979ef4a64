"""A VM app package: read safely from its .tgz, checked, and rendered into a cluster spec.

The archive holds one top directory with package.json, config.json and cluster.json.tmpl
(other files are allowed and ignored). Reading refuses links, devices, absolute paths, `..`,
more than one top directory, and archives over the size caps, and never touches the disk.
"""

from __future__ import annotations

import gzip
import io
import json
import tarfile
import zlib
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from openpitrix.errors import AppError
from openpitrix.providers.vm.config import (
    ConfigItem,
    FieldError,
    check_config,
    default_settings,
    fill_settings,
)
from openpitrix.providers.vm.template import TemplateError, render, render_json

PACKAGE_JSON: Final = "package.json"
CONFIG_JSON: Final = "config.json"
CLUSTER_TMPL: Final = "cluster.json.tmpl"
REQUIRED_FILES: Final = (PACKAGE_JSON, CONFIG_JSON, CLUSTER_TMPL)

MAX_PACKAGE_BYTES: Final = 10 * 1024 * 1024  # the .tgz as fetched
MAX_UNPACKED_BYTES: Final = 50 * 1024 * 1024  # all members together, uncompressed
MAX_FILE_BYTES: Final = 1024 * 1024  # each of the three files we read
MAX_MEMBERS: Final = 1000


class PackageError(AppError):
    """The package itself is unusable: a missing or malformed file, an unsafe archive, a
    template that does not render. `details.errors` lists each problem with its file."""

    status_code = 422
    code = "invalid_package"

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(
            "; ".join(str(e) for e in errors[:5]),
            details={"errors": [e.as_dict() for e in errors]},
        )
        self.errors = errors


class SettingsError(AppError):
    """The user's settings do not fit config.json; `details.errors` names each field."""

    status_code = 422
    code = "invalid_settings"

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__(
            "; ".join(str(e) for e in errors[:5]),
            details={"errors": [e.as_dict() for e in errors]},
        )
        self.errors = errors


def _problem(file: str, message: str, field: str = "") -> PackageError:
    return PackageError([FieldError(file, field, message)])


# ------------------------------------------------------------------------------------ models


class Maintainer(BaseModel):
    model_config = ConfigDict(extra="allow")

    name: str = ""
    email: str = ""


class PackageMeta(BaseModel):
    """package.json."""

    model_config = ConfigDict(extra="allow")

    api_version: str = ""
    name: str = Field(min_length=1)
    version: str = Field(min_length=1)
    app_version: str = ""
    description: str = ""
    home: str = ""
    icon: str = ""
    maintainers: list[Maintainer] = Field(default_factory=list)
    keywords: list[str] = Field(default_factory=list)
    sources: list[str] = Field(default_factory=list)
    screenshots: list[str] = Field(default_factory=list)


class Service(BaseModel):
    """A role's lifecycle command (init, start, stop, scale_out, scale_in, restart, destroy)."""

    model_config = ConfigDict(extra="allow")

    cmd: str = Field(default="", max_length=1000)
    order: int = Field(default=0, ge=0)
    timeout: int | None = Field(default=None, ge=1, le=86400)


class Volume(BaseModel):
    model_config = ConfigDict(extra="allow")

    size: int = Field(default=0, ge=0, description="GB per node.")
    mount_point: str | list[str] = ""
    filesystem: str = ""


class Container(BaseModel):
    model_config = ConfigDict(extra="allow")

    type: str = ""
    image: str = ""


class Role(BaseModel):
    """One entry of `nodes`: a role and the machines it runs on."""

    model_config = ConfigDict(extra="allow")

    role: str = ""
    count: int = Field(ge=0)
    cpu: int = Field(default=0, ge=0)
    memory: int = Field(default=0, ge=0, description="MiB per node.")
    gpu: int = Field(default=0, ge=0)
    instance_class: int | str | None = None
    volume: Volume = Field(default_factory=Volume)
    container: Container = Field(default_factory=Container)
    services: dict[str, Service] = Field(default_factory=dict)
    env: dict[str, Any] = Field(default_factory=dict)


class Endpoint(BaseModel):
    model_config = ConfigDict(extra="allow")

    port: int = Field(ge=0, le=65535)
    protocol: str = ""


class ClusterSpec(BaseModel):
    """The rendered cluster.json.tmpl: what a deploy creates."""

    model_config = ConfigDict(extra="allow")

    name: str = ""
    description: str = ""
    subnet: str = ""
    env: dict[str, Any] = Field(default_factory=dict)
    endpoints: dict[str, Endpoint] = Field(default_factory=dict)
    nodes: list[Role] = Field(min_length=1)

    @model_validator(mode="after")
    def _roles_are_unique(self) -> ClusterSpec:
        roles = [node.role for node in self.nodes]
        twice = sorted({r for r in roles if roles.count(r) > 1})
        if twice:
            raise ValueError(f"role {twice[0]!r} appears in more than one node entry")
        return self


@dataclass(frozen=True)
class VmPackage:
    """A package read and checked: its metadata, its settings tree and its template."""

    meta: PackageMeta
    config: ConfigItem
    template: str


# -------------------------------------------------------------------------------- the archive


def read_archive(data: bytes, *, max_bytes: int = MAX_PACKAGE_BYTES) -> dict[str, bytes]:
    """The regular files of a .tgz with one top directory, by path below it; refuses
    whatever could escape, link or exhaust. Run it in a thread."""
    if len(data) > max_bytes:
        raise _problem("package", f"the package is over {max_bytes} bytes")
    try:
        raw = _gunzip(data)
    except (OSError, EOFError, zlib.error) as exc:
        raise _problem("package", f"not a gzip-compressed tar archive: {exc}") from None
    try:
        with tarfile.open(fileobj=io.BytesIO(raw), mode="r:") as archive:
            files = _read_members(archive)
    except (tarfile.TarError, EOFError) as exc:
        raise _problem("package", f"not a readable tar archive: {exc}") from None
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise PackageError([FieldError(name, "", "the file is missing") for name in missing])
    return files


def _read_members(archive: tarfile.TarFile) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    tops: set[str] = set()
    members = archive.getmembers()
    if len(members) > MAX_MEMBERS:
        raise _problem("package", f"the archive has over {MAX_MEMBERS} entries")
    for member in members:
        name = member.name.replace("\\", "/")
        parts = [p for p in name.split("/") if p not in ("", ".")]
        if name.startswith("/") or ".." in parts or not parts:
            raise _problem("package", f"unsafe path {member.name!r} in the archive")
        if not (member.isfile() or member.isdir()):
            raise _problem(
                "package", f"{member.name!r} is a link or special file, which is not allowed"
            )
        tops.add(parts[0])
        if len(tops) > 1:
            raise _problem("package", "the archive must hold exactly one top directory")
        if member.isdir():
            continue
        if len(parts) == 1:
            raise _problem("package", f"{member.name!r} is not inside a top directory")
        relative = "/".join(parts[1:])
        if relative in REQUIRED_FILES:
            if member.size > MAX_FILE_BYTES:
                raise _problem(relative, f"the file is over {MAX_FILE_BYTES} bytes")
            extracted = archive.extractfile(member)
            assert extracted is not None
            files[relative] = extracted.read()
    return files


def _gunzip(data: bytes) -> bytes:
    """Inflate with a hard cap, so a compression bomb stops at MAX_UNPACKED_BYTES."""
    inflater = zlib.decompressobj(wbits=zlib.MAX_WBITS | 16)
    out = inflater.decompress(data, MAX_UNPACKED_BYTES + 1)
    if len(out) > MAX_UNPACKED_BYTES:
        raise _problem("package", f"the package unpacks to over {MAX_UNPACKED_BYTES} bytes")
    if not inflater.eof:
        raise gzip.BadGzipFile("the gzip stream ends early")
    return out


# ------------------------------------------------------------------------------------- loading


def _json_file(files: dict[str, bytes], name: str) -> Any:
    try:
        return json.loads(files[name].decode("utf-8"))
    except UnicodeDecodeError:
        raise _problem(name, "not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise _problem(name, f"not valid JSON: line {exc.lineno}: {exc.msg}") from None


def _model_errors(file: str, exc: ValidationError, prefix: str = "") -> list[FieldError]:
    errors = []
    for error in exc.errors():
        where = ".".join(str(p) for p in (prefix, *error["loc"]) if p != "")
        errors.append(FieldError(file, where, error["msg"]))
    return errors


def load_package(data: bytes) -> VmPackage:
    """Read and check a package's .tgz: all three files present and well formed, config.json
    consistent, and its default settings rendering a valid spec. Run it in a thread."""
    return package_from_files(read_archive(data))


def package_from_files(files: dict[str, bytes]) -> VmPackage:
    try:
        meta = PackageMeta.model_validate(_json_file(files, PACKAGE_JSON))
    except ValidationError as exc:
        raise PackageError(_model_errors(PACKAGE_JSON, exc)) from None
    try:
        config = ConfigItem.model_validate(_json_file(files, CONFIG_JSON))
    except ValidationError as exc:
        raise PackageError(_model_errors(CONFIG_JSON, exc)) from None
    problems = check_config(config)
    if problems:
        raise PackageError(problems)
    try:
        template = files[CLUSTER_TMPL].decode("utf-8")
    except UnicodeDecodeError:
        raise _problem(CLUSTER_TMPL, "not UTF-8 text") from None
    package = VmPackage(meta=meta, config=config, template=template)
    check_package(package)
    return package


def check_package(package: VmPackage) -> ClusterSpec:
    """The spec the default settings render to; a PackageError if they do not render one."""
    defaults = default_settings(package.config)
    _, errors = fill_settings(package.config, defaults)
    if errors:
        raise PackageError(errors)
    try:
        return _spec(package, defaults)
    except SettingsError as exc:  # the defaults are the package's own
        raise PackageError(exc.errors) from None


# ----------------------------------------------------------------------------------- rendering


def settings_for(package: VmPackage, conf: Any) -> dict[str, Any]:
    """The user's settings checked against config.json, defaults filled in."""
    filled, errors = fill_settings(package.config, conf)
    if errors:
        # A default that fails is the package's fault, one the user's value fixes: either
        # way the user sees every problem named.
        raise SettingsError(errors)
    return filled


def render_cluster_json(package: VmPackage, conf: Any) -> Any:
    """cluster.json.tmpl rendered with the user's settings (checked, defaults filled), as the
    JSON document it makes."""
    settings = settings_for(package, conf)
    try:
        return render_json(package.template, settings)
    except TemplateError as exc:
        raise _problem(CLUSTER_TMPL, exc.message, field=f"line {exc.line}") from None


def render_cluster(package: VmPackage, conf: Any) -> ClusterSpec:
    """The cluster spec a deploy with these settings creates."""
    return _spec(package, settings_for(package, conf))


def render_package(data: bytes, conf: Any) -> ClusterSpec:
    """A release's cluster spec straight from its package bytes and settings: `load_package`
    then `render_cluster`, for a provider's render task. Run it in a thread."""
    return render_cluster(load_package(data), conf)


def render_cluster_text(package: VmPackage, conf: Any) -> str:
    """The rendered text itself, before it is decoded (for showing a package author)."""
    try:
        return render(package.template, settings_for(package, conf))
    except TemplateError as exc:
        raise _problem(CLUSTER_TMPL, exc.message, field=f"line {exc.line}") from None


def _spec(package: VmPackage, settings: dict[str, Any]) -> ClusterSpec:
    document = render_cluster_json(package, settings)
    if not isinstance(document, dict):
        raise _problem(CLUSTER_TMPL, "the rendered document is not a JSON object")
    try:
        return ClusterSpec.model_validate(document)
    except ValidationError as exc:
        raise PackageError(_model_errors(f"{CLUSTER_TMPL} (rendered)", exc)) from None
