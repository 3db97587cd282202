"""What counts as a placeholder: the comment patterns, the code-stub shapes and the confidence model.

The categories, severities and example phrases come from issue 4 and from the predecessor's
``todo_analyzer`` (see ``reference/original-system.md`` section 5). The predecessor matched loose
phrases and then had to subtract confidence for prose; here the phrases are tighter (a marker word
needs a colon or an action verb, "eventually" needs a verb of work) so that fewer ordinary comments
match at all, and the confidence model only has to handle mentions, documentation and test doubles.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import PurePath


class Severity(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        """Orders severities so that ``--fail-on high`` also catches critical findings."""
        return _RANK[self]


_RANK = {Severity.LOW: 0, Severity.MEDIUM: 1, Severity.HIGH: 2, Severity.CRITICAL: 3}


class Category(StrEnum):
    EXPLICIT = "explicit"
    INCOMPLETE_IMPLEMENTATION = "incomplete_implementation"
    PLACEHOLDER_CODE = "placeholder_code"
    CODE_STUBS = "code_stubs"
    TEMPORARY_SOLUTIONS = "temporary_solutions"
    HARDCODED_VALUES = "hardcoded_values"
    FUTURE_IMPROVEMENTS = "future_improvements"


MIN_CONFIDENCE = 0.7


@dataclass(frozen=True, slots=True)
class Rule:
    """A comment pattern; ``unless`` names contexts in which the same words are ordinary prose."""

    category: Category
    severity: Severity
    confidence: float
    pattern: re.Pattern[str]
    unless: re.Pattern[str] | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    """One rule matched on one line, before it becomes a reported finding."""

    category: Category
    severity: Severity
    confidence: float


_I = re.IGNORECASE
_ACTION = (
    r"(?:implement|fix|replace|complete|add|remove|handle|write|finish|refactor|update|support|change|clean|move"
    r"|check|validate|make|use|test|wire|hook|figure|investigate|rewrite|port|convert|delete|extract|split"
    r"|optimi[sz]e|improve|document|return|raise|call|allow|rename|drop|switch|revisit|verify|ensure|do)\w*"
)
_MARKER = r"(?:\b(?:TODO|FIXME|XXX|HACK)\b|\b(?i:todo|fixme)\b(?=(?:\([^)]*\))?:))"
_OWNER = r"(?:\([^)]*\))?"


def _rule(
    category: Category, severity: Severity, confidence: float, pattern: str, flags: int = _I, unless: str = ""
) -> Rule:
    return Rule(category, severity, confidence, re.compile(pattern, flags), re.compile(unless, _I) if unless else None)


C, S = Category, Severity
COMMENT_RULES: tuple[Rule, ...] = (
    _rule(C.EXPLICIT, S.HIGH, 1.0, rf"{_MARKER}{_OWNER}\s*[:\-\u2013]?\s*\b{_ACTION}", flags=0),
    _rule(C.EXPLICIT, S.HIGH, 0.9, rf"{_MARKER}{_OWNER}:", flags=0),
    _rule(
        C.INCOMPLETE_IMPLEMENTATION,
        S.CRITICAL,
        0.9,
        r"\bnot\s+yet\s+implemented\b|\bnot\s+(?:fully\s+)?implemented\s+yet\b|\bunimplemented\b",
    ),
    # Bare "not implemented" often describes a design ("not implemented by Django", "501 Not
    # Implemented"), so alone it stays under the threshold unless it opens the comment or a marker
    # word stands beside it.
    _rule(
        C.INCOMPLETE_IMPLEMENTATION,
        S.CRITICAL,
        0.65,
        r"\bnot\s+(?:fully\s+)?implemented\b",
        unless=r"\b501\b|\bnot\s+implemented\s+(?:by|in|on|for|to)\b",
    ),
    _rule(C.INCOMPLETE_IMPLEMENTATION, S.CRITICAL, 0.9, r"\b(?:missing|partial|pending|incomplete)\s+implementation\b"),
    _rule(
        C.INCOMPLETE_IMPLEMENTATION, S.CRITICAL, 0.9, r"\bimplementation\s+(?:is\s+)?(?:missing|incomplete|pending)\b"
    ),
    _rule(C.PLACEHOLDER_CODE, S.CRITICAL, 1.0, r"\bPLACEHOLDER\s*:", flags=0),
    _rule(C.PLACEHOLDER_CODE, S.HIGH, 0.9, r"\bPLACEHOLDER\b", flags=0),
    _rule(C.PLACEHOLDER_CODE, S.HIGH, 0.85, r"\bplaceholder\s+(?:code|implementation|function|logic|method|body)\b"),
    _rule(C.PLACEHOLDER_CODE, S.HIGH, 0.85, r"\b(?:example|demo|sample|toy)\s+implementation\b"),
    _rule(
        C.CODE_STUBS,
        S.HIGH,
        0.8,
        r"\b(?:stub|stubbed|dummy|fake|mock)\s+(?:implementation|function|method|code|logic|body)\b",
    ),
    _rule(C.CODE_STUBS, S.HIGH, 0.8, r"\bstubbed\s+out\b|\bthis\s+is\s+(?:just\s+)?an?\s+(?:stub|dummy|fake)\b"),
    _rule(
        C.TEMPORARY_SOLUTIONS,
        S.MEDIUM,
        0.85,
        r"\btemporary\s+(?:fix|solution|workaround|hack|implementation|measure|code|patch)\b",
    ),
    _rule(C.TEMPORARY_SOLUTIONS, S.MEDIUM, 0.85, r"\bquick\s+(?:fix|hack|and\s+dirty)\b"),
    # The noun only: "to work around X" usually explains a constraint rather than confessing a patch.
    _rule(C.TEMPORARY_SOLUTIONS, S.MEDIUM, 0.75, r"\bworkaround\b|\bwork-around\b|\bband-?aid\b|\bkludge\b"),
    _rule(
        C.HARDCODED_VALUES,
        S.MEDIUM,
        0.8,
        r"\bhard[- ]?coded\b.{0,40}?\b(?:for\s+now|temporar\w*|until|replace|configur\w*)"
        r"|\b(?:for\s+now|temporarily)\b.{0,40}?\bhard[- ]?coded\b",
    ),
    _rule(C.HARDCODED_VALUES, S.MEDIUM, 0.8, r"\bmagic\s+(?:number|string|value|constant)s?\b"),
    _rule(
        C.HARDCODED_VALUES,
        S.MEDIUM,
        0.8,
        r"\b(?:make|should\s+be|needs?\s+to\s+be)\s+(?:this\s+|it\s+|these\s+|them\s+)?configurable\b",
    ),
    _rule(
        C.FUTURE_IMPROVEMENTS,
        S.LOW,
        0.85,
        r"\bin\s+a\s+(?:real|proper|full|production)\s+(?:implementation|system|app(?:lication)?|version|world|setup)\b",
    ),
    _rule(
        C.FUTURE_IMPROVEMENTS,
        S.LOW,
        0.8,
        r"\bin\s+(?:a\s+)?production(?:\s+(?:system|environment|code|setup))?,?\s+(?:we|this|you|it)\s+"
        r"(?:would|should|will|could)\b",
    ),
    _rule(
        C.FUTURE_IMPROVEMENTS,
        S.LOW,
        0.75,
        r"\b(?:eventually|someday|in\s+the\s+future)\b.{0,40}?\b(?:implement|add|replace|support|switch|refactor"
        r"|rewrite)(?:s|ed|ing|ation)?\b",
    ),
    _rule(C.FUTURE_IMPROVEMENTS, S.LOW, 0.75, r"\bfuture\s+(?:improvements?|enhancements?)\b"),
)
del C, S

# Every rule above needs at least one of these (lower-cased) words; a comment without any is not
# matched against the rules, and a file without any in its comments is not lexed. Matching
# lower-cased text with a case-sensitive pattern measured ~8x faster than re.IGNORECASE.
_CANDIDATES = re.compile(
    r"todo|fixme|xxx|hack|implement|placeholder|stub|dummy|fake|mock|temporar|quick|work.?around"
    r"|band.?aid|kludge|hard.?coded|magic|configurable|production|in\s+a\s+(?:real|proper|full)|eventually"
    r"|someday|future"
)


def has_candidate(text: str) -> bool:
    """Whether ``text`` holds a word that some comment rule needs; False rules every rule out."""
    return _CANDIDATES.search(text.lower()) is not None


_QUOTES = "\"'`\u201c\u201d\u2018\u2019"
_MARKER_WORD = re.compile(r"\b(?:TODO|FIXME|XXX|HACK)\b")
_QUOTED = re.compile(r'"[^"]*"|`[^`]*`|\u201c[^\u201d]*\u201d')
_DOC_MARKERS = re.compile(r"@(?:param|returns?|throws|see|example)\b|:(?:param|returns?|raises)\b")
_COMMENT_DECORATION = re.compile(r"^\s*(?:/{2,}!?|/\*+!?|\*+(?!/)|#+:?|<!--)?\s*")
_COMMENT_TAIL = re.compile(r"\s*(?:\*+/|-->)\s*$")


def comment_line_text(raw: str) -> str:
    """A comment line without its ``//``, ``#``, ``/*``, leading ``*`` and closing ``*/``."""
    return _COMMENT_TAIL.sub("", _COMMENT_DECORATION.sub("", raw, count=1)).strip()


