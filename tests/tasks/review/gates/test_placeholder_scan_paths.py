"""Walking files and directories, what is skipped, the score, and this repository's own code."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from tasks.review.gates.placeholders import Category, Finding, Severity, scan_paths, scan_text, score

CRITICAL_LINE = "x = 1  # PLACEHOLDER: fill in\n"


def _write(root: Path, relative: str, content: str | bytes) -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return path


def _finding(severity: Severity) -> Finding:
    return Finding("a.py", 1, Category.EXPLICIT, severity, 1.0, "text")


def test_it_walks_directories_and_reports_paths_relative_to_the_base(tmp_path):
    _write(tmp_path, "app/service.py", CRITICAL_LINE)
    _write(tmp_path, "web/app.ts", "// TODO: implement paging\n")
    _write(tmp_path, "app/clean.py", "x = 1\n")

    report = scan_paths([tmp_path], relative_to=tmp_path)

    assert [(f.file, f.severity) for f in report.findings] == [
        ("app/service.py", Severity.CRITICAL),
        ("web/app.ts", Severity.HIGH),
    ]
    assert report.files_scanned == 3
    assert report.counts == {"critical": 1, "high": 1, "medium": 0, "low": 0}
    assert report.category_counts == {"explicit": 1, "placeholder_code": 1}


@pytest.mark.parametrize("excluded", [".git", ".venv", "node_modules", "var", "__pycache__"])
def test_it_does_not_enter_excluded_directories(tmp_path, excluded):
    _write(tmp_path, f"{excluded}/lib/module.py", CRITICAL_LINE)

    report = scan_paths([tmp_path])

    assert report.findings == []
    assert report.files_scanned == 0


def test_a_file_named_explicitly_is_scanned_even_in_an_excluded_directory(tmp_path):
    path = _write(tmp_path, "var/module.py", CRITICAL_LINE)

    assert len(scan_paths([path]).findings) == 1


def test_the_exclusions_can_be_replaced(tmp_path):
    _write(tmp_path, "var/module.py", CRITICAL_LINE)
    _write(tmp_path, "generated/module.py", CRITICAL_LINE)

    report = scan_paths([tmp_path], exclude={"generated"}, relative_to=tmp_path)

    assert [f.file for f in report.findings] == ["var/module.py"]


def test_it_skips_binary_large_minified_and_prose_files(tmp_path):
    _write(tmp_path, "binary.py", b"x = 1  # PLACEHOLDER: fill in\n\x00\x01")
    _write(tmp_path, "large.py", CRITICAL_LINE + "x = 1\n" * 400_000)
    _write(tmp_path, "vendor.min.js", "// PLACEHOLDER: fill in\n")
    _write(tmp_path, "README.md", "# PLACEHOLDER: fill in\n")

    report = scan_paths([tmp_path])

    assert report.findings == []
    assert report.skipped == {"binary": 1, "too_large": 1, "unsupported": 2}


def test_undecodable_bytes_do_not_stop_the_scan(tmp_path):
    _write(tmp_path, "latin1.py", "name = 'caf\xe9'  # PLACEHOLDER: fill in\n".encode("latin-1"))

    assert [f.line for f in scan_paths([tmp_path]).findings] == [1]


def test_a_finding_serialises_with_plain_strings():
    (finding,) = scan_text(CRITICAL_LINE, "app/m.py")

    assert finding.to_dict() == {
        "file": "app/m.py",
        "line": 1,
        "category": "placeholder_code",
        "severity": "critical",
        "confidence": 1.0,
        "text": "PLACEHOLDER: fill in",
        "source": "comment",
    }


@pytest.mark.parametrize(
    ("severities", "expected"),
    [
        ([], 1.0),
        ([Severity.CRITICAL], 0.7),
        ([Severity.HIGH], 0.8),
        ([Severity.MEDIUM], 0.9),
        ([Severity.LOW], 0.95),
        ([Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.LOW], 0.35),
        ([Severity.HIGH] * 3 + [Severity.LOW], 0.35),
        ([Severity.CRITICAL] * 4, 0.0),
    ],
)
def test_the_score_subtracts_a_weight_per_severity_and_floors_at_zero(severities, expected):
    assert score(_finding(s) for s in severities) == expected


def test_the_report_scores_its_findings(tmp_path):
    _write(tmp_path, "a.py", CRITICAL_LINE + "y = 2  # quick hack\n")

    assert scan_paths([tmp_path]).score == 0.6


def test_the_repository_has_no_critical_placeholder():
    """The CI gate, as a test: run ``check_placeholders --fail-on critical`` on this repository."""
    report = scan_paths([settings.BASE_DIR], relative_to=settings.BASE_DIR)

    assert report.at_or_above(Severity.CRITICAL) == []
