"""The quality gates run on a worker's result, before any verdict.

Each gate turns the result's ``files_modified`` (and the spec) into
violations: ``{gate, rule, severity, file, line, message}``. Gates are pure
functions of their input, so the same result always gets the same violations.

- ``placeholders``: the placeholder scanner on every created or modified file
  (the whole content, or what a unified diff adds: see :func:`diff_findings`);
- ``scope``: every path inside ``scope.in`` (when given) and none inside ``scope.out``;
- ``budget``: files and changed lines within ``change_budget``;
- ``acceptance``: acceptance criteria present for risk tiers 1 and 2.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from security.sandbox import SandboxDenied
from tasks.models import Gate
from tasks.review.gates.placeholders import SEVERITY_WEIGHTS, Finding, Severity, scan_text

# The workspace copy of a result's file by its path: its text, None when there is none;
# raises SandboxDenied when the sandbox refuses to read it (security/sandbox_audit.py).
ReadFile = Callable[[str], str | None]

# Minimum score per risk tier for an automatic approval.
TIER_THRESHOLDS = {1: 0.9, 2: 0.8, 3: 0.7}
BLOCKING = frozenset({Severity.CRITICAL.value, Severity.HIGH.value})

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+(\d+)(?:,(\d+))? @@")


@dataclass(frozen=True)
class Violation:
    gate: str
    rule: str
    severity: str
    file: str | None
    line: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_gates(*, spec: dict[str, Any], result: dict[str, Any], read_file: ReadFile | None = None) -> list[Violation]:
    """The violations of ``result``; ``read_file`` reads the task's workspace, when it has one."""
    files = [f for f in result.get("files_modified") or [] if isinstance(f, dict) and isinstance(f.get("path"), str)]
    return [
        *placeholder_violations(files, read_file),
        *scope_violations(files, spec.get("scope") or {}),
        *budget_violations(files, spec.get("change_budget") or {}),
        *acceptance_violations(spec),
    ]


def score(violations: list[Violation]) -> float:
    """``1 - 0.3·critical - 0.2·high - 0.1·medium - 0.05·low``, floored at 0."""
    penalty = sum(SEVERITY_WEIGHTS[Severity(v.severity)] for v in violations)
    return round(max(0.0, 1.0 - penalty), 4)


def added_lines(diff: str) -> list[tuple[int, str]]:
    """(line number in the new file, text) of each line a unified diff adds."""
    out: list[tuple[int, str]] = []
    line_no = 0
    for raw in diff.splitlines():
        hunk = _HUNK.match(raw)
        if hunk:
            line_no = int(hunk.group(1))
        elif raw.startswith("+++") or raw.startswith("---"):
            continue
        elif raw.startswith("+"):
            out.append((line_no, raw[1:]))
            line_no += 1
        elif not raw.startswith("-") and not raw.startswith("\\"):
            line_no += 1
    return out


def hunk_ranges(diff: str) -> list[range]:
    """The new-file lines each hunk of a unified diff spans (its added and context lines)."""
    ranges = []
    for raw in diff.splitlines():
        hunk = _HUNK.match(raw)
        if hunk:
            start = int(hunk.group(1))
            ranges.append(range(start, start + int(hunk.group(2) or 1)))
    return ranges


def diff_findings(path: str, diff: str, read_file: ReadFile | None) -> list[tuple[Finding, int | None]]:
    """Placeholder findings of a diff-only change, each with its line in the new file.

    With the workspace copy of the new file, the whole file is scanned, so every line is
    lexed in its real context (an added line inside a string that a context line opened is
    no comment; a function whose added ``pass`` body sits under an unchanged ``def`` is a
    stub; indented added lines parse as Python), and what is kept is what the change made: a
    finding on an added line, or a stub found in code within one of the diff's hunks (its
    ``def`` may be a context line). The copy is used only if it holds every added line where
    the diff puts it; else, and without a workspace, the added lines are scanned on their own.
    """
    lines = added_lines(diff)
    text = read_file(path) if read_file is not None and lines else None
    if text is not None:
        new_file = text.splitlines()
        if all(0 < number <= len(new_file) and new_file[number - 1] == line for number, line in lines):
            added = {number for number, _ in lines}
            hunks = hunk_ranges(diff)
            return [
                (f, f.line)
                for f in scan_text(text, path)
                if f.line in added or (f.source == "code" and any(f.line in hunk for hunk in hunks))
            ]
    # Scan the added lines as a file of their own, then map back to new-file line numbers.
    findings = scan_text("\n".join(line for _, line in lines) + "\n", path)
    return [(f, lines[f.line - 1][0] if 0 < f.line <= len(lines) else None) for f in findings]


