"""The placeholder gate on a diff-only change, with the workspace copy of the file to read."""

from __future__ import annotations

from security.sandbox import Operation, Reason, SandboxDenied
from tasks.review.gates.checks import diff_findings, hunk_ranges, run_gates

STUB_FILE = "import os\n\n\ndef handler():\n    pass\n\n\ndef other():\n    return 2\n"
# Replaces the body of handler with ``pass``: its ``def`` is a context line.
STUB_DIFF = (
    "--- a/src/h.py\n+++ b/src/h.py\n@@ -2,4 +2,4 @@\n \n \n def handler():\n-    return os.getcwd()\n+    pass\n"
)


def rules(violations) -> list[tuple[str, str, str | None, int | None]]:
    return [(v.rule, v.severity, v.file, v.line) for v in violations]


def reader(files: dict[str, str]):
    return lambda path: files.get(path)


def result_of(diff: str, path: str = "src/h.py") -> dict:
    return {"files_modified": [{"path": path, "operation": "modify", "diff": diff}]}


def test_a_stub_whose_def_is_context_is_found_only_with_the_workspace_copy():
    assert run_gates(spec={"risk_tier": 3}, result=result_of(STUB_DIFF)) == []

    violations = run_gates(
        spec={"risk_tier": 3}, result=result_of(STUB_DIFF), read_file=reader({"src/h.py": STUB_FILE})
    )

    assert rules(violations) == [("placeholders.code_stubs", "high", "src/h.py", 4)]


def test_an_added_line_inside_a_string_is_no_comment_in_its_real_context():
    new_file = 'HELP = """\nUsage:\n# TODO: fill in\n"""\n'
    diff = '--- a/src/h.py\n+++ b/src/h.py\n@@ -1,3 +1,4 @@\n HELP = """\n Usage:\n+# TODO: fill in\n """\n'

    assert rules(run_gates(spec={"risk_tier": 3}, result=result_of(diff))) == [
        ("placeholders.explicit", "high", "src/h.py", 3)
    ]
    assert run_gates(spec={"risk_tier": 3}, result=result_of(diff), read_file=reader({"src/h.py": new_file})) == []


def test_an_unchanged_placeholder_outside_the_hunks_is_not_the_changes_fault():
    new_file = "# TODO: old note\n" + "x = 1\n" * 20 + "def handler():\n    pass\n"
    diff = "--- a/src/h.py\n+++ b/src/h.py\n@@ -22,2 +22,2 @@\n def handler():\n-    return 1\n+    pass\n"

    violations = run_gates(spec={"risk_tier": 3}, result=result_of(diff), read_file=reader({"src/h.py": new_file}))

    assert rules(violations) == [("placeholders.code_stubs", "high", "src/h.py", 22)]


def test_a_copy_that_does_not_hold_the_added_lines_is_not_used():
    stale = STUB_FILE.replace("    pass\n", "    return os.getcwd()\n")

    findings = diff_findings("src/h.py", STUB_DIFF, reader({"src/h.py": stale}))

    assert findings == []  # the added lines alone: "    pass" is no stub without its def


def test_a_refused_read_of_the_copy_is_a_blocking_violation():
    def refusing(path: str) -> str | None:
        raise SandboxDenied(path, Operation.READ, Reason.SYMLINK, root="/w/t")

    violations = run_gates(spec={"risk_tier": 3}, result=result_of(STUB_DIFF), read_file=refusing)

    assert rules(violations) == [("placeholders.sandbox_denied", "critical", "src/h.py", None)]
    assert "symlink" in violations[0].message


def test_content_changes_are_scanned_from_the_result_without_reading_the_workspace():
    def never(path: str) -> str | None:
        raise AssertionError("a change carrying its content needs no workspace read")

    result = {"files_modified": [{"path": "a.py", "operation": "create", "content": "x = 1\n"}]}
    assert run_gates(spec={"risk_tier": 3}, result=result, read_file=never) == []


def test_hunk_ranges_span_each_hunks_new_lines():
    diff = "@@ -1,2 +1,3 @@\n a\n+b\n c\n@@ -10 +11 @@\n-x\n+y\n"
    assert hunk_ranges(diff) == [range(1, 4), range(11, 12)]
