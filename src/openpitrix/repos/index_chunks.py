"""Cut a block-style Helm index (the layout Helm writes) into pieces of whole charts, so a large
index can be parsed a piece at a time instead of holding its whole tree at once.

Only the plain layout is cut: one `entries:` line at column 0, chart names at one indentation,
spaces only, no lone CR. Anything else returns None and the caller parses the document whole.
Each piece is `entries:` followed by the original lines of some charts, so every line is read
in the same context as in the whole document; a piece that fails to parse (an alias to an
anchor in another piece, a quoted scalar running across a cut) also sends the caller back to
the whole document, which reports any error itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

PIECE_BYTES: Final = 512 * 1024
ENTRIES_HEAD: Final = b"entries:\n"

_ENTRIES_LINE: Final = re.compile(rb"^entries:[ \t]*(?:#[^\r\n]*)?\r?\n", re.M)
# The first line after the entries block: anything at column 0 but a comment (a tab there
# stays in the block, which is then not cut). Matched from the newline before it (see
# `_chart_starts`: a search anchored on `^` tries every byte of the block).
_TOP_LEVEL_LINE: Final = re.compile(rb"\n[^ \t#\r\n]")
_FIRST_CONTENT: Final = re.compile(rb"^( *)[^ \r\n#]", re.M)
# Characters a plain or quoted chart name may start with; a tag, anchor, complex key or flow
# collection at the chart level is left to the whole-document parse.
_NAME_START: Final = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.\"'/"
)


@dataclass(frozen=True, slots=True)
class SplitIndex:
    """`outline`: the document with the entries block's lines replaced by `marker`;
    `cuts`: offsets into the body, each piece `body[cuts[i]:cuts[i + 1]]` whole charts."""

    body: bytes
    outline: bytes
    marker: str
    cuts: list[int]

    def pieces(self) -> Iterator[bytes]:
        for start, end in zip(self.cuts, self.cuts[1:], strict=False):
            yield ENTRIES_HEAD + self.body[start:end]


def split_index(body: bytes, start: int, marker: str) -> SplitIndex | None:
    """`body` (from offset `start`, past any BOM) cut at chart boundaries, or None when its
    layout is not the plain block one (or the index is too small to be worth it)."""
    if len(body) - start < 2 * PIECE_BYTES:
        return None
    if b"\r" in body and body.count(b"\r") != body.count(b"\r\n"):
        return None
    head = _ENTRIES_LINE.search(body, start)
    if head is None:
        return None
    block_start = head.end()
    tail = _TOP_LEVEL_LINE.search(body, block_start - 1)
    block_end = tail.start() + 1 if tail is not None else len(body)
    first = _FIRST_CONTENT.search(body, block_start, block_end)
    if first is None:
        return None
    indent = len(first[1])
    if indent == 0:
        return None
    cuts = _chart_starts(body, block_start, block_end, indent)
    if cuts is None or not cuts or cuts[0] != first.start():
        return None
    pieces = [block_start]
    for cut in cuts:
        if cut - pieces[-1] >= PIECE_BYTES:
            pieces.append(cut)
    pieces.append(block_end)
    outline = b"".join(
        (body[start : head.start()], f"entries: {marker}\n".encode(), body[block_end:])
    )
    return SplitIndex(body=body, outline=outline, marker=marker, cuts=pieces)


def _chart_starts(body: bytes, start: int, end: int, indent: int) -> list[int] | None:
    """Offsets of the lines that start a chart (a key at `indent`), or None for a line at or
    below `indent` that is neither that nor a sequence item nor a comment."""
    # Anchored on the newline before each line rather than on `^` with re.M, so the regex
    # engine jumps from newline to newline instead of trying a match at every byte; and the
    # versions' "- " lines (ten times as many as the chart names) are passed over inside it.
    # The indentation is matched possessively: a deeper line fails at once, with no retry at
    # fewer spaces. A 15 MB index took 0.18 CPU-seconds to cut, 0.03 now. `start` follows a
    # newline.
    shallow = re.compile(rb"\n( {0,%d}+)(?!-(?:[ \t\r\n]|\Z))([^ \r\n])" % indent)
    starts: list[int] = []
    for line in shallow.finditer(body, start - 1, end):
        char = line[2][0]
        if char == ord("#"):
            continue
        if len(line[1]) != indent:
            return None  # a tab, or a line less indented than the chart names
        if char not in _NAME_START and char != ord("-"):
            return None
        starts.append(line.start() + 1)
    return starts
