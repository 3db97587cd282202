"""Find the comments and string literals of a source file, per language.

The placeholder rules only judge comments, so the scanner has to know where comments are and, just as
much, where they are not: a marker word inside a string literal is data, and one inside a
documentation comment is prose. These lexers are deliberately approximate (no full grammars), but
they are exact for the constructs that decide comment versus string, and they recover at the end of
a line from anything they misread, so one odd construct cannot swallow the rest of a file.

Every lexer returns a :class:`Lexed` with character offsets into the text it was given. This module
holds the Python and ``#``-comment lexers (shell, YAML); :mod:`tasks.review.gates.placeholder_clike` holds
the one for ``//`` and ``/* */`` languages.
"""

from __future__ import annotations

import io
import re
import tokenize
from dataclasses import dataclass, field


@dataclass(slots=True)
class Lexed:
    """Comment spans ``(start, end, is_doc)`` and string-literal spans ``(start, end)``, as found."""

    comments: list[tuple[int, int, bool]] = field(default_factory=list)
    strings: list[tuple[int, int]] = field(default_factory=list)


# --- Python ---------------------------------------------------------------------------------------


def lex_python(text: str) -> Lexed:
    """Comments from :mod:`tokenize`, so f-strings, nested quotes and continuation lines are exact.

    Docstrings and all other strings come out as STRING tokens, which is why they never reach the
    comment rules. ``#:`` comments are Sphinx attribute documentation. Source that does not
    tokenize (worker output can be broken) falls back to a regular-expression lexer.
    """
    starts = line_starts(text)
    out = Lexed()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.COMMENT:
                start = starts[tok.start[0] - 1] + tok.start[1]
                out.comments.append((start, start + len(tok.string), tok.string.startswith("#:")))
            elif tok.type == tokenize.STRING:
                start = starts[tok.start[0] - 1] + tok.start[1]
                end = starts[tok.end[0] - 1] + tok.end[1]
                out.strings.append((start, end))
    except (tokenize.TokenError, SyntaxError):
        return _lex_python_fallback(text)
    return out


# String prefixes (r, b, f, u) do not change where a literal ends, so they need no matching.
_TRIPLE_SQ = r"'''(?:[^'\\]++|\\[\s\S]|'(?!''))*+(?:'''|\Z)"
_TRIPLE_DQ = r'"""(?:[^"\\]++|\\[\s\S]|"(?!""))*+(?:"""|\Z)'
_SINGLE_SQ = r"'(?:[^'\\\n]++|\\[\s\S])*+(?:'|$)"
_SINGLE_DQ = r'"(?:[^"\\\n]++|\\[\s\S])*+(?:"|$)'
_PY_FALLBACK = re.compile(
    rf"(?P<s>{_TRIPLE_SQ}|{_TRIPLE_DQ}|{_SINGLE_SQ}|{_SINGLE_DQ})|(?P<c>#[^\n]*)",
    re.MULTILINE,
)


def lex_python_quick(text: str) -> Lexed:
    """The regular-expression lexer: agrees with tokenize on well-formed Python 3.11, many times faster.

    The scanner uses it to rule files out, then confirms any finding with :func:`lex_python`.
    """
    return _lex_python_fallback(text)


def _lex_python_fallback(text: str) -> Lexed:
    out = Lexed()
    for m in _PY_FALLBACK.finditer(text):
        if m.lastgroup == "c":
            out.comments.append((m.start(), m.end(), m.group().startswith("#:")))
        else:
            out.strings.append((m.start(), m.end()))
    return out


def line_starts(text: str) -> list[int]:
    """Offsets at which each line starts, plus the text length; line ``n`` starts at index ``n - 1``."""
    starts = [0]
    find = text.find
    pos = find("\n")
    while pos >= 0:
        starts.append(pos + 1)
        pos = find("\n", pos + 1)
    starts.append(len(text))
    return starts


def skip_hashbang(text: str) -> int:
    """Where lexing starts: after a ``#!`` interpreter line, which is never a finding."""
    if text.startswith("#!"):
        end = text.find("\n")
        return len(text) if end < 0 else end
    return 0


