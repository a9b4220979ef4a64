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
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

MAX_TEMPLATE_BYTES: Final = 256 * 1024
MAX_OUTPUT_BYTES: Final = 1024 * 1024
MAX_STEPS: Final = 200_000
MAX_DEPTH: Final = 50

_KEYWORDS: Final = {"if", "else", "end", "range", "with"}
_UNSUPPORTED: Final = {"define", "template", "block", "break", "continue"}


class TemplateError(Exception):
    """A template that cannot be parsed or rendered; `str()` names the file and line."""

    def __init__(self, file: str, line: int, message: str) -> None:
        super().__init__(f"{file}:{line}: {message}")
        self.file = file
        self.line = line
        self.message = message


# ------------------------------------------------------------------------------------ lexing


@dataclass
class _Action:
    body: str
    line: int
    quoted: bool  # opened as `"{{`: the value is printed as a JSON value


_Piece = str | _Action


def _split(source: str, file: str) -> list[_Piece]:
    """Text and action pieces, with trim markers applied and OpenPitrix's quotes consumed."""
    pieces: list[_Piece] = []
    pos = 0
    text_start = 0
    trim_next = False
    while True:
        start = source.find("{{", pos)
        if start < 0:
            break
        line = source.count("\n", 0, start) + 1
        text = source[text_start:start]
        quoted = text.endswith('"')
        if quoted:
            text = text[:-1]
        inner_start = start + 2
        trim_left = source.startswith("- ", inner_start) or source.startswith("-\n", inner_start)
        if trim_left:
            if quoted:
                raise TemplateError(file, line, 'a quoted action cannot trim: write "{{ .x }}"')
            text = text.rstrip()
            inner_start += 1
        if trim_next:
            text = text.lstrip()
        if text:
            pieces.append(text)
        end = _action_end(source, inner_start, file, line)
        inner_end = end
        trim_next = source[end - 2 : end] in (" -", "\n-") and end - 2 >= inner_start
        if trim_next:
            inner_end = end - 1
        pieces.append(_Action(source[inner_start:inner_end].strip(), line, quoted))
        pos = end + 2
        # OpenPitrix dropped the quote after every `}}`, whatever the action, unless its first
        # rewrite (`"{{` to `{{ getv `) had taken that quote already.
        if source.startswith('"', pos) and not source.startswith('"{{', pos):
            pos += 1
        text_start = pos
    tail = source[text_start:]
    if trim_next:
        tail = tail.lstrip()
    if tail:
        pieces.append(tail)
    return pieces


def _action_end(source: str, pos: int, file: str, line: int) -> int:
    """The index of the `}}` closing the action at `pos`, skipping string literals."""
    if source.startswith("/*", pos):
        close = source.find("*/", pos + 2)
        if close < 0:
            raise TemplateError(file, line, "unclosed comment")
        end = source.find("}}", close + 2)
        if end < 0 or source[close + 2 : end].strip(" -"):
            raise TemplateError(file, line, "comment must end the action")
        return end
    i = pos
    while i < len(source):
        ch = source[i]
        if ch == "}" and source.startswith("}}", i):
            return i
        if ch in "\"`'":
            close = i + 1
            while close < len(source) and source[close] != ch:
                if source[close] == "\n" and ch != "`":
                    break
                close += 2 if source[close] == "\\" and ch != "`" else 1
            if close >= len(source) or source[close] != ch:
                raise TemplateError(file, line, "unterminated quoted string in action")
            i = close + 1
            continue
        i += 1
    raise TemplateError(file, line, "unclosed action: no matching }}")


@dataclass(frozen=True)
class _Token:
    kind: str  # field, var, ident, string, number, punct
    text: str
    value: Any = None


