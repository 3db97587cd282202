"""The lexer for languages with ``//`` and ``/* */`` comments: JS/TS, Rust, Go, Java, C-family.

One loop serves them all; :class:`CLike` names the lexical features in which they differ. See
:mod:`tasks.review.gates.placeholder_lexers` for what a lexer returns and why it may be approximate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from tasks.review.gates.placeholder_lexers import Lexed, skip_hashbang


@dataclass(frozen=True, slots=True)
class CLike:
    """The lexical features in which the languages with ``//`` and ``/* */`` comments differ."""

    nested_block: bool = False  # Rust, Swift, Kotlin nest block comments
    template_literals: bool = False  # JS/TS `...${expr}...`
    regex_literals: bool = False  # JS/TS /re/flags
    backtick_raw: bool = False  # Go `raw`
    rust_literals: bool = False  # r#"..."#, b"...", char literals versus lifetimes
    multiline_strings: bool = False  # Rust "..." may span lines
    triple_quotes: bool = False  # Java text blocks, Kotlin/Swift/C# """...
    verbatim_at: bool = False  # C# @"..."
    cpp_raw: bool = False  # C++ R"delim(...)delim"


JS = CLike(template_literals=True, regex_literals=True)
RUST = CLike(nested_block=True, rust_literals=True, multiline_strings=True)
GO = CLike(backtick_raw=True)
JAVA = CLike(triple_quotes=True)
KOTLIN_SWIFT = CLike(nested_block=True, triple_quotes=True)
CSHARP = CLike(triple_quotes=True, verbatim_at=True)
C_CPP = CLike(cpp_raw=True)


@cache
def _start_re(cfg: CLike, braces: bool) -> re.Pattern[str]:
    """One alternation that jumps to the next place where the lexer state can change.

    Only plain literals: a prefix or look-behind in any branch stops the regex engine from skipping
    ahead by first character, which measured 3-10x slower. String prefixes (``r#"``, ``@"``,
    ``R"(``) are recognised by looking back from the quote instead.
    """
    parts = ["//", r"/\*", '"', "'"]
    if cfg.template_literals or cfg.backtick_raw:
        parts.append("`")
    if cfg.regex_literals:
        parts.append("/")
    if braces:
        parts += ["{", "}"]
    return re.compile("|".join(parts))


# Possessive quantifiers: these bodies never give characters back, and not keeping backtracking
# state measured several times faster.
_DQ_LINE = re.compile(r'(?:[^"\\\n]++|\\[\s\S])*+')
_DQ_MULTI = re.compile(r'(?:[^"\\]++|\\[\s\S])*+')
_SQ_LINE = re.compile(r"(?:[^'\\\n]++|\\[\s\S])*+")
_TEMPLATE_BODY = re.compile(r"(?:[^`\\$]++|\\[\s\S]|\$(?!\{))*+")
_VERBATIM_BODY = re.compile(r'(?:[^"]++|"")*+')
_RUST_CHAR = re.compile(r"'(?:[^'\\\n]|\\(?:x[0-9a-fA-F]{2}|u\{[0-9a-fA-F]{1,6}\}|[\s\S]))'")
_JS_REGEX = re.compile(r"/(?![*/])(?:[^/\\\[\n]|\\.|\[(?:[^\]\\\n]|\\.)*\])+/[A-Za-z]*")
_NESTED_BLOCK = re.compile(r"/\*|\*/")
_CPP_RAW_DELIM = re.compile(r'[^()\\\s"]{0,16}\(')
_WORD_BEFORE = re.compile(r"[\w$]+$")
# After these words a slash starts a regular expression, not a division.
_JS_REGEX_KEYWORDS = frozenset(
    {"return", "typeof", "instanceof", "in", "of", "new", "delete", "void", "throw", "case", "do", "else", "yield"}
    | {"await"}
)


def lex_clike(text: str, cfg: CLike) -> Lexed:
    """Walk the text from one significant token to the next, recording comments and literals."""
    out = Lexed()
    n = len(text)
    stack: list[int] = []  # open ${ ... } depths inside JS template literals
    plain, with_braces = _start_re(cfg, False), _start_re(cfg, True)
    pos = skip_hashbang(text) if cfg.template_literals else 0
    while pos < n:
        m = (with_braces if stack else plain).search(text, pos)
        if m is None:
            break
        tok, s = m.group(), m.start()
        if tok == "//":
            end = text.find("\n", s)
            end = n if end < 0 else end
            doc = (text.startswith("///", s) and not text.startswith("////", s)) or text.startswith("//!", s)
            out.comments.append((s, end, doc))
            pos = end
        elif tok == "/*":
            end = _block_end(text, s, cfg.nested_block)
            doc = (text.startswith("/**", s) and text[s + 3 : s + 4] not in ("/", "*")) or text.startswith("/*!", s)
            out.comments.append((s, end, doc))
            pos = end
        elif tok == "{":
            stack[-1] += 1
            pos = s + 1
        elif tok == "}":
            stack[-1] -= 1
            pos = s + 1
            if stack[-1] == 0:
                stack.pop()
                pos = _template(text, s, out, stack)
        elif tok == "`":
            if cfg.template_literals:
                pos = _template(text, s, out, stack)
            else:
                end = text.find("`", s + 1)
                pos = n if end < 0 else end + 1
                out.strings.append((s, pos))
        elif tok == "/":
            pos = _regex_literal(text, s, out)
        elif tok == "'":
            pos = _single_quote(text, s, cfg, out)
        else:
            pos = _double_quote(text, s, cfg, out)
    return out


