"""The placeholder scanner: comment- and string-aware detection of unfinished code.

``scan_text`` judges one file's text, ``scan_paths`` walks files and directories, ``score`` turns
findings into the 0-1 quality score of issue 4. Comment findings come from the comments that the
per-language lexers find (documentation comments excluded); code findings are stub shapes in the
code itself. Prose files are not scanned: writing about these words is not leaving them in code.
"""

from __future__ import annotations

import os
import re
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

from tasks.review.gates import placeholder_clike as clike
from tasks.review.gates import placeholder_lexers as lexers
from tasks.review.gates.placeholder_rules import (
    CODE_STUB_CONFIDENCE,
    CODE_STUB_PATTERNS,
    MIN_CONFIDENCE,
    PY_STUB_CONFIDENCE,
    Category,
    Severity,
    classify_comment,
    comment_line_text,
    has_candidate,
    is_test_path,
    python_stubs,
)

__all__ = [
    "DEFAULT_EXCLUDED_DIRS",
    "Category",
    "Finding",
    "ScanReport",
    "Severity",
    "language_for",
    "scan_paths",
    "scan_text",
    "score",
]

Source = Literal["comment", "code"]

SEVERITY_WEIGHTS = {Severity.CRITICAL: 0.3, Severity.HIGH: 0.2, Severity.MEDIUM: 0.1, Severity.LOW: 0.05}
DEFAULT_EXCLUDED_DIRS = frozenset(
    {".git", ".venv", "venv", "node_modules", "var", "__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
    | {".hypothesis", ".tox"}
)
MAX_FILE_BYTES = 2 * 1024 * 1024
_TEXT_LIMIT = 200
_TEST_FILE_STUB_PENALTY = 0.4


@dataclass(frozen=True, slots=True)
class Finding:
    """One placeholder found at one line.

    ``source`` tells a finding in a comment from a stub shape in code: the first is someone's note,
    the second is behaviour, and the property tests rely on the distinction.
    """

    file: str
    line: int
    category: Category
    severity: Severity
    confidence: float
    text: str
    source: Source = "comment"

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["category"] = str(self.category)
        data["severity"] = str(self.severity)
        return data


@dataclass(frozen=True, slots=True)
class _Language:
    """How one language is lexed, and how to tell cheaply that a file cannot have a comment finding.

    ``quick_lex`` is a faster lexer whose comments are a superset-in-practice of ``lex``'s; when it
    finds nothing the authoritative lexer is not run. ``comment_style`` drives the cheaper test
    before both: a comment can only hold a candidate word after a comment opener on its line, or
    (for block comments) after a ``/*`` that is not yet closed.
    """

    name: str
    lex: Callable[[str], lexers.Lexed]
    comment_style: Literal["hash", "slash", "slash-nested"]
    quick_lex: Callable[[str], lexers.Lexed] | None = None

    @property
    def stub_pattern(self) -> re.Pattern[str] | None:
        return CODE_STUB_PATTERNS.get(self.name)


def _clike(name: str, cfg: clike.CLike) -> _Language:
    style: Literal["slash", "slash-nested"] = "slash-nested" if cfg.nested_block else "slash"
    return _Language(name, lambda text: clike.lex_clike(text, cfg), style)


_PYTHON = _Language("python", lexers.lex_python, "hash", lexers.lex_python_quick)
_LANGUAGES: dict[str, _Language] = {
    ".py": _PYTHON,
    ".pyi": _PYTHON,
    **dict.fromkeys((".js", ".jsx", ".ts", ".tsx", ".mjs", ".cjs", ".mts", ".cts"), _clike("javascript", clike.JS)),
    ".rs": _clike("rust", clike.RUST),
    ".go": _clike("go", clike.GO),
    ".java": _clike("java", clike.JAVA),
    **dict.fromkeys((".c", ".h", ".cc", ".cpp", ".cxx", ".hpp", ".hh"), _clike("c", clike.C_CPP)),
    ".cs": _clike("csharp", clike.CSHARP),
    ".swift": _clike("swift", clike.KOTLIN_SWIFT),
    **dict.fromkeys((".kt", ".kts"), _clike("kotlin", clike.KOTLIN_SWIFT)),
    **dict.fromkeys((".sh", ".bash", ".zsh"), _Language("shell", lexers.lex_shell, "hash")),
    **dict.fromkeys((".yml", ".yaml"), _Language("yaml", lexers.lex_yaml, "hash")),
}


def language_for(path: str) -> str | None:
    """The language scanned for this file name, or None for files that are not scanned (prose, data)."""
    entry = _LANGUAGES.get(os.path.splitext(path)[1].lower())
    return entry.name if entry else None


def scan_text(text: str, path: str) -> list[Finding]:
    """Findings in one file's text, in line order; ``path`` decides the language and is reported."""
    language = _LANGUAGES.get(os.path.splitext(path)[1].lower())
    if language is None:
        return []
    test_file = is_test_path(path)
    findings: list[Finding] = []
    if language is _PYTHON and not path.endswith(".pyi"):
        findings += _python_code_findings(text, path, test_file)
    stub_pattern = language.stub_pattern
    has_stub_call = stub_pattern is not None and stub_pattern.search(text) is not None
    has_candidates = _may_have_comment_candidates(text, language.comment_style)
    if not (has_candidates or has_stub_call):
        return findings
    lines = _LineIndex(text)
    lexed: lexers.Lexed | None = None
    if has_candidates:
        if language.quick_lex is not None:
            found = _comment_findings(text, path, language.quick_lex(text), lines, test_file)
            if found:
                lexed = language.lex(text)
                found = _comment_findings(text, path, lexed, lines, test_file)
        else:
            lexed = language.lex(text)
            found = _comment_findings(text, path, lexed, lines, test_file)
        findings += found
    if has_stub_call and stub_pattern is not None:
        lexed = lexed or language.lex(text)
        findings += _pattern_code_findings(text, path, lexed, lines, stub_pattern, test_file)
    findings.sort(key=lambda f: (f.line, f.source))
    return findings


_HASH_FRAGMENTS = re.compile(r"#[^\n]*")
_LINE_FRAGMENTS = re.compile(r"//[^\n]*")
_BLOCK_FRAGMENTS = re.compile(r"/\*(?:[^*]++|\*(?!/))*+(?:\*/[^\n]*)?")


def _may_have_comment_candidates(text: str, style: str) -> bool:
    """Whether some candidate word could sit in a comment; False means that none does.

    Every comment lies inside a fragment cut from a comment opener to the end of its line (or, for
    ``/*``, to the end of the line holding the next ``*/``), whatever strings surround it, so one
    search over those fragments rules most files out without lexing. Nesting block comments defeat
    the cut, so for them any ``/*`` means the whole text is searched.
    """
    if style == "hash":
        if "#" not in text:
            return False
        fragments = _HASH_FRAGMENTS.findall(text)
    else:
        fragments = _LINE_FRAGMENTS.findall(text) if "//" in text else []
        if "/*" in text:
            fragments += [text] if style == "slash-nested" else _BLOCK_FRAGMENTS.findall(text)
    return has_candidate("\n".join(fragments))


def _comment_findings(text: str, path: str, lexed: lexers.Lexed, lines: _LineIndex, test_file: bool) -> list[Finding]:
    findings = []
    for start, end, is_doc in lexed.comments:
        if is_doc:
            continue
        chunk = text[start:end]
        if not has_candidate(chunk):
            continue
        first_line = lines.line_of(start)
        for offset, raw in enumerate(chunk.split("\n")):
            body = comment_line_text(raw)
            hit = classify_comment(body, test_file=test_file) if body else None
            if hit is not None:
                findings.append(
                    Finding(path, first_line + offset, hit.category, hit.severity, hit.confidence, body[:_TEXT_LIMIT])
                )
    return findings


def _python_code_findings(text: str, path: str, test_file: bool) -> list[Finding]:
    findings = []
    for line, name, kind in python_stubs(text):
        confidence = PY_STUB_CONFIDENCE[kind] - (_TEST_FILE_STUB_PENALTY if test_file else 0)
        if confidence >= MIN_CONFIDENCE:
            findings.append(
                Finding(
                    path,
                    line,
                    Category.CODE_STUBS,
                    Severity.HIGH,
                    confidence,
                    f"def {name}: body is only {kind}",
                    "code",
                )
            )
    return findings


def _pattern_code_findings(
    text: str, path: str, lexed: lexers.Lexed, lines: _LineIndex, pattern: re.Pattern[str], test_file: bool
) -> list[Finding]:
    """Stub calls in code: not inside a comment or string literal, not the tail of a longer name."""
    confidence = CODE_STUB_CONFIDENCE - (_TEST_FILE_STUB_PENALTY if test_file else 0)
    if confidence < MIN_CONFIDENCE:
        return []
    spans = sorted([(s, e) for s, e, _ in lexed.comments] + lexed.strings)
    starts = [s for s, _ in spans]
    findings = []
    for m in pattern.finditer(text):
        at = m.start()
        if at and (text[at - 1].isalnum() or text[at - 1] in "_."):
            continue
        i = bisect_right(starts, at) - 1
        if i >= 0 and at < spans[i][1]:
            continue
        line = lines.line_of(at)
        findings.append(
            Finding(
                path, line, Category.CODE_STUBS, Severity.HIGH, confidence, lines.text_of(line)[:_TEXT_LIMIT], "code"
            )
        )
    return findings


class _LineIndex:
    """Offset-to-line lookups, built on first use because most files never need one."""

    def __init__(self, text: str) -> None:
        self._text = text
        self._starts: list[int] | None = None

    def line_of(self, offset: int) -> int:
        if self._starts is None:
            self._starts = lexers.line_starts(self._text)
        return bisect_right(self._starts, offset)

    def text_of(self, line: int) -> str:
        self.line_of(0)
        assert self._starts is not None
        start = self._starts[line - 1]
        end = self._text.find("\n", start)
        return self._text[start : end if end >= 0 else len(self._text)].strip()


def score(findings: Iterable[Finding]) -> float:
    """``1 - 0.3·critical - 0.2·high - 0.1·medium - 0.05·low``, floored at 0 (rounded against float noise)."""
    penalty = sum(SEVERITY_WEIGHTS[f.severity] for f in findings)
    return round(max(0.0, 1.0 - penalty), 4)


@dataclass(slots=True)
class ScanReport:
    findings: list[Finding] = field(default_factory=list)
    files_scanned: int = 0
    bytes_scanned: int = 0
    skipped: Counter[str] = field(default_factory=Counter)

    @property
    def score(self) -> float:
        return score(self.findings)

    @property
    def counts(self) -> dict[str, int]:
        by_severity = Counter(f.severity for f in self.findings)
        return {str(sev): by_severity.get(sev, 0) for sev in sorted(Severity, key=lambda s: -s.rank)}

    @property
    def category_counts(self) -> dict[str, int]:
        return dict(sorted(Counter(str(f.category) for f in self.findings).items()))

    def at_or_above(self, severity: Severity) -> list[Finding]:
        return [f for f in self.findings if f.severity.rank >= severity.rank]

    def to_dict(self) -> dict[str, object]:
        return {
            "findings": [f.to_dict() for f in self.findings],
            "score": self.score,
            "counts": self.counts,
            "categories": self.category_counts,
            "files_scanned": self.files_scanned,
        }


def scan_paths(
    paths: Iterable[str | os.PathLike[str]],
    *,
    exclude: Iterable[str] = DEFAULT_EXCLUDED_DIRS,
    relative_to: str | os.PathLike[str] | None = None,
) -> ScanReport:
    """Scan files and directory trees; ``exclude`` names directories never entered.

    Files named explicitly are scanned even inside excluded directories: the caller chose them.
    Binary files (a NUL byte in the first 8 KiB), files over 2 MiB, minified bundles and files in
    languages the scanner does not know are skipped and counted in ``report.skipped``. Finding paths
    are shown relative to ``relative_to`` when the file lies beneath it.
    """
    excluded = frozenset(exclude)
    base = Path(relative_to).resolve() if relative_to is not None else None
    report = ScanReport()
    for file in _iter_files(paths, excluded):
        if language_for(file.name) is None or file.name.endswith((".min.js", ".min.mjs")):
            report.skipped["unsupported"] += 1
            continue
        try:
            if file.stat().st_size > MAX_FILE_BYTES:
                report.skipped["too_large"] += 1
                continue
            data = file.read_bytes()
        except OSError:
            report.skipped["unreadable"] += 1
            continue
        if b"\0" in data[:8192]:
            report.skipped["binary"] += 1
            continue
        report.files_scanned += 1
        report.bytes_scanned += len(data)
        report.findings += scan_text(data.decode("utf-8", errors="replace"), _display(file, base))
    return report


def _iter_files(paths: Iterable[str | os.PathLike[str]], excluded: frozenset[str]) -> Iterator[Path]:
    for given in paths:
        path = Path(given)
        if path.is_file():
            yield path
            continue
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if d not in excluded)
            for name in sorted(files):
                yield Path(root, name)


def _display(file: Path, base: Path | None) -> str:
    if base is not None:
        try:
            return str(file.resolve().relative_to(base))
        except ValueError:
            pass
    return str(file)
