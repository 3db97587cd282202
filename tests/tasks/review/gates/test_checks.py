"""The gates on a worker's result: placeholders, scope, budget, acceptance."""

from __future__ import annotations

import pytest

from tasks.review.gates.checks import added_lines, run_gates, scope_violations, score

PLACEHOLDER_FILE = "def handler():\n    # PLACEHOLDER: fill in\n    return 1\n"


def rules(violations) -> list[tuple[str, str, str | None, int | None]]:
    return [(v.rule, v.severity, v.file, v.line) for v in violations]


def test_a_clean_result_of_a_tier_3_task_has_no_violation():
    result = {"files_modified": [{"path": "src/a.py", "operation": "create", "content": "x = 1\n"}]}
    assert run_gates(spec={"risk_tier": 3}, result=result) == []


def test_a_placeholder_in_created_content_is_found_with_file_and_line():
    result = {"files_modified": [{"path": "src/h.py", "operation": "create", "content": PLACEHOLDER_FILE}]}
    violations = run_gates(spec={"risk_tier": 3}, result=result)
    assert rules(violations) == [("placeholders.placeholder_code", "critical", "src/h.py", 2)]
    assert violations[0].gate == "placeholders"
    assert "fill in" in violations[0].message


def test_only_the_lines_a_diff_adds_are_scanned_and_numbered_in_the_new_file():
    diff = (
        "--- a/src/h.py\n+++ b/src/h.py\n@@ -10,3 +10,4 @@\n"
        " def handler():\n-    # TODO: remove this old note\n+    # PLACEHOLDER: fill in\n+    x = 2\n     return 1\n"
    )
    assert added_lines(diff) == [(11, "    # PLACEHOLDER: fill in"), (12, "    x = 2")]
    result = {"files_modified": [{"path": "src/h.py", "operation": "modify", "diff": diff}]}
    assert rules(run_gates(spec={"risk_tier": 3}, result=result)) == [
        ("placeholders.placeholder_code", "critical", "src/h.py", 11)
    ]


def test_deleted_files_and_data_strings_are_not_findings():
    result = {
        "files_modified": [
            {"path": "src/old.py", "operation": "delete"},
            {"path": "src/s.py", "operation": "create", "content": 'status = "todo"\nupdated_at = 1\n'},
        ]
    }
    assert run_gates(spec={"risk_tier": 3}, result=result) == []


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("src/app/views.py", []),
        ("src/app/migrations/0001.py", [("scope.out", "critical", "src/app/migrations/0001.py", None)]),
        ("docs/readme.md", [("scope.in", "high", "docs/readme.md", None)]),
        ("srcx/evil.py", [("scope.in", "high", "srcx/evil.py", None)]),
    ],
)
def test_scope_in_and_out(path, expected):
    spec = {"risk_tier": 3, "scope": {"in": ["src"], "out": ["src/app/migrations"]}}
    result = {"files_modified": [{"path": path, "operation": "create", "content": "x = 1\n"}]}
    assert rules(run_gates(spec=spec, result=result)) == expected


def test_the_change_budget_counts_files_and_changed_lines():
    spec = {"risk_tier": 3, "change_budget": {"max_files": 1, "max_lines": 3}}
    result = {
        "files_modified": [
            {"path": "a.py", "operation": "create", "content": "a = 1\nb = 2\n"},
            {
                "path": "b.py",
                "operation": "modify",
                "diff": "--- a/b.py\n+++ b/b.py\n@@ -1,1 +1,1 @@\n-x = 1\n+x = 2\n",
            },
        ]
    }
    assert rules(run_gates(spec=spec, result=result)) == [
        ("budget.files", "critical", None, None),
        ("budget.lines", "critical", None, None),
    ]
    within = {"risk_tier": 3, "change_budget": {"max_files": 2, "max_lines": 4}}
    assert run_gates(spec=within, result=result) == []


@pytest.mark.parametrize(("tier", "needs"), [(1, True), (2, True), (3, False)])
def test_acceptance_criteria_are_required_for_tiers_1_and_2(tier, needs):
    assert bool(run_gates(spec={"risk_tier": tier}, result={})) is needs
    criteria = [{"id": "A1", "given": "g", "when": "w", "then": "t"}]
    assert run_gates(spec={"risk_tier": tier, "acceptance": criteria}, result={}) == []


def test_the_score_weighs_severities_and_floors_at_zero():
    result = {"files_modified": [{"path": "h.py", "operation": "create", "content": PLACEHOLDER_FILE * 5}]}
    violations = run_gates(spec={"risk_tier": 3}, result=result)
    assert len(violations) == 5
    assert score(violations) == 0.0
    assert score(violations[:1]) == 0.7
    assert score([]) == 1.0


def test_malformed_files_modified_entries_are_ignored_not_crashed_on():
    result = {"files_modified": [None, "x", {"operation": "create"}, {"path": 5}]}
    assert run_gates(spec={"risk_tier": 3}, result=result) == []


@pytest.mark.parametrize(
    "path",
    ["src/../infra/prod.tf", "/srv/ws/T/infra/prod.tf", "./infra/x", "src//x", "src\\..\\infra", "src/\x00x", ""],
)
def test_a_path_a_worker_reports_that_is_not_plainly_relative_is_a_critical_scope_violation(path):
    # A worker other than the reference worker need not refuse such paths; the gate does.
    found = scope_violations(
        [{"path": path, "operation": "create", "content": "x"}], {"in": ["src/"], "out": ["infra/"]}
    )
    assert [(v.rule, v.severity) for v in found] == [("scope.invalid_path", "critical")]


def test_scope_prefixes_are_compared_normalised():
    scope = {"in": ["./src//"], "out": ["src/vendor/./"]}
    files = [{"path": "src/vendor/lib.py"}, {"path": "src/app.py"}]
    assert [(v.rule, v.file) for v in scope_violations(files, scope)] == [("scope.out", "src/vendor/lib.py")]
