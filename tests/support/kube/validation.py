"""Validation (422 Invalid) and decoding checks (400) the real server applies to writes."""

# Covers names, labels/annotations, the workload rules that bite charts (selector required and
# matching the template, selector immutable, StatefulSet spec mostly immutable, Job restart policy
# and immutable template), Services, PVCs, ConfigMap/Secret keys and immutability, and CRD basics.
# Deeper per-field rules of the real validators are not reproduced.

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any

from tests.support.kube.crds import crd_causes
from tests.support.kube.resources import ResourceType
from tests.support.kube.selectors import (
    label_key_problem,
    label_value_problem,
    selector_matches,
)
from tests.support.kube.status import bad_request, invalid

Obj = dict[str, Any]
Cause = tuple[str, str, str]

_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' "
    "or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex "
    r"used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
_DNS1035_MSG = (
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
    "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
    "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
)


def _go_map(value: Any) -> str:
    if isinstance(value, dict):
        inner = ", ".join(f'"{k}":"{v}"' for k, v in sorted(value.items()))
        return f"map[string]string{{{inner}}}"
    return json.dumps(value)


def check_decodable(rt: ResourceType, obj: Obj) -> None:
    """Type errors the real server reports while decoding the body (400 BadRequest)."""
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        if meta is None:
            return
        raise bad_request(
            "json: cannot unmarshal into Go struct field .metadata of type v1.ObjectMeta"
        )
    string_maps = [
        ("metadata.labels", meta.get("labels")),
        ("metadata.annotations", meta.get("annotations")),
    ]
    if rt.builtin and rt.kind == "ConfigMap":
        string_maps.append(("data", obj.get("data")))
    if rt.builtin and rt.kind == "Secret":
        string_maps.append(("stringData", obj.get("stringData")))
    for where, value in string_maps:
        if value is None:
            continue
        if not isinstance(value, dict):
            raise bad_request(
                f"json: cannot unmarshal into Go struct field {where} of type map[string]string"
            )
        for key, item in value.items():
            if not isinstance(item, str):
                kind = "number" if isinstance(item, (int, float)) else type(item).__name__
                if isinstance(item, bool):
                    kind = "bool"
                raise bad_request(
                    f"json: cannot unmarshal {kind} into Go struct field {where} of type string "
                    f"(key {key!r})"
                )
    if rt.builtin and rt.kind == "Secret":
        for key, item in (obj.get("data") or {}).items():
            try:
                base64.b64decode(str(item), validate=True)
            except (binascii.Error, ValueError):
                raise bad_request(f"illegal base64 data at input byte 0 (data[{key!r}])") from None


def _name_causes(rt: ResourceType, meta: Obj) -> list[Cause]:
    name = meta.get("name")
    if not name:
        return [
            (
                "metadata.name",
                "FieldValueRequired",
                "Required value: name or generateName is required",
            )
        ]
    name = str(name)
    if rt.builtin and rt.kind in ("Namespace",):
        ok, msg = _LABEL.match(name) and len(name) <= 63, _LABEL_MSG
    elif rt.builtin and rt.kind == "Service":
        ok, msg = _DNS1035.match(name) and len(name) <= 63, _DNS1035_MSG
    else:
        ok, msg = _SUBDOMAIN.match(name) and len(name) <= 253, _SUBDOMAIN_MSG
    if not ok:
        return [("metadata.name", "FieldValueInvalid", f'Invalid value: "{name}": {msg}')]
    return []


def _meta_causes(meta: Obj) -> list[Cause]:
    causes: list[Cause] = []
    for key, value in (meta.get("labels") or {}).items():
        problem = label_key_problem(key)
        if problem:
            causes.append(
                ("metadata.labels", "FieldValueInvalid", f'Invalid value: "{key}": {problem}')
            )
        problem = label_value_problem(value)
        if problem:
            causes.append(
                ("metadata.labels", "FieldValueInvalid", f'Invalid value: "{value}": {problem}')
            )
    for key in meta.get("annotations") or {}:
        problem = label_key_problem(key)
        if problem:
            causes.append(
                ("metadata.annotations", "FieldValueInvalid", f'Invalid value: "{key}": {problem}')
            )
    size = sum(len(k) + len(str(v)) for k, v in (meta.get("annotations") or {}).items())
    if size > 256 * 1024:
        causes.append(
            (
                "metadata.annotations",
                "FieldValueTooLong",
                "Too long: must have at most 262144 bytes",
            )
        )
    return causes