def placeholder_violations(files: list[dict[str, Any]], read_file: ReadFile | None = None) -> list[Violation]:
    violations = []
    for change in files:
        path = change["path"]
        if change.get("operation") == "delete":
            continue
        if isinstance(change.get("content"), str):
            findings = scan_text(change["content"], path)
            mapped = [(f, f.line) for f in findings]
        elif isinstance(change.get("diff"), str):
            try:
                mapped = diff_findings(path, change["diff"], read_file)
            except SandboxDenied as denial:
                # A symlink or special file where the workspace should hold the file: blocking.
                violations.append(
                    Violation(
                        Gate.PLACEHOLDERS, "placeholders.sandbox_denied", Severity.CRITICAL, path, None, str(denial)
                    )
                )
                continue
        else:
            continue
        for finding, line in mapped:
            violations.append(
                Violation(
                    gate=Gate.PLACEHOLDERS,
                    rule=f"placeholders.{finding.category}",
                    severity=str(finding.severity),
                    file=path,
                    line=line,
                    message=finding.text,
                )
            )
    return violations


def _inside(path: str, prefix: str) -> bool:
    prefix = posixpath.normpath(prefix) if prefix else "."
    return prefix == "." or path == prefix or path.startswith(prefix.rstrip("/") + "/")


def clean_relative_path(path: str) -> bool:
    """Whether ``path`` is a plain relative POSIX path: no ``..``, ``.`` or empty part, no root, ``\\`` or NUL.

    The paths come from the worker, which the control plane does not trust (a third-party
    or compromised worker need not be the reference worker, which refuses such paths
    itself): ``src/../infra/prod.tf`` would otherwise pass a scope of ``src/``.
    """
    if not path or path.startswith("/") or "\\" in path or "\x00" in path:
        return False
    return all(part not in ("", ".", "..") for part in path.split("/"))


def scope_violations(files: list[dict[str, Any]], scope: dict[str, Any]) -> list[Violation]:
    scope_in, scope_out = scope.get("in") or [], scope.get("out") or []
    violations = []
    for change in files:
        path = change["path"]
        if not clean_relative_path(path):
            violations.append(
                Violation(
                    Gate.SCOPE,
                    "scope.invalid_path",
                    Severity.CRITICAL,
                    path,
                    None,
                    f"{path!r} is not a plain relative path (absolute, '..', '.', empty part, backslash or NUL)",
                )
            )
            continue
        excluded = next((p for p in scope_out if _inside(path, p)), None)
        if excluded is not None:
            violations.append(
                Violation(
                    Gate.SCOPE, "scope.out", Severity.CRITICAL, path, None, f"{path} is inside scope.out {excluded}"
                )
            )
        elif scope_in and not any(_inside(path, p) for p in scope_in):
            violations.append(
                Violation(Gate.SCOPE, "scope.in", Severity.HIGH, path, None, f"{path} is outside scope.in")
            )
    return violations


def changed_lines(change: dict[str, Any]) -> int:
    if isinstance(change.get("diff"), str):
        return sum(
            1
            for line in change["diff"].splitlines()
            if line[:1] in "+-" and not line.startswith("+++") and not line.startswith("---")
        )
    if isinstance(change.get("content"), str):
        return len(change["content"].splitlines())
    return 0


def budget_violations(files: list[dict[str, Any]], budget: dict[str, Any]) -> list[Violation]:
    violations = []
    max_files, max_lines = budget.get("max_files"), budget.get("max_lines")
    if max_files is not None and len(files) > max_files:
        violations.append(
            Violation(
                Gate.BUDGET,
                "budget.files",
                Severity.CRITICAL,
                None,
                None,
                f"{len(files)} files changed, the budget is {max_files}",
            )
        )
    lines = sum(changed_lines(f) for f in files)
    if max_lines is not None and lines > max_lines:
        violations.append(
            Violation(
                Gate.BUDGET,
                "budget.lines",
                Severity.CRITICAL,
                None,
                None,
                f"{lines} lines changed, the budget is {max_lines}",
            )
        )
    return violations


def acceptance_violations(spec: dict[str, Any]) -> list[Violation]:
    tier = int(spec.get("risk_tier") or 2)
    if tier <= 2 and not spec.get("acceptance"):
        return [
            Violation(
                Gate.ACCEPTANCE,
                "acceptance.missing",
                Severity.HIGH,
                None,
                None,
                f"risk tier {tier} needs acceptance criteria",
            )
        ]
    return []