def _block_end(text: str, start: int, nested: bool) -> int:
    if not nested:
        end = text.find("*/", start + 2)
        return len(text) if end < 0 else end + 2
    depth = 0
    for m in _NESTED_BLOCK.finditer(text, start):
        depth += 1 if m.group() == "/*" else -1
        if depth == 0:
            return m.end()
    return len(text)


def _template(text: str, tick_or_brace: int, out: Lexed, stack: list[int]) -> int:
    """Scan a template literal's text part, from its backtick or from the ``}`` closing a ``${``."""
    end = _TEMPLATE_BODY.match(text, tick_or_brace + 1).end()
    if text.startswith("${", end):
        out.strings.append((tick_or_brace, end + 2))
        stack.append(1)
        return end + 2
    end = min(end + 1, len(text))
    out.strings.append((tick_or_brace, end))
    return end


def _regex_literal(text: str, s: int, out: Lexed) -> int:
    """A slash starts a regex after an operator or keyword, and is a division after a value."""
    j = s - 1
    while j >= 0 and text[j] in " \t\r\n":
        j -= 1
    if j >= 0:
        prev = text[j]
        if prev in ")]}":
            return s + 1
        if prev.isalnum() or prev in "_$":
            word = _WORD_BEFORE.search(text, max(0, j - 20), j + 1)
            if word is None or word.group() not in _JS_REGEX_KEYWORDS:
                return s + 1
    m = _JS_REGEX.match(text, s)
    if m is None:
        return s + 1
    out.strings.append((s, m.end()))
    return m.end()


def _single_quote(text: str, s: int, cfg: CLike, out: Lexed) -> int:
    if cfg.rust_literals:
        m = _RUST_CHAR.match(text, s)
        if m is None:  # a lifetime such as 'a
            return s + 1
        out.strings.append((s, m.end()))
        return m.end()
    if not cfg.template_literals and s > 0 and text[s - 1].isalnum():
        return s + 1  # C++14 digit separator 1'000
    end = _SQ_LINE.match(text, s + 1).end()
    end = end + 1 if text.startswith("'", end) else end
    out.strings.append((s, end))
    return end


def _double_quote(text: str, s: int, cfg: CLike, out: Lexed) -> int:
    n = len(text)
    if cfg.triple_quotes and text.startswith('"""', s):
        end = text.find('"""', s + 3)
        end = n if end < 0 else end + 3
    elif cfg.verbatim_at and s and (text[s - 1] == "@" or text[s - 2 : s] == "@$"):
        end = min(_VERBATIM_BODY.match(text, s + 1).end() + 1, n)
    elif cfg.cpp_raw and _prefixed(text, s, ("R", "u8R", "uR", "UR", "LR")):
        delim = _CPP_RAW_DELIM.match(text, s + 1)
        if delim is None:
            end = _DQ_LINE.match(text, s + 1).end() + 1
        else:
            closing = ")" + delim.group()[:-1] + '"'
            end = text.find(closing, delim.end())
            end = n if end < 0 else end + len(closing)
    elif cfg.rust_literals and (hashes := _rust_raw_hashes(text, s)) >= 0:
        closing = '"' + "#" * hashes
        end = text.find(closing, s + 1)
        end = n if end < 0 else end + len(closing)
    else:
        body = _DQ_MULTI if cfg.multiline_strings else _DQ_LINE
        end = body.match(text, s + 1).end()
        end = end + 1 if text.startswith('"', end) else end
    end = min(end, n)
    out.strings.append((s, end))
    return end


def _prefixed(text: str, quote: int, prefixes: tuple[str, ...]) -> bool:
    """Whether a whole word from ``prefixes`` stands right before the quote (``R"`` but not ``FOOR"``)."""
    for prefix in prefixes:
        start = quote - len(prefix)
        if start >= 0 and text.startswith(prefix, start) and (start == 0 or not _is_word(text[start - 1])):
            return True
    return False


def _rust_raw_hashes(text: str, quote: int) -> int:
    """The number of ``#`` of a Rust raw string ``r#"`` / ``br#"`` ending at ``quote``, or -1."""
    j = quote - 1
    while j >= 0 and text[j] == "#":
        j -= 1
    hashes = quote - 1 - j
    return hashes if _prefixed(text, j + 1, ("r", "br")) else -1


def _is_word(char: str) -> bool:
    return char.isalnum() or char == "_"