def _pod_spec_causes(spec: Any, where: str) -> list[Cause]:
    if not isinstance(spec, dict):
        return [(where, "FieldValueRequired", "Required value")]
    containers = spec.get("containers")
    if not containers:
        return [(f"{where}.containers", "FieldValueRequired", "Required value")]
    causes: list[Cause] = []
    seen: set[str] = set()
    for i, c in enumerate(containers):
        here = f"{where}.containers[{i}]"
        name = c.get("name") if isinstance(c, dict) else None
        if not name:
            causes.append((f"{here}.name", "FieldValueRequired", "Required value"))
        elif not _LABEL.match(str(name)):
            causes.append(
                (f"{here}.name", "FieldValueInvalid", f'Invalid value: "{name}": {_LABEL_MSG}')
            )
        elif name in seen:
            causes.append((f"{here}.name", "FieldValueDuplicate", f'Duplicate value: "{name}"'))
        else:
            seen.add(str(name))
        if isinstance(c, dict) and not c.get("image"):
            causes.append((f"{here}.image", "FieldValueRequired", "Required value"))
    return causes


def _workload_causes(rt: ResourceType, obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    causes: list[Cause] = []
    selector = spec.get("selector")
    if not selector:
        causes.append(("spec.selector", "FieldValueRequired", "Required value"))
    labels = (template.get("metadata") or {}).get("labels") or {}
    if selector and not selector_matches(selector, labels):
        causes.append(
            (
                "spec.template.metadata.labels",
                "FieldValueInvalid",
                f"Invalid value: {_go_map(labels)}: `selector` does not match template `labels`",
            )
        )
    causes += _pod_spec_causes(template.get("spec"), "spec.template.spec")
    policy = (template.get("spec") or {}).get("restartPolicy", "Always")
    if rt.kind == "Deployment" and policy != "Always":
        causes.append(
            (
                "spec.template.spec.restartPolicy",
                "FieldValueNotSupported",
                f'Unsupported value: "{policy}": supported values: "Always"',
            )
        )
    if old is not None:
        old_spec = old.get("spec") or {}
        if old_spec.get("selector") != selector:
            causes.append(
                (
                    "spec.selector",
                    "FieldValueInvalid",
                    f"Invalid value: {json.dumps(selector)}: field is immutable",
                )
            )
        if rt.kind == "StatefulSet":
            mutable = {
                "replicas",
                "template",
                "updateStrategy",
                "persistentVolumeClaimRetentionPolicy",
                "minReadySeconds",
                "ordinals",
                "revisionHistoryLimit",
            }
            frozen = {k: v for k, v in spec.items() if k not in mutable}
            old_frozen = {k: v for k, v in old_spec.items() if k not in mutable}
            if frozen != old_frozen:
                causes.append(
                    (
                        "spec",
                        "FieldValueForbidden",
                        "Forbidden: updates to statefulset spec for fields other than "
                        "'replicas', 'ordinals', 'template', 'updateStrategy', "
                        "'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are "
                        "forbidden",
                    )
                )
    return causes


def _job_causes(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    template = spec.get("template") or {}
    causes = _pod_spec_causes(template.get("spec"), "spec.template.spec")
    policy = (template.get("spec") or {}).get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        causes.append(
            (
                "spec.template.spec.restartPolicy",
                "FieldValueRequired" if policy is None else "FieldValueNotSupported",
                f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"',
            )
        )
    if old is not None and (old.get("spec") or {}).get("template") != template:
        causes.append(
            ("spec.template", "FieldValueInvalid", "Invalid value: ...: field is immutable")
        )
    return causes


def _service_causes(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    kind = spec.get("type", "ClusterIP")
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(
            (
                "spec.type",
                "FieldValueNotSupported",
                f'Unsupported value: "{kind}": supported values: "ClusterIP", '
                '"ExternalName", "LoadBalancer", "NodePort"',
            )
        )
    ports = spec.get("ports") or []
    if not ports and kind != "ExternalName" and spec.get("clusterIP") != "None":
        causes.append(("spec.ports", "FieldValueRequired", "Required value"))
    for i, port in enumerate(ports):
        number = port.get("port") if isinstance(port, dict) else None
        if not isinstance(number, int) or not 1 <= number <= 65535:
            causes.append(
                (
                    f"spec.ports[{i}].port",
                    "FieldValueInvalid",
                    f"Invalid value: {json.dumps(number)}: must be between 1 and 65535, inclusive",
                )
            )
        if len(ports) > 1 and isinstance(port, dict) and not port.get("name"):
            causes.append((f"spec.ports[{i}].name", "FieldValueRequired", "Required value"))
    old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
    if old_ip and spec.get("clusterIP") and spec["clusterIP"] != old_ip:
        causes.append(
            (
                "spec.clusterIPs[0]",
                "FieldValueInvalid",
                f'Invalid value: []string{{"{spec["clusterIP"]}"}}: may not change once set',
            )
        )
    return causes


def _data_causes(obj: Obj, old: Obj | None) -> list[Cause]:
    causes: list[Cause] = []
    for field in ("data", "binaryData"):
        for key in obj.get(field) or {}:
            if not _CONFIG_KEY.match(key):
                causes.append(
                    (
                        f"{field}[{key}]",
                        "FieldValueInvalid",
                        f'Invalid value: "{key}": a valid config key must consist of '
                        "alphanumeric characters, '-', '_' or '.'",
                    )
                )
    if old is not None and old.get("immutable") is True:
        if obj.get("data") != old.get("data") or obj.get("binaryData") != old.get("binaryData"):
            causes.append(
                (
                    "data",
                    "FieldValueForbidden",
                    "Forbidden: field is immutable when `immutable` is set",
                )
            )
        if obj.get("immutable") is not True:
            causes.append(
                (
                    "immutable",
                    "FieldValueForbidden",
                    "Forbidden: field is immutable when `immutable` is set",
                )
            )
    return causes


def _pvc_causes(obj: Obj, old: Obj | None) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    if not spec.get("accessModes"):
        causes.append(
            (
                "spec.accessModes",
                "FieldValueRequired",
                "Required value: at least 1 access mode is required",
            )
        )
    if not ((spec.get("resources") or {}).get("requests") or {}).get("storage"):
        causes.append(("spec.resources[storage]", "FieldValueRequired", "Required value"))
    if old is not None:
        kept = ("resources", "volumeName")
        before = {k: v for k, v in (old.get("spec") or {}).items() if k not in kept}
        after = {k: v for k, v in spec.items() if k not in kept}
        if before != after:
            causes.append(
                (
                    "spec",
                    "FieldValueForbidden",
                    "Forbidden: spec is immutable after creation except resources.requests "
                    "and volumeAttributesClassName for bound claims",
                )
            )
    return causes


def validate(rt: ResourceType, obj: Obj, old: Obj | None) -> None:
    """Raise the 422 Invalid Status when `obj` (defaulted) may not be stored."""
    meta = obj["metadata"]
    causes = _name_causes(rt, meta) + _meta_causes(meta)
    kind = rt.kind if rt.builtin else ""
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        causes += _workload_causes(rt, obj, old)
    elif kind == "Job":
        causes += _job_causes(obj, old)
    elif kind == "Pod":
        causes += _pod_spec_causes(obj.get("spec"), "spec")
    elif kind == "Service":
        causes += _service_causes(obj, old)
    elif kind in ("ConfigMap", "Secret"):
        causes += _data_causes(obj, old)
    elif kind == "PersistentVolumeClaim":
        causes += _pvc_causes(obj, old)
    elif kind == "CustomResourceDefinition":
        causes += crd_causes(obj)
    if causes:
        raise invalid(rt, str(meta.get("name") or meta.get("generateName") or ""), causes)