def classify_comment(line: str, *, test_file: bool) -> Hit | None:
    """The most severe confident rule matching one comment line, or None.

    Adjustments: a match quoted in the comment is a mention of the word, not a use (-0.4); a line
    carrying documentation markers is prose (-0.3); a match opening the comment is a use (+0.1), and
    so is one beside a marker word such as ``XXX`` (+0.2); stubs and fakes are the point of test
    doubles, so code-stub phrases in test files get -0.4.
    """
    if not has_candidate(line):
        return None
    marked = _MARKER_WORD.search(_QUOTED.sub("", line)) is not None
    best: Hit | None = None
    for rule in COMMENT_RULES:
        m = rule.pattern.search(line)
        if m is None or (rule.unless is not None and rule.unless.search(line)):
            continue
        confidence = rule.confidence
        before = line[m.start() - 1] if m.start() else ""
        after = line[m.end()] if m.end() < len(line) else ""
        if (before and before in _QUOTES) or (after and after in _QUOTES):
            confidence -= 0.4
        if _DOC_MARKERS.search(line):
            confidence -= 0.3
        if m.start() == 0:
            confidence += 0.1
        if marked and rule.category is not Category.EXPLICIT:
            confidence += 0.2
        if test_file and rule.category is Category.CODE_STUBS:
            confidence -= 0.4
        confidence = round(min(1.0, max(0.0, confidence)), 2)
        if confidence < MIN_CONFIDENCE:
            continue
        if best is None or (rule.severity.rank, confidence) > (best.severity.rank, best.confidence):
            best = Hit(rule.category, rule.severity, confidence)
    return best


