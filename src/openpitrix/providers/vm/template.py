"""The Go-template subset OpenPitrix's cluster.json.tmpl files use, rendered the way it did.

OpenPitrix replaced every `"{{` with `{{ getv ` and every `}}"` with `}}` before parsing, so a
quoted action yields a JSON value of the value's own type: a string comes out JSON-quoted, a
number or boolean bare, a missing value `null`. We mark those actions while lexing instead of
rewriting the text, with the same effect.

The subset (anything else is a `TemplateError` naming the file and line):
- text, `{{ pipeline }}`, trim markers `{{-` / `-}}`, comments `{{/* ... */}}`;
- operands: `.`, field chains `.a.b`, `$`, `$var.a.b`, strings ("..." and `...`), integers,
  floats, `true`, `false`, `nil`, parenthesised pipelines; pipes `a | f b`;
- `if` / `else if` / `else` / `end`, `range` (with `$v :=` or `$i, $v :=`; maps in key order)
  with `else`, `with` with `else`; variables `$x := ...` and `$x = ...`;
- functions `eq ne lt le gt ge and or not len index`.
Missing keys are an error (Go printed `null` or nothing); an action inside a longer string
inserts the value's text JSON-escaped (Go's html/template HTML-escaped it); maps and lists
print as JSON (Go printed its own `map[...]` syntax, which was never valid JSON).

Rendering is a pure function of the template and the data: no file, network or clock; the
output size, the steps taken and the nesting depth are bounded.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from openpitrix.providers.vm.template_syntax import (
    FUNCTION_NAMES,
    Block,
    Expr,
    Node,
    Out,
    Pipeline,
    TemplateError,
    parse,
)

__all__ = ["TemplateError", "go_json_string", "go_number", "render", "render_json", "truth"]

MAX_OUTPUT_BYTES: Final = 1024 * 1024
MAX_STEPS: Final = 200_000


# ---------------------------------------------------------------------------------- functions


def _comparable(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool)
    if isinstance(a, numbers) and isinstance(b, numbers):
        return True
    return type(a) is type(b) or a is None or b is None


def _compare(name: str, op: Callable[[Any, Any], bool]) -> Callable[..., Any]:
    def call(*args: Any) -> bool:
        if len(args) != 2:
            raise ValueError(f"{name} takes 2 arguments")
        a, b = args
        if not _comparable(a, b) or not isinstance(a, (int, float, str)):
            raise ValueError(f"{name}: cannot order {_kind(a)} and {_kind(b)}")
        return op(a, b)

    return call


def _eq(*args: Any) -> bool:
    if len(args) < 2:
        raise ValueError("eq takes at least 2 arguments")
    first = args[0]
    for other in args[1:]:
        if not _comparable(first, other):
            raise ValueError(f"eq: cannot compare {_kind(first)} and {_kind(other)}")
        if first == other:
            return True
    return False


def _ne(*args: Any) -> bool:
    if len(args) != 2:
        raise ValueError("ne takes 2 arguments")
    return not _eq(*args)


def _len(*args: Any) -> int:
    if len(args) != 1 or not isinstance(args[0], (str, list, dict)):
        raise ValueError("len takes one string, list or map")
    return len(args[0])


def _index(*args: Any) -> Any:
    if not args:
        raise ValueError("index takes a value and keys")
    value = args[0]
    for key in args[1:]:
        if isinstance(value, dict) and isinstance(key, str):
            if key not in value:
                raise ValueError(f"index: no key {key!r}")
            value = value[key]
        elif isinstance(value, list) and isinstance(key, int) and not isinstance(key, bool):
            if not 0 <= key < len(value):
                raise ValueError(f"index: {key} out of range")
            value = value[key]
        else:
            raise ValueError(f"index: cannot index {_kind(value)} with {_kind(key)}")
    return value


def _not(*args: Any) -> bool:
    if len(args) != 1:
        raise ValueError("not takes 1 argument")
    return not truth(args[0])


_FUNCTIONS: Final[dict[str, Callable[..., Any]]] = {
    "eq": _eq,
    "ne": _ne,
    "lt": _compare("lt", lambda a, b: a < b),
    "le": _compare("le", lambda a, b: a <= b),
    "gt": _compare("gt", lambda a, b: a > b),
    "ge": _compare("ge", lambda a, b: a >= b),
    "len": _len,
    "index": _index,
    "not": _not,
    # and / or evaluate lazily, like Go's since 1.18: see _Renderer.command.
    "and": lambda *a: a,
    "or": lambda *a: a,
}
assert set(_FUNCTIONS) == FUNCTION_NAMES


def truth(value: Any) -> bool:
    """Go's notion of a true value: not false, 0, nil or empty."""
    if value is None or value is False:
        return False
    if isinstance(value, (int, float, str, list, dict)):
        return bool(value)
    return True


