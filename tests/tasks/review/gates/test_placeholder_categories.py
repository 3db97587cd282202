"""Each category and severity is found, in every comment syntax of every scanned language.

The sample sources are string literals, which the scanner treats as data: this file itself must pass
``check_placeholders --fail-on critical``.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tasks.review.gates.placeholders import Category, Severity, scan_text

C, S = Category, Severity

# (comment text, category, severity): the corpus, one or more phrasings per category and severity.
COMMENTS = [
    ("TODO: implement retries", C.EXPLICIT, S.HIGH),
    ("FIXME: handle the empty list", C.EXPLICIT, S.HIGH),
    ("HACK: replace with the proper client", C.EXPLICIT, S.HIGH),
    ("XXX remove after the migration", C.EXPLICIT, S.HIGH),
    ("TODO(ada): add paging", C.EXPLICIT, S.HIGH),
    ("todo: the order is flaky", C.EXPLICIT, S.HIGH),
    ("not yet implemented", C.INCOMPLETE_IMPLEMENTATION, S.CRITICAL),
    ("this branch is unimplemented", C.INCOMPLETE_IMPLEMENTATION, S.CRITICAL),
    ("missing implementation for tier 3", C.INCOMPLETE_IMPLEMENTATION, S.CRITICAL),
    ("partial implementation, only GET works", C.INCOMPLETE_IMPLEMENTATION, S.CRITICAL),
    ("retry logic is not implemented yet", C.INCOMPLETE_IMPLEMENTATION, S.CRITICAL),
    ("Not implemented", C.INCOMPLETE_IMPLEMENTATION, S.CRITICAL),
    ("paging: XXX not implemented", C.INCOMPLETE_IMPLEMENTATION, S.CRITICAL),
    ("PLACEHOLDER: fill in", C.PLACEHOLDER_CODE, S.CRITICAL),
    ("PLACEHOLDER until the API exists", C.PLACEHOLDER_CODE, S.HIGH),
    ("placeholder implementation of the scorer", C.PLACEHOLDER_CODE, S.HIGH),
    ("demo implementation only", C.PLACEHOLDER_CODE, S.HIGH),
    ("stub implementation", C.CODE_STUBS, S.HIGH),
    ("fake implementation until the worker exists", C.CODE_STUBS, S.HIGH),
    ("this is just a dummy", C.CODE_STUBS, S.HIGH),
    ("temporary fix for the race", C.TEMPORARY_SOLUTIONS, S.MEDIUM),
    ("quick hack around the cache", C.TEMPORARY_SOLUTIONS, S.MEDIUM),
    ("workaround for upstream bug 1234", C.TEMPORARY_SOLUTIONS, S.MEDIUM),
    ("hardcoded for now", C.HARDCODED_VALUES, S.MEDIUM),
    ("magic number from the old system", C.HARDCODED_VALUES, S.MEDIUM),
    ("make this configurable", C.HARDCODED_VALUES, S.MEDIUM),
    ("in a real implementation we would batch", C.FUTURE_IMPROVEMENTS, S.LOW),
    ("in production we would use a queue", C.FUTURE_IMPROVEMENTS, S.LOW),
    ("eventually replace this with a heap", C.FUTURE_IMPROVEMENTS, S.LOW),
    ("future improvements: cache the result", C.FUTURE_IMPROVEMENTS, S.LOW),
]

# (file name, wrap(comment) -> source, line of the comment): every comment syntax of every language.
WRAPPERS: dict[str, tuple[str, Callable[[str], str], int]] = {
    "python": ("app/service.py", lambda c: f"value = compute()\n# {c}\n", 2),
    "python-inline": ("app/service.py", lambda c: f"value = compute()  # {c}\n", 1),
    "python-indented": ("app/service.py", lambda c: f"def run():\n    # {c}\n    return 1\n", 2),
    "javascript": ("web/app.js", lambda c: f"const value = compute();\n// {c}\n", 2),
    "jsx-block": ("web/App.jsx", lambda c: f"const v = a / b; /* {c} */\n", 1),
    "typescript-multiline": ("web/app.ts", lambda c: f"let v: number = 1;\n/*\n * {c}\n */\n", 3),
    "mjs": ("web/mod.mjs", lambda c: f"export const v = `x${{1}}`; // {c}\n", 1),
    "rust": ("src/lib.rs", lambda c: f"let value = compute();\n// {c}\n", 2),
    "rust-nested-block": ("src/lib.rs", lambda c: f"/* outer /* inner */\n {c} */\nfn f() {{}}\n", 2),
    "go": ("cmd/main.go", lambda c: f"value := compute()\n// {c}\n", 2),
    "java": ("src/App.java", lambda c: f"int value = compute();\n// {c}\n", 2),
    "java-block": ("src/App.java", lambda c: f"int value = compute(); /* {c} */\n", 1),
    "c": ("src/main.c", lambda c: f"int value = compute();\n/* {c} */\n", 2),
    "cpp": ("src/main.cpp", lambda c: f"auto v = 1'000; // {c}\n", 1),
    "csharp-verbatim": ("src/App.cs", lambda c: f'var s = @"C:\\dir\\"; // {c}\n', 1),
    "kotlin": ("src/App.kt", lambda c: f"val v = 1\n// {c}\n", 2),
    "swift": ("src/App.swift", lambda c: f"let v = 1\n// {c}\n", 2),
    "shell": ("scripts/run.sh", lambda c: f"#!/bin/sh\nvalue=$(compute)\n# {c}\n", 3),
    "shell-inline": ("scripts/run.bash", lambda c: f'echo "$value"  # {c}\n', 1),
    "yaml": ("deploy/app.yaml", lambda c: f"value: 1\n# {c}\n", 2),
    "yaml-inline": ("deploy/app.yml", lambda c: f"value: 'a # b'  # {c}\n", 1),
}


@pytest.mark.parametrize(("comment", "category", "severity"), COMMENTS, ids=[c for c, _, _ in COMMENTS])
@pytest.mark.parametrize("language", WRAPPERS)
def test_it_finds_each_category_in_each_comment_syntax(language, comment, category, severity):
    path, wrap, line = WRAPPERS[language]

    findings = scan_text(wrap(comment), path)

    assert [(f.line, f.category, f.severity, f.source) for f in findings] == [(line, category, severity, "comment")]
    assert comment in findings[0].text
    assert findings[0].file == path
    assert 0.7 <= findings[0].confidence <= 1.0


def test_the_most_severe_category_of_a_line_wins():
    findings = scan_text("x = 1  # TODO: implement this, not yet implemented\n", "m.py")

    assert [(f.category, f.severity) for f in findings] == [(C.INCOMPLETE_IMPLEMENTATION, S.CRITICAL)]


def test_an_action_word_makes_an_explicit_marker_fully_confident():
    with_action = scan_text("# Cursor math. TODO: implement paging\n", "m.py")
    without_action = scan_text("# Cursor math. TODO: the order is flaky\n", "m.py")

    assert with_action[0].confidence == 1.0
    assert 0.7 <= without_action[0].confidence < 1.0


def test_each_line_of_a_block_comment_is_judged_on_its_own_line():
    source = "/*\n * Paging helpers.\n * TODO: implement cursors\n *\n * hardcoded for now\n */\nlet x = 1;\n"

    findings = scan_text(source, "web/paging.ts")

    assert [(f.line, f.category) for f in findings] == [(3, C.EXPLICIT), (5, C.HARDCODED_VALUES)]
    assert findings[0].text == "TODO: implement cursors"


# (file name, source, line): stub shapes in code, not in comments.
CODE_STUBS = {
    "python-pass": ("app/m.py", "def handler(event):\n    pass\n", 1),
    "python-ellipsis": ("app/m.py", "x = 1\n\ndef handler(event): ...\n", 3),
    "python-raise": ("app/m.py", "def handler(event):\n    raise NotImplementedError\n", 1),
    "python-raise-call": ("app/m.py", "def handler(event):\n    raise NotImplementedError('soon')\n", 1),
    "python-docstring-and-pass": ("app/m.py", 'def handler(event):\n    """Handle it."""\n    pass\n', 1),
    "python-async-method": (
        "app/m.py",
        "class Service:\n    async def run(self) -> None:\n        # just this\n        ...\n",
        2,
    ),
    "python-nested": ("app/m.py", "def outer():\n    def inner():\n        pass\n    return inner\n", 2),
    "python-decorated": ("app/m.py", "import functools\n@functools.cache\ndef f():\n    pass\n", 3),
    "javascript-throw-todo": ("web/a.js", 'function f() {\n  throw new Error("TODO");\n}\n', 2),
    "typescript-not-implemented": (
        "web/a.ts",
        "function f(): never { throw new Error('not implemented'); }\n",
        1,
    ),
    "typescript-template": ("web/a.tsx", "const f = () => { throw new Error(`Not implemented yet`) };\n", 1),
    "rust-todo": ("src/lib.rs", "fn f() -> u32 {\n    todo!()\n}\n", 2),
    "rust-unimplemented": ("src/lib.rs", 'fn f() -> u32 { unimplemented!("later") }\n', 1),
    "go-panic-todo": ("main.go", 'func f() int {\n\tpanic("TODO")\n}\n', 2),
    "go-panic-not-implemented": ("main.go", 'func f() int { panic("not implemented") }\n', 1),
    "java-unsupported": ("A.java", 'int f() { throw new UnsupportedOperationException("Not implemented"); }\n', 1),
    "csharp-not-implemented": ("A.cs", "int F() { throw new NotImplementedException(); }\n", 1),
    "kotlin-todo": ("A.kt", 'fun f(): Int = TODO("paging")\n', 1),
    "swift-fatal": ("A.swift", 'func f() -> Int { fatalError("not implemented") }\n', 1),
}


@pytest.mark.parametrize("case", CODE_STUBS)
def test_it_finds_stub_code(case):
    path, source, line = CODE_STUBS[case]

    findings = scan_text(source, path)

    assert [(f.line, f.category, f.severity, f.source) for f in findings] == [(line, C.CODE_STUBS, S.HIGH, "code")]


def test_a_python_stub_names_the_function_and_its_body():
    (finding,) = scan_text("def handler(event):\n    raise NotImplementedError\n", "app/m.py")

    assert finding.text == "def handler: body is only raise NotImplementedError"


def test_a_stub_call_reports_its_source_line():
    (finding,) = scan_text("fn f() -> u32 {\n    todo!()\n}\n", "src/lib.rs")

    assert finding.text == "todo!()"


def test_a_comment_and_a_stub_on_one_line_are_two_findings():
    findings = scan_text('function f() { throw new Error("TODO"); } // quick fix\n', "a.js")

    assert {(f.category, f.source) for f in findings} == {
        (C.CODE_STUBS, "code"),
        (C.TEMPORARY_SOLUTIONS, "comment"),
    }