# --- stubs in code --------------------------------------------------------------------------------

_STUB_MESSAGE = r"(?:TODO|FIXME|not\s+(?:yet\s+)?implemented|unimplemented)"
# Each pattern starts with a literal so that the regex engine can skip ahead to it (a leading \b or
# re.IGNORECASE measured 30x slower); the word boundary before it is checked by the caller.
CODE_STUB_PATTERNS: dict[str, re.Pattern[str]] = {
    "javascript": re.compile(rf"throw\s+new\s+Error\s*\(\s*[\"'`]\s*(?i:{_STUB_MESSAGE})"),
    "rust": re.compile(r"(?:todo|unimplemented)!\s*[(\[{]"),
    "go": re.compile(rf"panic\s*\(\s*[\"`]\s*(?i:{_STUB_MESSAGE})"),
    "java": re.compile(rf"throw\s+new\s+UnsupportedOperationException\s*\(\s*\"\s*(?i:{_STUB_MESSAGE})"),
    "csharp": re.compile(r"throw\s+new\s+NotImplementedException\b"),
    "kotlin": re.compile(r"TODO\s*\("),
    "swift": re.compile(rf"fatalError\s*\(\s*\"\s*(?i:{_STUB_MESSAGE})"),
}
CODE_STUB_CONFIDENCE = 0.95