# --- Shell ----------------------------------------------------------------------------------------

_SHELL_START = re.compile(r"""#|\$'|'|"|<<""")
_SHELL_DQ = re.compile(r'(?:[^"\\]++|\\[\s\S])*+')
_SHELL_ANSI = re.compile(r"(?:[^'\\]++|\\[\s\S])*+")
_HEREDOC = re.compile(r"""<<(-?)[ \t]*(?:(['"])([^'"\n]+)\2|\\?([A-Za-z_][A-Za-z0-9_]*))""")
# A '#' starts a comment only at the start of a word.
_SHELL_WORD_BREAK = frozenset(" \t\n;|&()")


def lex_shell(text: str) -> Lexed:
    """Shell comments start a word with ``#``; quotes and here-documents are data.

    The shebang is the interpreter line, never a finding. Here-document bodies are skipped up to the
    delimiter line; an unterminated one is not treated as a here-document at all, which keeps the
    arithmetic shift operator from hiding the rest of the script.
    """
    out = Lexed()
    n = len(text)
    pos = skip_hashbang(text)
    skips: list[tuple[int, int]] = []  # here-document bodies still ahead of pos
    while pos < n:
        m = _SHELL_START.search(text, pos)
        if m is None:
            break
        s, tok = m.start(), m.group()
        if skips and s >= skips[0][0]:
            pos = skips.pop(0)[1]
            continue
        if tok == "#":
            if s == 0 or text[s - 1] in _SHELL_WORD_BREAK:
                end = text.find("\n", s)
                end = n if end < 0 else end
                out.comments.append((s, end, False))
                pos = end
            else:
                pos = s + 1
        elif tok == "'":
            end = text.find("'", s + 1)
            pos = n if end < 0 else end + 1
            out.strings.append((s, pos))
        elif tok == "$'":
            pos = min(_SHELL_ANSI.match(text, s + 2).end() + 1, n)
            out.strings.append((s, pos))
        elif tok == '"':
            pos = min(_SHELL_DQ.match(text, s + 1).end() + 1, n)
            out.strings.append((s, pos))
        elif text.startswith("<<<", s):  # a here-string, whose word is ordinary shell
            pos = s + 3
        else:
            pos = _heredoc(text, s, out, skips)
    return out


def _heredoc(text: str, s: int, out: Lexed, skips: list[tuple[int, int]]) -> int:
    m = _HEREDOC.match(text, s)
    if m is None:
        return s + 2
    delimiter = m.group(3) or m.group(4)
    body_start = text.find("\n", m.end())
    if body_start < 0:
        return m.end()
    # Later here-documents on the same line start where the previous one ends.
    if skips:
        body_start = skips[-1][1]
    indent = r"\t*" if m.group(1) else ""
    closing = re.compile(rf"^{indent}{re.escape(delimiter)}[ \t]*$", re.MULTILINE).search(text, body_start + 1)
    if closing is None:
        return m.end()
    out.strings.append((body_start + 1, closing.end()))
    skips.append((body_start + 1, closing.end()))
    return m.end()


# --- YAML -----------------------------------------------------------------------------------------

_YAML_TOKEN = re.compile(r"""(?<![\w])'(?:[^'\n]|'')*'|(?<![\w])"(?:[^"\\\n]|\\.)*"|(?:(?<=\s)|^)\#[^\n]*""", re.M)


def lex_yaml(text: str) -> Lexed:
    """YAML comments are ``#`` at a line start or after whitespace, outside quoted scalars.

    Block scalars are not tracked, so a ``#`` line inside ``run: |`` counts as a comment; in CI files
    those lines are shell comments, which is what a reviewer would want flagged anyway.
    """
    out = Lexed()
    if "#" not in text:
        return out
    for m in _YAML_TOKEN.finditer(text):
        if m.group().startswith("#"):
            out.comments.append((m.start(), m.end(), False))
        else:
            out.strings.append((m.start(), m.end()))
    return out
