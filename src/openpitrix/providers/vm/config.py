"""config.json: the tree of settings a VM package asks for, and the user's settings checked
against it with defaults filled in, as OpenPitrix did (`{"cluster": {...}, "env": {...}}`).

An item of type `array` is a group: its `properties` are the items under its `key`. Leaf
types are checked as follows (any other type accepts any JSON scalar, as OpenPitrix did):
`integer` (a whole number, not a boolean), `number`, `string` and `password` (text),
`boolean`. Then `range` (the allowed values), `min` / `max` and `step` (numbers), `pattern`
(a regular expression searched in the text, as Go's `regexp.MatchString`) and `required`
(text must not be empty; `subnet` is exempt, since the runtime supplies it).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field

GROUP: Final = "array"
TEXT_TYPES: Final = ("string", "password")
MAX_TEXT: Final = 4096
MAX_PATTERN: Final = 500
# A quantified group that itself holds a quantifier, e.g. (a+)+ : the shape of patterns that
# backtrack exponentially. Refused when the package is checked.
_NESTED_QUANTIFIER: Final = re.compile(r"\([^()]*[*+}][^()]*\)[*+{]")


class ConfigItem(BaseModel):
    """One node of config.json; unknown keys (OpenPitrix's `limits`, `separator`, ...) kept."""

    model_config = ConfigDict(extra="allow")

    key: str = ""
    label: str = ""
    description: str = ""
    type: str = ""
    default: Any = None
    range: list[Any] | None = None
    min: float | None = None
    max: float | None = None
    step: int | None = None
    pattern: str | None = None
    required: bool = False
    changeable: bool | None = None
    properties: list[ConfigItem] = Field(default_factory=list)


@dataclass(frozen=True)
class FieldError:
    """A problem with one setting: `file` names config.json (the package) or conf (the user)."""

    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return (
            f"{self.file}: {self.field}: {self.message}"
            if self.field
            else f"{self.file}: {self.message}"
        )

    def as_dict(self) -> dict[str, str]:
        return {"file": self.file, "field": self.field, "message": self.message}


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _range_text(values: list[Any]) -> str:
    return "[" + ", ".join(_shown(v) for v in values) + "]"


def _same(a: Any, b: Any) -> bool:
    # 1 == True in Python; a range of booleans must not accept 1, nor a range of numbers true.
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def check_value(item: ConfigItem, value: Any) -> str | None:
    """Why `value` does not fit the leaf `item`, or None."""
    kind = item.type
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "integer" and not (isinstance(value, int) and not isinstance(value, bool)):
        return f"{_shown(value)} is not an integer"
    if kind == "number" and not number:
        return f"{_shown(value)} is not a number"
    if kind in TEXT_TYPES and not isinstance(value, str):
        return f"{_shown(value)} is not a string"
    if kind == "boolean" and not isinstance(value, bool):
        return f"{_shown(value)} is not a boolean"
    if kind not in (*TEXT_TYPES, "integer", "number", "boolean") and isinstance(
        value, (dict, list)
    ):
        return "is not a single value"
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return f"is longer than {MAX_TEXT} characters"
    if item.range is not None and not any(_same(value, allowed) for allowed in item.range):
        shown = "****" if kind == "password" else _shown(value)
        return f"{shown} not in range {_range_text(item.range)}"
    if number:
        if item.min is not None and value < item.min:
            return f"{_shown(value)} is less than min {_shown(item.min)}"
        if item.max is not None and value > item.max:
            return f"{_shown(value)} is more than max {_shown(item.max)}"
        if item.step and isinstance(value, int) and value % item.step:
            return f"{_shown(value)} is not a multiple of step {item.step}"
    if isinstance(value, str):
        if item.required and not value and item.key != "subnet":
            return "is required"
        if item.pattern and value and re.search(item.pattern, value) is None:
            return f"does not match pattern {item.pattern!r}"
    return None


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def check_config(root: ConfigItem, file: str = "config.json") -> list[FieldError]:
    """What is wrong with config.json itself: groups, keys, patterns and every default."""
    return list(_check_tree(root, "", file))


def _check_tree(item: ConfigItem, path: str, file: str) -> Iterator[FieldError]:
    if item.type != GROUP:
        yield from _check_leaf(item, path, file)
        return
    if not item.properties:
        yield FieldError(file, path or "(root)", "a group (type array) needs properties")
    seen: set[str] = set()
    for child in item.properties:
        if not child.key:
            yield FieldError(file, path or "(root)", "an item has no key")
            continue
        child_path = _join(path, child.key)
        if child.key in seen:
            yield FieldError(file, child_path, "key appears twice")
        seen.add(child.key)
        yield from _check_tree(child, child_path, file)


def _check_leaf(item: ConfigItem, path: str, file: str) -> Iterator[FieldError]:
    if item.pattern is not None:
        if len(item.pattern) > MAX_PATTERN:
            yield FieldError(file, path, f"pattern is longer than {MAX_PATTERN} characters")
            return
        if _NESTED_QUANTIFIER.search(item.pattern):
            yield FieldError(file, path, f"pattern {item.pattern!r} nests quantifiers")
            return
        try:
            re.compile(item.pattern)
        except re.error as exc:
            yield FieldError(file, path, f"pattern {item.pattern!r} is invalid: {exc}")
            return
    if item.min is not None and item.max is not None and item.min > item.max:
        yield FieldError(file, path, f"min {_shown(item.min)} is above max {_shown(item.max)}")
    if item.default is not None:
        problem = check_value(item, item.default)
        if problem is not None:
            yield FieldError(file, path, f"default {problem}")


def _zero(item: ConfigItem) -> Any:
    if item.default is not None:
        return item.default
    return {"integer": 0, "number": 0, "boolean": False}.get(item.type, "")


def default_settings(root: ConfigItem) -> dict[str, Any]:
    """The settings a user who changes nothing gets (OpenPitrix's GetDefaultConfig)."""
    filled, _ = fill_settings(root, {})
    return filled


def fill_settings(root: ConfigItem, conf: Any) -> tuple[dict[str, Any], list[FieldError]]:
    """The user's settings checked against config.json with defaults filled in, and the
    errors (every one found, each naming its field). A key config.json does not declare is
    an error too: a misspelt setting should not be silently ignored."""
    errors: list[FieldError] = []
    if root.type != GROUP:
        return {}, [FieldError("config.json", "(root)", "the root must be of type array")]
    filled = _fill_group(root, conf, "", errors)
    return filled, errors


def _fill_group(item: ConfigItem, conf: Any, path: str, errors: list[FieldError]) -> dict[str, Any]:
    if conf is None:
        conf = {}
    if not isinstance(conf, dict):
        errors.append(FieldError("conf", path or "(root)", "must be an object of settings"))
        conf = {}
    out: dict[str, Any] = {}
    known = {child.key for child in item.properties}
    for key in conf:
        if key not in known:
            errors.append(FieldError("conf", _join(path, str(key)), "unknown setting"))
    for child in item.properties:
        child_path = _join(path, child.key)
        given = conf.get(child.key)
        if child.type == GROUP:
            out[child.key] = _fill_group(child, given, child_path, errors)
            continue
        value = _zero(child) if given is None else given
        problem = check_value(child, value)
        if problem is not None:
            source = "config.json" if given is None else "conf"
            if given is None:
                problem = f"default {problem}"
            errors.append(FieldError(source, child_path, problem))
        out[child.key] = value
    return out


def secret_values(root: ConfigItem, settings: Any) -> list[str]:
    """The values of the `password` settings in filled-in settings, longest first (so that a
    secret holding another is hidden whole): what a shown manifest must not give away."""
    found: set[str] = set()

    def walk(item: ConfigItem, given: Any) -> None:
        if not isinstance(given, dict):
            return
        for child in item.properties:
            value = given.get(child.key)
            if child.type == GROUP:
                walk(child, value)
            elif child.type == "password" and isinstance(value, str) and value:
                found.add(value)

    walk(root, settings)
    return sorted(found, key=lambda s: (-len(s), s))