def _tokens(body: str, file: str, line: int) -> list[_Token]:
    out: list[_Token] = []
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch.isspace():
            i += 1
        elif ch in "()|,":
            out.append(_Token("punct", ch))
            i += 1
        elif body.startswith(":=", i):
            out.append(_Token("punct", ":="))
            i += 2
        elif ch == "=":
            out.append(_Token("punct", "="))
            i += 1
        elif ch == ".":
            j = i + 1
            while j < n and (body[j].isalnum() or body[j] in "_."):
                j += 1
            out.append(_Token("field", body[i:j]))
            i = j
        elif ch == "$":
            j = i + 1
            while j < n and (body[j].isalnum() or body[j] in "_."):
                j += 1
            out.append(_Token("var", body[i:j]))
            i = j
        elif ch == '"':
            j = i + 1
            while body[j] != '"':
                j += 2 if body[j] == "\\" else 1
            try:
                value = json.loads(body[i : j + 1])
            except ValueError:
                raise TemplateError(
                    file, line, f"unsupported escape in {body[i : j + 1]}"
                ) from None
            out.append(_Token("string", body[i : j + 1], value))
            i = j + 1
        elif ch == "`":
            j = body.index("`", i + 1)
            out.append(_Token("string", body[i : j + 1], body[i + 1 : j]))
            i = j + 1
        elif ch.isdigit() or (ch in "+-" and i + 1 < n and body[i + 1].isdigit()):
            j = i + 1
            while j < n and (body[j].isalnum() or body[j] in "._+-"):
                j += 1
            out.append(_Token("number", body[i:j], _number(body[i:j], file, line)))
            i = j
        elif ch.isalpha() or ch == "_":
            j = i + 1
            while j < n and (body[j].isalnum() or body[j] == "_"):
                j += 1
            out.append(_Token("ident", body[i:j]))
            i = j
        else:
            raise TemplateError(file, line, f"unexpected {ch!r} in action")
    return out


def _number(text: str, file: str, line: int) -> int | float:
    try:
        return int(text, 0)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise TemplateError(file, line, f"bad number {text!r}") from None
    if not math.isfinite(value):
        raise TemplateError(file, line, f"bad number {text!r}")
    return value


# ----------------------------------------------------------------------------------- parsing


@dataclass
class _Expr:
    """One operand: a literal, a field chain on dot or a variable, a call or a sub-pipeline."""

    kind: str  # literal, field, var, call, pipe
    value: Any = None
    path: tuple[str, ...] = ()
    args: list[_Expr] = field(default_factory=list)
    pipe: _Pipeline | None = None


@dataclass
class _Pipeline:
    decl: tuple[str, ...]  # variables declared (`:=`) or assigned (`=`)
    assign: bool
    commands: list[list[_Expr]]
    line: int


@dataclass
class _Out:
    pipe: _Pipeline
    quoted: bool


@dataclass
class _Block:
    kind: str  # if, range, with
    pipe: _Pipeline
    body: list[_Node]
    otherwise: list[_Node]


_Node = str | _Out | _Block


