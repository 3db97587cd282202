"""Working specs from files and flags (``agency submit``): what the CLI builds before the server judges it."""

from __future__ import annotations

import pytest

from agency import specfile
from agency.errors import UsageProblem


def build(base=None, **flags):
    options = {
        "fields": {},
        "input_json": None,
        "kind": None,
        "params": (),
        "scope_in": (),
        "scope_out": (),
        "max_files": None,
        "max_lines": None,
        "capabilities": (),
    }
    options.update(flags)
    return specfile.build_spec(base or {}, **options)


def test_flags_are_laid_over_the_files_fields():
    base = {
        "title": "From the file",
        "priority": "low",
        "input": {"kind": "sleep", "seconds": 1},
        "scope": {"in": ["a"], "out": ["a/b"]},
        "change_budget": {"max_files": 3, "max_lines": 10},
    }

    spec = build(
        base,
        fields={"priority": "high", "title": None},
        params=("seconds=5", "note=hello", "flags=[1, 2]"),
        scope_in=("docs",),
        max_lines=99,
        capabilities=("python",),
    )

    assert spec == {
        "title": "From the file",
        "priority": "high",
        "input": {"kind": "sleep", "seconds": 5, "note": "hello", "flags": [1, 2]},
        "scope": {"in": ["docs"], "out": ["a/b"]},
        "change_budget": {"max_files": 3, "max_lines": 99},
        "capabilities": ["python"],
    }


def test_input_json_replaces_the_input_and_kind_and_params_go_on_top():
    spec = build({"input": {"kind": "echo", "x": 1}}, input_json='{"kind": "fail"}', params=("retryable=false",))
    assert spec["input"] == {"kind": "fail", "retryable": False}


@pytest.mark.parametrize(("flags", "message"), [
    ({"params": ("seconds",)}, "--param takes key=value"),
    ({"params": ("=5",)}, "--param takes key=value"),
    ({"input_json": "[1]"}, "--input must be a JSON object, not list"),
    ({"input_json": "{nope"}, "--input must be a JSON object"),
])  # fmt: skip
def test_malformed_flags_are_usage_errors(flags, message):
    with pytest.raises(UsageProblem, match=message):
        build(**flags)


def test_yaml_and_json_files_load_with_dates_as_text(tmp_path):
    yaml_file = tmp_path / "spec.yaml"
    yaml_file.write_text("title: T\ninput:\n  kind: echo\n  when: 2026-12-03\n")
    json_file = tmp_path / "spec.json"
    json_file.write_text('{\n\t"title": "T"\n}')  # a tab: valid JSON, not valid YAML

    assert specfile.load_spec(str(yaml_file)) == {"title": "T", "input": {"kind": "echo", "when": "2026-12-03"}}
    assert specfile.load_spec(str(json_file)) == {"title": "T"}


@pytest.mark.parametrize(("text", "message"), [
    ("- a list\n", "must hold a mapping"),
    ("title: [unclosed\n", "does not parse"),
    ("!!python/object:os.system {}\n", "does not parse"),
])  # fmt: skip
def test_files_that_are_not_specs_are_usage_errors(tmp_path, text, message):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    with pytest.raises(UsageProblem, match=message):
        specfile.load_spec(str(path))


def test_a_missing_file_is_a_usage_error(tmp_path):
    with pytest.raises(UsageProblem, match="cannot read the spec file"):
        specfile.load_spec(str(tmp_path / "absent.yaml"))