_STUB_STATEMENT = r"(?:pass\b|\.\.\.|raise[ \t]+NotImplementedError\b)"
_HEADER_OR_DOCSTRING_END = r"(?:\)[ \t]*:|->[^\n]*:|" + '"""' + "|''')"
# A stub statement right after a line that can end a def header or a docstring (blank and comment
# lines between allowed), or a one-line def. The AST decides; this only spares parsing the files
# whose stub-like statements all follow ``except:``, ``else:`` and the like.
_PY_STUB_HINT = re.compile(
    rf"def\b[^\n]*:[ \t]*{_STUB_STATEMENT}"
    rf"|{_HEADER_OR_DOCSTRING_END}[ \t]*(?:\#[^\n]*)?\n(?:[ \t]*(?:\#[^\n]*)?\n)*[ \t]*{_STUB_STATEMENT}",
)
_EXEMPT_DECORATORS = frozenset(
    {"abstractmethod", "abstractproperty", "abstractclassmethod", "abstractstaticmethod", "overload"}
)
PY_STUB_CONFIDENCE = {"pass": 0.85, "...": 0.85, "raise NotImplementedError": 0.9}


def python_stubs(text: str) -> list[tuple[int, str, str]]:
    """``(line, function name, body kind)`` for each function whose body is only a stub statement.

    Not stubs: abstract methods and overloads (their body is never run), methods of ``Protocol``
    classes (they declare an interface), and class bodies such as ``class Error(Exception): pass``,
    which are complete definitions.
    """
    if not _PY_STUB_HINT.search(text):
        return []
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError):
        return []
    found: list[tuple[int, str, str]] = []
    _walk(tree, protocol=False, found=found)
    return found


def _walk(node: ast.AST, *, protocol: bool, found: list[tuple[int, str, str]]) -> None:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.ClassDef):
            _walk(child, protocol=any(_is_protocol(base) for base in child.bases), found=found)
        elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            kind = _stub_kind(child.body)
            if (
                kind
                and not protocol
                and not any(_decorator_name(d) in _EXEMPT_DECORATORS for d in child.decorator_list)
            ):
                found.append((child.lineno, child.name, kind))
            _walk(child, protocol=False, found=found)
        elif isinstance(child, ast.stmt | ast.excepthandler | ast.match_case):
            _walk(child, protocol=protocol, found=found)


def _stub_kind(body: list[ast.stmt]) -> str | None:
    first = body[0]
    is_docstring = isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
    if len(body) == 2 and is_docstring and isinstance(first.value.value, str):
        body = body[1:]
    if len(body) != 1:
        return None
    stmt = body[0]
    if isinstance(stmt, ast.Pass):
        return "pass"
    if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and stmt.value.value is Ellipsis:
        return "..."
    if isinstance(stmt, ast.Raise) and stmt.exc is not None:
        exc = stmt.exc.func if isinstance(stmt.exc, ast.Call) else stmt.exc
        if isinstance(exc, ast.Name) and exc.id == "NotImplementedError":
            return "raise NotImplementedError"
    return None


def _decorator_name(node: ast.expr) -> str:
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else ""


def _is_protocol(base: ast.expr) -> bool:
    if isinstance(base, ast.Subscript):
        base = base.value
    return _decorator_name(base) == "Protocol"


_TEST_NAME = re.compile(r"^(?:test_.*\.py|.*_test\.(?:py|go)|conftest\.py|.*\.(?:test|spec)\.[cm]?[jt]sx?)$")
_TEST_DIRS = frozenset({"tests", "test", "__tests__", "spec", "testing"})


def is_test_path(path: str) -> bool:
    """Test files legitimately hold fakes and no-op doubles."""
    pure = PurePath(path)
    return bool(_TEST_NAME.match(pure.name)) or any(part in _TEST_DIRS for part in pure.parts[:-1])
