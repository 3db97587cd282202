"""Applying a unified diff to one file's text, strictly: every hunk exactly where it says, or nothing.

No fuzz and no offsets: a diff whose context or removed lines differ from the file is refused
(:class:`PatchError`), because a patch applied somewhere near where its author meant is a
change nobody reviewed. Line endings are kept as the file has them: only ``\\n`` separates
lines, so a ``\\r`` or a form feed is part of a line's text on both sides.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


class PatchError(ValueError):
    """The diff is malformed or does not apply to the file as it is."""


@dataclass
class _Hunk:
    old_start: int
    old_len: int
    new_start: int
    new_len: int
    # (tag, text, ends with a newline): tag is " " context, "-" removed, "+" added.
    lines: list[tuple[str, str, bool]]

    def context(self) -> tuple[int, int]:
        """How many context lines come before the hunk's first change, and after its last."""
        changed = [i for i, (tag, _, _) in enumerate(self.lines) if tag != " "]
        if not changed:
            return len(self.lines), len(self.lines)
        return changed[0], len(self.lines) - 1 - changed[-1]


def apply_diff(original: str, diff: str, *, reverse: bool = False) -> str:
    """``original`` with ``diff`` applied (or, with ``reverse``, undone).

    As GNU patch reads a hunk: less context after its change than before means the hunk ends
    the file, less before than after means it starts it, and an empty side (``-0,0``) is an
    empty file. Without these an insertion at the end would apply again to a file that has it
    already, and the worker could not tell a retried diff from a new one.
    """
    old = _lines(original)
    out: list[str] = []
    cursor = 0
    for number, hunk in enumerate(parse_diff(diff), 1):
        start_line, length = (hunk.new_start, hunk.new_len) if reverse else (hunk.old_start, hunk.old_len)
        # A hunk with an empty old side names the line after which it inserts.
        start = start_line - 1 if length else start_line
        if start < cursor or start > len(old):
            raise PatchError(f"hunk {number} starts at line {start_line}, which the file does not have there")
        if start_line == 0 and length == 0 and old:
            raise PatchError(f"hunk {number} is for an empty file, and the file is not empty")
        leading, trailing = hunk.context()
        if leading < trailing and start != 0:
            raise PatchError(f"hunk {number} must start the file (it has less context before its change than after)")
        out.extend(old[cursor:start])
        at = start
        for tag, text, newline in hunk.lines:
            if reverse:
                tag = {"+": "-", "-": "+"}.get(tag, tag)
            if tag == "+":
                out.append(text + "\n" if newline else text)
                continue
            if at >= len(old) or old[at].removesuffix("\n") != text:
                raise PatchError(f"hunk {number} does not apply: line {at + 1} of the file differs from the diff")
            if tag == " ":
                out.append(old[at])
            at += 1
        if trailing < leading and at != len(old):
            raise PatchError(f"hunk {number} must end the file (it has less context after its change than before)")
        cursor = at
    out.extend(old[cursor:])
    return "".join(out)


def parse_diff(diff: str) -> list[_Hunk]:
    """The hunks of a one-file unified diff; headers before the first hunk are skipped."""
    hunks: list[_Hunk] = []
    old_left = new_left = 0
    rows = diff.split("\n")
    if rows[-1] == "":
        rows.pop()  # the newline that ends the last line starts no line of its own
    for number, raw in enumerate(rows, 1):
        header = _HUNK.match(raw)
        if header:
            if old_left or new_left:
                raise PatchError(f"line {number}: a hunk begins before the one before it is complete")
            old_start, old_len, new_start, new_len = (
                int(header.group(1)),
                int(header.group(2) or 1),
                int(header.group(3)),
                int(header.group(4) or 1),
            )
            hunks.append(_Hunk(old_start, old_len, new_start, new_len, []))
            old_left, new_left = old_len, new_len
            continue
        if raw.startswith("\\"):
            # "\ No newline at end of file": the line before it ends the file without one.
            if hunks and hunks[-1].lines:
                tag, text, _ = hunks[-1].lines[-1]
                hunks[-1].lines[-1] = (tag, text, False)
            continue
        if not old_left and not new_left:
            if hunks and raw.strip():
                raise PatchError(f"line {number}: text after the last hunk (a diff of one file is expected)")
            continue  # headers (---, +++, diff --git, index) before the first hunk, blank lines after
        # Some tools strip the one space of an empty context line.
        tag, text = (" ", "") if raw == "" else (raw[:1], raw[1:])
        if tag not in " +-":
            raise PatchError(f"line {number}: {raw[:40]!r} is not a diff line")
        if tag in " -":
            old_left -= 1
        if tag in " +":
            new_left -= 1
        if old_left < 0 or new_left < 0:
            raise PatchError(f"line {number}: more lines than the hunk header counts")
        hunks[-1].lines.append((tag, text, True))
    if old_left or new_left:
        raise PatchError("the last hunk is cut short")
    if not hunks:
        raise PatchError("no hunk in the diff")
    return hunks


def _lines(text: str) -> list[str]:
    """The lines of ``text``, each with its ``\\n`` but a last one that has none."""
    pieces = text.split("\n")
    lines = [piece + "\n" for piece in pieces[:-1]]
    if pieces[-1]:
        lines.append(pieces[-1])
    return lines
