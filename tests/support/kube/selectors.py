"""Label and field selectors with the real server's grammar, validation and matching rules."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tests.support.kube.resources import ResourceType
from tests.support.kube.status import ApiError, bad_request

Obj = dict[str, Any]
Matcher = Callable[[Obj], bool]

_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


def label_key_problem(key: str) -> str | None:
    """Why `key` is not a valid label/annotation key, or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in key and (not prefix or len(prefix) > 253 or not _SUBDOMAIN.match(prefix)):
        return (
            "prefix part a lowercase RFC 1123 subdomain must consist of lower case "
            "alphanumeric characters, '-' or '.', and must start and end with an alphanumeric "
            "character"
        )
    if not name or len(name) > 63 or not _NAME.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
            "start and end with an alphanumeric character"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if value == "":
        return None
    if len(value) > 63:
        return "must be no more than 63 characters"
    if not _NAME.match(value):
        return (
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character"
        )
    return None


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # exists, !, =, !=, in, notin, gt, lt
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        # gt / lt: the label must hold an integer
        try:
            have = int(str(value))
        except ValueError:
            return False
        return have > int(self.values[0]) if self.op == "gt" else have < int(self.values[0])


_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|<|>|[^\s,=!()<>]+)")


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            break
        if m.group(1):
            out.append(m.group(1))
        pos = m.end()
    return out


def _parse_error(detail: str) -> ApiError:
    return bad_request(f"unable to parse requirement: {detail}")


def parse_label_selector(text: str) -> list[Requirement]:
    tokens = _tokens(text)
    reqs: list[Requirement] = []
    i = 0

    def take() -> str:
        nonlocal i
        if i >= len(tokens):
            raise _parse_error(f"found '', expected more in {text!r}")
        i += 1
        return tokens[i - 1]

    while i < len(tokens):
        negate = tokens[i] == "!"
        if negate:
            i += 1
        key = take()
        problem = label_key_problem(key)
        if problem:
            raise _parse_error(f'key: Invalid value: "{key}": {problem}')
        nxt = tokens[i] if i < len(tokens) else ","
        if negate or nxt == ",":
            reqs.append(Requirement(key, "!" if negate else "exists"))
        elif nxt in ("=", "==", "!="):
            i += 1
            value = "" if i >= len(tokens) or tokens[i] == "," else take()
            reqs.append(Requirement(key, "!=" if nxt == "!=" else "=", (value,)))
        elif nxt in ("in", "notin"):
            i += 1
            if take() != "(":
                raise _parse_error(f"found '{tokens[i - 1]}', expected: '('")
            values: list[str] = []
            while True:
                tok = take()
                if tok == ")":
                    break
                if tok == ",":
                    continue
                values.append(tok)
            reqs.append(Requirement(key, nxt, tuple(values)))
        elif nxt in ("<", ">"):
            i += 1
            value = take()
            if not value.lstrip("-").isdigit():
                raise _parse_error("for 'Gt', 'Lt' operators, the value must be an integer")
            reqs.append(Requirement(key, "gt" if nxt == ">" else "lt", (value,)))
        else:
            raise _parse_error(f"found '{nxt}', expected: '=', '!=', '==', 'in', notin'")
        for value in reqs[-1].values if reqs[-1].op not in ("gt", "lt") else ():
            problem = label_value_problem(value)
            if problem:
                raise _parse_error(f'values[0][{key}]: Invalid value: "{value}": {problem}')
        if i < len(tokens):
            if tokens[i] != ",":
                raise _parse_error(f"found '{tokens[i]}', expected: ',' or 'end of string'")
            i += 1
    return reqs


def label_matcher(text: str | None) -> Matcher:
    if not text:
        return lambda obj: True
    reqs = parse_label_selector(text)

    def match(obj: Obj) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r.matches(labels) for r in reqs)

    return match


def selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A LabelSelector object (matchLabels / matchExpressions); an empty one matches all."""
    if not selector:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in selector.get("matchExpressions") or []:
        op = ops.get(str(expr.get("operator")))
        if op is None:
            return False
        req = Requirement(str(expr.get("key")), op, tuple(expr.get("values") or ()))
        if not req.matches(labels):
            return False
    return True


# Field selectors each kind supports beyond metadata.name / metadata.namespace.
_FIELDS: dict[str, tuple[str, ...]] = {
    "pods": (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    "events": (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    "secrets": ("type",),
    "namespaces": ("status.phase",),
    "nodes": ("spec.unschedulable",),
    "replicasets": ("status.replicas",),
    "jobs": ("status.successful",),
}


def _field_value(obj: Obj, path: str) -> str:
    if path == "source":
        return str((obj.get("source") or {}).get("component", ""))
    node: Any = obj
    for part in path.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, bool):
        return "true" if node else "false"
    return "" if node is None else str(node)


def field_matcher(text: str | None, rt: ResourceType) -> Matcher:
    if not text:
        return lambda obj: True
    allowed = ("metadata.name", "metadata.namespace", *_FIELDS.get(rt.plural, ()))
    terms: list[tuple[str, bool, str]] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.match(r"^([^=!]+)(==|=|!=)(.*)$", part)
        if m is None:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        name, op, value = m.group(1).strip(), m.group(2), m.group(3).strip()
        if name not in allowed:
            raise bad_request(f"field label not supported: {name}")
        terms.append((name, op == "!=", value))

    def match(obj: Obj) -> bool:
        return all((_field_value(obj, f) == v) != neg for f, neg, v in terms)

    return match
