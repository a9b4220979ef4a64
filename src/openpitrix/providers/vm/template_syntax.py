"""Parsing the Go-template subset of cluster.json.tmpl (see `template` for what it covers):
text and actions, with OpenPitrix's quoted actions marked, into a tree `template` renders."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Final

MAX_TEMPLATE_BYTES: Final = 256 * 1024
MAX_DEPTH: Final = 50
FUNCTION_NAMES: Final = frozenset(
    {"eq", "ne", "lt", "le", "gt", "ge", "and", "or", "not", "len", "index"}
)

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
class Expr:
    """One operand: a literal, a field chain on dot or a variable, a call or a sub-pipeline."""

    kind: str  # literal, field, var, call, pipe
    value: Any = None
    path: tuple[str, ...] = ()
    args: list[Expr] = field(default_factory=list)
    pipe: Pipeline | None = None


@dataclass
class Pipeline:
    decl: tuple[str, ...]  # variables declared (`:=`) or assigned (`=`)
    assign: bool
    commands: list[list[Expr]]
    line: int


@dataclass
class Out:
    pipe: Pipeline
    quoted: bool


@dataclass
class Block:
    kind: str  # if, range, with
    pipe: Pipeline
    body: list[Node]
    otherwise: list[Node]


Node = str | Out | Block


class _Parser:
    def __init__(self, pieces: list[_Piece], file: str) -> None:
        self.pieces = pieces
        self.pos = 0
        self.file = file

    def error(self, line: int, message: str) -> TemplateError:
        return TemplateError(self.file, line, message)

    def parse(self) -> list[Node]:
        nodes, stop, line = self.nodes(0)
        if stop is not None:
            raise self.error(line, f"unexpected {{{{{stop}}}}}")
        return nodes

    def nodes(self, depth: int) -> tuple[list[Node], str | None, int]:
        """Nodes up to an `else...` or `end` (returned with the rest of that action)."""
        if depth > MAX_DEPTH:
            line = self._line()
            raise self.error(line, f"blocks nested deeper than {MAX_DEPTH}")
        out: list[Node] = []
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
            out.append(Out(self.pipeline(tokens, piece.line), piece.quoted))
        return out, None, 0

    def _line(self) -> int:
        for piece in reversed(self.pieces[: self.pos]):
            if isinstance(piece, _Action):
                return piece.line
        return 1

    def block(self, kind: str, tokens: list[_Token], line: int, depth: int) -> Block:
        pipe = self.pipeline(tokens, line, allow_pair=kind == "range")
        body, stop, stop_line = self.nodes(depth + 1)
        otherwise: list[Node] = []
        if stop is None:
            raise self.error(line, f"{{{{{kind}}}}} has no {{{{end}}}}")
        if stop.startswith("else"):
            rest = stop[len("else") :].strip()
            if rest.startswith("if ") and kind == "if":
                inner = _tokens(rest[3:], self.file, stop_line)
                otherwise = [self.block("if", inner, stop_line, depth + 1)]
                return Block(kind, pipe, body, otherwise)
            if rest:
                raise self.error(stop_line, f"unsupported {{{{{stop}}}}}")
            otherwise, stop, stop_line = self.nodes(depth + 1)
            if stop is None:
                raise self.error(line, f"{{{{{kind}}}}} has no {{{{end}}}}")
        if stop != "end":
            raise self.error(stop_line, f"unexpected {{{{{stop}}}}}")
        return Block(kind, pipe, body, otherwise)

    def pipeline(self, tokens: list[_Token], line: int, *, allow_pair: bool = False) -> Pipeline:
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
        commands: list[list[Expr]] = [[]]
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
        return Pipeline(decl, assign, commands, line)

    def operand(self, token: _Token, stream: Iterator[_Token], line: int) -> Expr:
        if token.kind in ("string", "number"):
            return Expr("literal", token.value)
        if token.kind == "field":
            return Expr("field", path=_path(token.text[1:]))
        if token.kind == "var":
            name, _, rest = token.text.partition(".")
            return Expr("var", name, _path(rest))
        if token.kind == "ident":
            literals = {"true": True, "false": False, "nil": None}
            if token.text in literals:
                return Expr("literal", literals[token.text])
            if token.text not in FUNCTION_NAMES:
                raise self.error(line, f"function {token.text!r} is not supported")
            return Expr("call", token.text)
        if token.text == "(":
            depth = 1
            inner: list[_Token] = []
            for nxt in stream:
                if nxt.text == "(" and nxt.kind == "punct":
                    depth += 1
                elif nxt.text == ")" and nxt.kind == "punct":
                    depth -= 1
                    if depth == 0:
                        return Expr("pipe", pipe=self.pipeline(inner, line))
                inner.append(nxt)
            raise self.error(line, "unclosed (")
        raise self.error(line, f"unexpected {token.text!r}")


def _path(text: str) -> tuple[str, ...]:
    return tuple(part for part in text.split(".") if part) if text else ()


def parse(source: str, file: str) -> list[Node]:
    """The template's tree; a `TemplateError` names the file and line of what is wrong."""
    if len(source.encode()) > MAX_TEMPLATE_BYTES:
        raise TemplateError(file, 1, f"template is over {MAX_TEMPLATE_BYTES} bytes")
    return _Parser(_split(source, file), file).parse()