def _kind(value: Any) -> str:
    if value is None:
        return "nil"
    return {bool: "bool", int: "int", float: "float", str: "string", list: "list"}.get(
        type(value), "map" if isinstance(value, dict) else type(value).__name__
    )


# ---------------------------------------------------------------------------------- printing


def go_json_string(text: str) -> str:
    """A string as Go's encoding/json writes it (HTML-safe: <, > and & escaped)."""
    quoted = json.dumps(text, ensure_ascii=False)
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        quoted = quoted.replace(raw, escaped)
    return quoted.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def go_number(value: int | float) -> str:
    """A number as Go's encoding/json writes it: 2.0 is 2, tiny and huge ones in e-notation."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return repr(value)


def _as_json(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return go_number(value)
    if isinstance(value, str):
        return go_json_string(value)
    if value is None:
        return "null"
    if isinstance(value, list):
        return "[" + ",".join(_as_json(v) for v in value) + "]"
    if isinstance(value, dict):
        items = (f"{go_json_string(str(k))}:{_as_json(v)}" for k, v in sorted(value.items()))
        return "{" + ",".join(items) + "}"
    raise ValueError(f"cannot print a {_kind(value)}")


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return go_json_string(value)[1:-1]
    if value is None:
        return ""
    return _as_json(value)


# --------------------------------------------------------------------------------- rendering


class _Renderer:
    def __init__(self, file: str, data: Any, max_output: int, max_steps: int) -> None:
        self.file = file
        self.data = data
        self.out: list[str] = []
        self.size = 0
        self.steps = 0
        self.max_output = max_output
        self.max_steps = max_steps
        self.scopes: list[dict[str, Any]] = [{"$": data}]

    def write(self, text: str, line: int) -> None:
        self.size += len(text.encode())
        if self.size > self.max_output:
            raise TemplateError(self.file, line, f"output exceeds {self.max_output} bytes")
        self.out.append(text)

    def step(self, line: int) -> None:
        self.steps += 1
        if self.steps > self.max_steps:
            raise TemplateError(self.file, line, f"rendering takes over {self.max_steps} steps")

    def run(self, nodes: list[Node], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, str):
                self.write(node, 0)
            elif isinstance(node, Out):
                value = self.pipeline(node.pipe, dot)
                if node.pipe.decl:
                    continue  # a declaration prints nothing
                try:
                    text = _as_json(value) if node.quoted else _as_text(value)
                except ValueError as exc:
                    raise TemplateError(self.file, node.pipe.line, str(exc)) from None
                self.write(text, node.pipe.line)
            else:
                self.block(node, dot)

    def block(self, node: Block, dot: Any) -> None:
        line = node.pipe.line
        self.step(line)
        self.scopes.append({})
        try:
            if node.kind == "range":
                self.range(node, dot)
                return
            value = self.pipeline(node.pipe, dot)
            if truth(value):
                self.run(node.body, value if node.kind == "with" else dot)
            else:
                self.run(node.otherwise, dot)
        finally:
            self.scopes.pop()

    def range(self, node: Block, dot: Any) -> None:
        pipe = node.pipe
        value = self.pipeline(Pipeline((), False, pipe.commands, pipe.line), dot)
        if isinstance(value, dict):
            items: list[tuple[Any, Any]] = sorted(value.items())
        elif isinstance(value, list):
            items = list(enumerate(value))
        elif value is None:
            items = []
        else:
            raise TemplateError(self.file, pipe.line, f"range over a {_kind(value)}")
        if not items:
            self.run(node.otherwise, dot)
            return
        for key, item in items:
            self.step(pipe.line)
            if len(pipe.decl) == 2:
                self.scopes[-1][pipe.decl[0]] = key
                self.scopes[-1][pipe.decl[1]] = item
            elif pipe.decl:
                self.scopes[-1][pipe.decl[0]] = item
            self.run(node.body, item)

    def pipeline(self, pipe: Pipeline, dot: Any) -> Any:
        value: Any = _NOTHING
        for command in pipe.commands:
            value = self.command(command, dot, value, pipe.line)
        if pipe.decl:
            name = pipe.decl[0]
            if pipe.assign:
                scope = next((s for s in reversed(self.scopes) if name in s), None)
                if scope is None:
                    raise TemplateError(self.file, pipe.line, f"undefined variable {name}")
                scope[name] = value
            elif len(pipe.decl) == 1:
                self.scopes[-1][name] = value
        return value

    def command(self, command: list[Expr], dot: Any, piped: Any, line: int) -> Any:
        self.step(line)
        head = command[0]
        try:
            if head.kind != "call":
                if len(command) > 1 or piped is not _NOTHING:
                    raise ValueError("only a function takes arguments")
                return self.operand(head, dot, line)
            args = [self.operand(e, dot, line) for e in command[1:]]
            if piped is not _NOTHING:
                args.append(piped)
            if head.value in ("and", "or"):
                if not args:
                    raise ValueError(f"{head.value} takes arguments")
                for arg in args:
                    if truth(arg) != (head.value == "and"):
                        return arg
                return args[-1]
            return _FUNCTIONS[head.value](*args)
        except ValueError as exc:
            raise TemplateError(self.file, line, str(exc)) from None

    def operand(self, expr: Expr, dot: Any, line: int) -> Any:
        if expr.kind == "literal":
            return expr.value
        if expr.kind == "field":
            return self.walk(dot, expr.path, ".", line)
        if expr.kind == "var":
            name = expr.value
            scope = next((s for s in reversed(self.scopes) if name in s), None)
            if scope is None:
                raise TemplateError(self.file, line, f"undefined variable {name}")
            return self.walk(scope[name], expr.path, name, line)
        if expr.kind == "pipe":
            assert expr.pipe is not None
            return self.pipeline(expr.pipe, dot)
        raise TemplateError(self.file, line, f"{expr.value} needs to be called with arguments")

    def walk(self, value: Any, path: tuple[str, ...], start: str, line: int) -> Any:
        seen = start
        for part in path:
            if not isinstance(value, dict):
                raise TemplateError(
                    self.file, line, f"{seen} is a {_kind(value)}, it has no key {part!r}"
                )
            if part not in value:
                shown = f"{seen.rstrip('.')}.{part}" if seen != "." else f".{part}"
                raise TemplateError(self.file, line, f"{shown}: no such key in the settings")
            value = value[part]
            seen = f"{seen.rstrip('.')}.{part}"
        return value


_NOTHING: Final = object()


def render(
    source: str,
    data: Any,
    *,
    file: str = "cluster.json.tmpl",
    max_output: int = MAX_OUTPUT_BYTES,
    max_steps: int = MAX_STEPS,
) -> str:
    """Render `source` with `data` as dot; a `TemplateError` names the file and line."""
    nodes = parse(source, file)
    renderer = _Renderer(file, data, max_output, max_steps)
    renderer.run(nodes, data)
    return "".join(renderer.out)


def render_json(source: str, data: Any, *, file: str = "cluster.json.tmpl") -> Any:
    """Render and decode: the JSON document the template makes from `data`."""
    text = render(source, data, file=file)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise TemplateError(
            file,
            exc.lineno,
            f"the rendered text is not JSON (line {exc.lineno} column {exc.colno} "
            f"of the output): {exc.msg}",
        ) from None