class _Parser:
    def __init__(self, pieces: list[_Piece], file: str) -> None:
        self.pieces = pieces
        self.pos = 0
        self.file = file

    def error(self, line: int, message: str) -> TemplateError:
        return TemplateError(self.file, line, message)

    def parse(self) -> list[_Node]:
        nodes, stop, line = self.nodes(0)
        if stop is not None:
            raise self.error(line, f"unexpected {{{{{stop}}}}}")
        return nodes

    def nodes(self, depth: int) -> tuple[list[_Node], str | None, int]:
        """Nodes up to an `else...` or `end` (returned with the rest of that action)."""
        if depth > MAX_DEPTH:
            line = self._line()
            raise self.error(line, f"blocks nested deeper than {MAX_DEPTH}")
        out: list[_Node] = []
        while self.pos < len(self.pieces):
            piece = self.pieces[self.pos]
            self.pos += 1
            if isinstance(piece, str):
                out.append(piece)
                continue
            if piece.body.startswith("/*"):
                continue
            tokens = _tokens(piece.body, self.file, piece.line)
            if not tokens:
                raise self.error(piece.line, "empty action")
            head = tokens[0]
            if head.kind == "ident" and head.text in _UNSUPPORTED:
                raise self.error(piece.line, f"{{{{{head.text}}}}} is not supported here")
            if head.kind == "ident" and head.text in _KEYWORDS:
                if piece.quoted:
                    raise self.error(piece.line, f'"{{{{{head.text} ...}}}}" cannot be quoted')
                if head.text in ("end", "else"):
                    return out, " ".join(t.text for t in tokens), piece.line
                out.append(self.block(head.text, tokens[1:], piece.line, depth))
                continue
            out.append(_Out(self.pipeline(tokens, piece.line), piece.quoted))
        return out, None, 0

    def _line(self) -> int:
        for piece in reversed(self.pieces[: self.pos]):
            if isinstance(piece, _Action):
                return piece.line
        return 1

    def block(self, kind: str, tokens: list[_Token], line: int, depth: int) -> _Block:
        pipe = self.pipeline(tokens, line, allow_pair=kind == "range")
        body, stop, stop_line = self.nodes(depth + 1)
        otherwise: list[_Node] = []
        if stop is None:
            raise self.error(line, f"{{{{{kind}}}}} has no {{{{end}}}}")
        if stop.startswith("else"):
            rest = stop[len("else") :].strip()
            if rest.startswith("if ") and kind == "if":
                inner = _tokens(rest[3:], self.file, stop_line)
                otherwise = [self.block("if", inner, stop_line, depth + 1)]
                return _Block(kind, pipe, body, otherwise)
            if rest:
                raise self.error(stop_line, f"unsupported {{{{{stop}}}}}")
            otherwise, stop, stop_line = self.nodes(depth + 1)
            if stop is None:
                raise self.error(line, f"{{{{{kind}}}}} has no {{{{end}}}}")
        if stop != "end":
            raise self.error(stop_line, f"unexpected {{{{{stop}}}}}")
        return _Block(kind, pipe, body, otherwise)

    def pipeline(self, tokens: list[_Token], line: int, *, allow_pair: bool = False) -> _Pipeline:
        decl: tuple[str, ...] = ()
        assign = False
        ops = [t.text for t in tokens[:4]]
        if len(tokens) >= 2 and tokens[0].kind == "var" and ops[1] in (":=", "="):
            decl, assign, tokens = (tokens[0].text,), ops[1] == "=", tokens[2:]
        elif (
            allow_pair
            and len(tokens) >= 4
            and tokens[0].kind == "var"
            and ops[1] == ","
            and tokens[2].kind == "var"
            and ops[3] == ":="
        ):
            decl, tokens = (tokens[0].text, tokens[2].text), tokens[4:]
        for name in decl:
            if "." in name:
                raise self.error(line, f"cannot declare {name}")
        if not tokens:
            raise self.error(line, "missing value")
        commands: list[list[_Expr]] = [[]]
        stream = iter(tokens)
        for token in stream:
            if token.kind == "punct" and token.text == "|":
                if not commands[-1]:
                    raise self.error(line, "missing command before |")
                commands.append([])
            else:
                commands[-1].append(self.operand(token, stream, line))
        if not commands[-1]:
            raise self.error(line, "missing command after |")
        return _Pipeline(decl, assign, commands, line)

    def operand(self, token: _Token, stream: Iterator[_Token], line: int) -> _Expr:
        if token.kind in ("string", "number"):
            return _Expr("literal", token.value)
        if token.kind == "field":
            return _Expr("field", path=_path(token.text[1:]))
        if token.kind == "var":
            name, _, rest = token.text.partition(".")
            return _Expr("var", name, _path(rest))
        if token.kind == "ident":
            literals = {"true": True, "false": False, "nil": None}
            if token.text in literals:
                return _Expr("literal", literals[token.text])
            if token.text not in _FUNCTIONS:
                raise self.error(line, f"function {token.text!r} is not supported")
            return _Expr("call", token.text)
        if token.text == "(":
            depth = 1
            inner: list[_Token] = []
            for nxt in stream:
                if nxt.text == "(" and nxt.kind == "punct":
                    depth += 1
                elif nxt.text == ")" and nxt.kind == "punct":
                    depth -= 1
                    if depth == 0:
                        return _Expr("pipe", pipe=self.pipeline(inner, line))
                inner.append(nxt)
            raise self.error(line, "unclosed (")
        raise self.error(line, f"unexpected {token.text!r}")


def _path(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(".") if part) if text else ()


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

    def run(self, nodes: list[_Node], dot: Any) -> None:
        for node in nodes:
            if isinstance(node, str):
                self.write(node, 0)
            elif isinstance(node, _Out):
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

    def block(self, node: _Block, dot: Any) -> None:
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

    def range(self, node: _Block, dot: Any) -> None:
        pipe = node.pipe
        value = self.pipeline(_Pipeline((), False, pipe.commands, pipe.line), dot)
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

    def pipeline(self, pipe: _Pipeline, dot: Any) -> Any:
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

    def command(self, command: list[_Expr], dot: Any, piped: Any, line: int) -> Any:
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

    def operand(self, expr: _Expr, dot: Any, line: int) -> Any:
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
    if len(source.encode()) > MAX_TEMPLATE_BYTES:
        raise TemplateError(file, 1, f"template is over {MAX_TEMPLATE_BYTES} bytes")
    nodes = _Parser(_split(source, file), file).parse()
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
