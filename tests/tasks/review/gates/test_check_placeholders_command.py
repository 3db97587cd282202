"""``manage.py check_placeholders``: output formats, exit codes, the default path and --changed-since."""

from __future__ import annotations

import json
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

REPO_ROOT = Path(__file__).resolve().parents[4]
CRITICAL = "x = 1  # PLACEHOLDER: fill in\n"
HIGH = "y = 2  # TODO: implement paging\n"
MEDIUM = "z = 3  # quick hack\n"


def _run(*args: str) -> tuple[int, str, str]:
    """Call the command in-process; returns (exit status, stdout, stderr)."""
    out, err = StringIO(), StringIO()
    try:
        call_command("check_placeholders", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return int(exit_.code), out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


@pytest.fixture
def tree(tmp_path, monkeypatch) -> Path:
    """A source tree, with the working directory at its root so that paths print relative to it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_it_prints_one_line_per_finding_and_a_summary(tree):
    (tree / "app.py").write_text("ok = 1\n" + HIGH + MEDIUM)

    status, out, _ = _run(str(tree))

    assert status == 0
    assert out.splitlines() == [
        "app.py:2: high explicit: TODO: implement paging",
        "app.py:3: medium temporary_solutions: quick hack",
        "2 finding(s) in 1 file(s) (critical 0, high 1, medium 1, low 0); score 0.70",
    ]


def test_it_exits_1_when_a_critical_finding_remains_by_default(tree):
    (tree / "app.py").write_text(CRITICAL)

    status, out, err = _run(str(tree))

    assert status == 1
    assert "app.py:1: critical placeholder_code: PLACEHOLDER: fill in" in out
    assert "1 finding(s) at or above critical" in err


@pytest.mark.parametrize(
    ("content", "fail_on", "status"),
    [
        (HIGH, "critical", 0),
        (HIGH, "high", 1),
        (CRITICAL, "high", 1),
        (MEDIUM, "high", 0),
        (MEDIUM, "medium", 1),
        ("x = 1\n", "medium", 0),
    ],
)
def test_fail_on_sets_the_lowest_failing_severity(tree, content, fail_on, status):
    (tree / "app.py").write_text(content)

    assert _run(str(tree), "--fail-on", fail_on)[0] == status


def test_json_output_carries_findings_score_and_counts(tree):
    (tree / "app.py").write_text(HIGH + MEDIUM)

    status, out, _ = _run(str(tree), "--format", "json")

    assert status == 0
    data = json.loads(out)
    assert data["score"] == 0.7
    assert data["counts"] == {"critical": 0, "high": 1, "medium": 1, "low": 0}
    assert data["findings"][0] == {
        "file": "app.py",
        "line": 1,
        "category": "explicit",
        "severity": "high",
        "confidence": 1.0,
        "text": "TODO: implement paging",
        "source": "comment",
    }


def test_json_output_is_printed_before_a_failing_exit(tree):
    (tree / "app.py").write_text(CRITICAL)

    status, out, _ = _run(str(tree), "--format", "json")

    assert status == 1
    assert json.loads(out)["counts"]["critical"] == 1


def test_several_paths_and_single_files_can_be_given(tree):
    (tree / "a").mkdir()
    (tree / "a" / "one.py").write_text(HIGH)
    (tree / "two.py").write_text(HIGH)
    (tree / "three.py").write_text(HIGH)

    _, out, _ = _run(str(tree / "a"), str(tree / "two.py"))

    assert [line.split(":")[0] for line in out.splitlines()[:-1]] == ["a/one.py", "two.py"]


def test_the_default_path_is_the_project_root(tree, settings):
    (tree / "app.py").write_text(HIGH)
    settings.BASE_DIR = tree

    _, out, _ = _run()

    assert out.startswith("app.py:1: high explicit")


def test_a_missing_path_is_a_usage_error(tree):
    with pytest.raises(CommandError, match="no such file or directory") as error:
        _run(str(tree / "nope"))

    assert error.value.returncode == 2


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.org", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


@pytest.fixture
def repo(tree) -> Path:
    """A git repository with two commits: ``old.py`` (critical) first, then ``base.py`` changed."""
    _git(tree, "init", "-q", "-b", "main")
    (tree / "old.py").write_text(CRITICAL)
    (tree / "base.py").write_text("x = 1\n")
    (tree / "gone.py").write_text(HIGH)
    _git(tree, "add", ".")
    _git(tree, "commit", "-q", "-m", "first")
    (tree / "base.py").write_text("x = 1\n" + HIGH)
    _git(tree, "commit", "-q", "-am", "second")
    return tree


def test_changed_since_scans_changed_and_untracked_files_only(repo):
    (repo / "new.py").write_text(MEDIUM)
    (repo / "gone.py").unlink()
    (repo / "notes.md").write_text("PLACEHOLDER: fill in\n")

    status, out, _ = _run(str(repo), "--changed-since", "HEAD~1")

    assert status == 0
    assert out.splitlines() == [
        "base.py:2: high explicit: TODO: implement paging",
        "new.py:1: medium temporary_solutions: quick hack",
        "2 finding(s) in 2 file(s) (critical 0, high 1, medium 1, low 0); score 0.70",
    ]


def test_changed_since_head_sees_uncommitted_edits(repo):
    (repo / "old.py").write_text(CRITICAL + HIGH)

    status, out, _ = _run(str(repo), "--changed-since", "HEAD", "--fail-on", "high")

    assert status == 1
    assert [line.split(":")[0] for line in out.splitlines()[:-1]] == ["old.py", "old.py"]


def test_changed_since_is_limited_to_the_given_paths(repo):
    (repo / "sub").mkdir()
    (repo / "sub" / "inner.py").write_text(HIGH)
    (repo / "outer.py").write_text(HIGH)

    _, out, _ = _run(str(repo / "sub"), "--changed-since", "HEAD")

    assert out.splitlines()[0].startswith("sub/inner.py:1:")
    assert "outer.py" not in out


@pytest.mark.parametrize("rev", ["no-such-rev", "--output=/tmp/x"])
def test_a_bad_revision_is_a_usage_error(repo, rev):
    with pytest.raises(CommandError) as error:
        _run(str(repo), f"--changed-since={rev}")

    assert error.value.returncode == 2


def test_the_exit_status_reaches_the_shell(tmp_path):
    """One real process: ``manage.py`` turns a failing gate into exit status 1 and a bad path into 2."""
    (tmp_path / "app.py").write_text(CRITICAL)
    command = [sys.executable, str(REPO_ROOT / "manage.py"), "check_placeholders"]

    failing = subprocess.run([*command, str(tmp_path)], capture_output=True, text=True, check=False)
    missing = subprocess.run([*command, str(tmp_path / "nope")], capture_output=True, text=True, check=False)

    assert failing.returncode == 1, failing.stderr
    assert "critical placeholder_code" in failing.stdout
    assert missing.returncode == 2
    assert "no such file or directory" in missing.stderr
