"""False-positive traps: documentation, data, identifiers and intentional empty bodies are not findings.

Each source below is a string literal (data to the scanner), so this file passes its own gate.
"""

from __future__ import annotations

import pytest

from tasks.review.gates.placeholders import scan_text

TRAPS = {
    "python-module-docstring": ("app/m.py", '"""TODO: implement the module. not yet implemented."""\nx = 1\n'),
    "python-function-docstring": (
        "app/m.py",
        'def f():\n    """PLACEHOLDER: this docstring talks about stub implementation."""\n    return 1\n',
    ),
    "python-class-docstring": ("app/m.py", 'class A:\n    """FIXME: handle it, says the docstring."""\n    x = 1\n'),
    "python-sphinx-attribute-doc": ("app/m.py", "#: TODO: implement, documented as an attribute doc comment\nx = 1\n"),
    "todo-as-data": ("app/m.py", 'status = "todo"\nSTATES = ("todo", "doing", "done")\n'),
    "comment-syntax-inside-strings": (
        "app/m.py",
        "msg = '# TODO: fix this'\nsql = \"-- FIXME: fix\"\nf = f\"{msg} # PLACEHOLDER: x\"\nb = b'# XXX: fix'\n",
    ),
    "triple-quoted-data-with-comment-lines": ("app/m.py", 'TEMPLATE = """\n# TODO: implement\nvalue = 1\n"""\n'),
    "identifiers": (
        "app/m.py",
        "updated_at = now()\ntodo_list = []\nplaceholder_text = 'Name'\nfake_worker = make()\nHACK_LEVEL = 3\n",
    ),
    "a-marker-without-an-action": ("app/m.py", "x = 1  # see the TODO list in README\n"),
    "a-quoted-mention-of-a-marker": ("app/m.py", 'x = 1  # the gate flags "TODO:" markers and `PLACEHOLDER:` ones\n'),
    "http-501": ("app/m.py", "x = 1  # the worker answers 501 Not Implemented for unknown actions\n"),
    "abstract-method": (
        "app/m.py",
        "import abc\n\n\nclass Base(abc.ABC):\n    @abc.abstractmethod\n    def run(self):\n"
        '        """Subclasses run."""\n        raise NotImplementedError\n\n'
        "    @abstractmethod\n    def stop(self): ...\n\n    @property\n    @abc.abstractmethod\n"
        "    def name(self) -> str:\n        pass\n",
    ),
    "protocol-methods": (
        "app/m.py",
        "import typing\nfrom typing import Protocol, TypeVar\nT = TypeVar('T')\n\n\nclass Sink(Protocol):\n"
        "    def write(self, data: bytes) -> int: ...\n\n\nclass Box(typing.Protocol[T]):\n"
        "    def get(self) -> T:\n        ...\n",
    ),
    "overloads": (
        "app/m.py",
        "from typing import overload\nimport typing\n\n\n@overload\ndef f(x: int) -> int: ...\n"
        "@typing.overload\ndef f(x: str) -> str: ...\ndef f(x):\n    return x\n",
    ),
    "exception-class-bodies": ("app/m.py", "class MyError(Exception):\n    pass\n\n\nclass Other(MyError): ...\n"),
    "pass-in-statements": (
        "app/m.py",
        "def f(items):\n    for item in items:\n        pass\n    try:\n        g()\n    except KeyError:\n"
        "        pass\n    if items:\n        pass\n    return items\n",
    ),
    "type-stub-file": ("app/m.pyi", "def f(x: int) -> int: ...\nclass A:\n    def g(self) -> None: ...\n"),
    "test-doubles-in-tests": (
        "tests/test_service.py",
        "def noop(*args):\n    pass\n\n\nclass FakeClient:\n    def close(self): ...\n"
        "\n\n# a fake implementation of the worker for these tests\n",
    ),
    "markdown": ("docs/notes.md", "# TODO: implement\n\nPLACEHOLDER: not yet implemented.\n"),
    "restructured-text": ("docs/notes.rst", ".. TODO: implement\n"),
    "plain-text": ("notes.txt", "TODO: implement everything\n"),
    "jsdoc": ("web/a.js", "/**\n * TODO: implement, per the JSDoc.\n * @returns {number} not yet implemented\n */\n"),
    "typescript-triple-slash": ("web/a.ts", '/// <reference path="./PLACEHOLDER: x" />\nlet v = 1;\n'),
    "javascript-strings": (
        "web/a.js",
        "const a = '// TODO: fix';\nconst b = \"/* FIXME: fix */\";\n"
        "const c = `// PLACEHOLDER: x ${a + `// not yet implemented`} /* TODO: fix */`;\n",
    ),
    "javascript-regex-literal": ("web/a.js", "const re = /\\/\\/ TODO: fix/g;\nconst n = a.split(/[/]/);\n"),
    "javascript-stub-inside-a-string": ("web/a.js", "const code = 'throw new Error(\"TODO\")';\n"),
    "javascript-hashbang": ("bin/cli.mjs", "#!/usr/bin/env node --TODO: fix\nconsole.log(1);\n"),
    "rust-doc-comments": (
        "src/lib.rs",
        "//! TODO: implement the crate docs\n/// FIXME: fix, says the doc\nfn f() {}",
    ),
    "rust-block-doc": ("src/lib.rs", "/** TODO: implement */\n/*! PLACEHOLDER: x */\nfn f() {}\n"),
    "rust-strings": (
        "src/lib.rs",
        'fn f<\'a>(s: &\'a str) -> char {\n    let r = r#"// TODO: fix "quoted" "#;\n'
        "    let q = '\"';\n    let m = \"todo!() // FIXME: fix\n continues\";\n    'x'\n}\n",
    ),
    "go-raw-string": ("main.go", 'var s = `\n// TODO: fix\npanic("TODO")\n`\n'),
    "java-doc-and-text-block": (
        "A.java",
        '/** TODO: implement javadoc. */\nclass A {\n  String s = """\n    // FIXME: fix\n    """;\n}\n',
    ),
    "csharp-xml-doc": ("A.cs", "/// <summary>TODO: implement</summary>\nclass A {}\n"),
    "cpp-raw-string": ("a.cpp", 'auto s = R"sql(\n// TODO: fix\n)sql";\n'),
    "kotlin-todo-identifiers": ("A.kt", "val x = list.TODO(1)\nval y = myTODO(2)\n"),
    "shell-data": (
        "run.sh",
        "#!/usr/bin/env bash\necho \"# TODO: fix\"\nx=${#items}\necho $'# FIXME: fix'\n"
        "cat <<'EOF'\n# PLACEHOLDER: shown to the user\nEOF\necho a#TODO:fix\n",
    ),
    "yaml-data": ("a.yaml", "a: \"# TODO: fix\"\nb: '# FIXME: fix'\nc: http://x/#TODO:fix\n"),
    "unknown-extension": ("data.csv", "TODO: implement,1\n"),
}


# Comments from third-party code in our virtualenv that an earlier, looser rule set reported.
REAL_WORLD_PROSE = [
    "PATCH method is not implemented by Django",
    "On Combinable, these are not implemented to reduce confusion with Q.",
    "IReactorSSL (sometimes, not implemented)",
    "Work around the normal mapping where text is dumped as unknown",
    "Then we simply discard the starting 0 (fake version number)",
    "Discard index placeholder values to get only actual matches",
    "Hard-coded options (that should NOT be inherited).",
    "and no further work is necessary",
    "writes, then we're done; don't consider any future work.",
    "eventually be considered full even without this additional logic.",
    "Should be implemented in subclasses",
    "It does not match the predicate so it is not done yet.",
]


@pytest.mark.parametrize("comment", REAL_WORLD_PROSE)
def test_it_reports_nothing_for_prose_about_the_code(comment):
    assert scan_text(f"x = 1\n# {comment}\n", "lib/module.py") == []


@pytest.mark.parametrize("case", TRAPS)
def test_it_reports_nothing_for(case):
    path, source = TRAPS[case]

    assert scan_text(source, path) == []


def test_a_stub_in_a_test_file_is_still_a_stub_outside_tests():
    source = "def noop(*args):\n    pass\n"

    assert scan_text(source, "tests/test_service.py") == []
    assert len(scan_text(source, "app/service.py")) == 1


def test_markers_in_test_files_are_still_findings():
    findings = scan_text("x = 1  # TODO: implement the slow path\n", "tests/test_service.py")

    assert [f.category for f in findings] == ["explicit"]


def test_python_that_does_not_tokenize_is_still_scanned():
    source = "def broken(:\n    x = '# not a comment'\n    # TODO: fix the syntax\n"

    findings = scan_text(source, "app/m.py")

    assert [(f.line, f.category) for f in findings] == [(3, "explicit")]


def test_a_heredoc_ends_at_its_delimiter():
    source = "cat <<-EOF\n\t# inside\n\tEOF\n# TODO: fix after the heredoc\n"

    assert [f.line for f in scan_text(source, "run.sh")] == [4]


def test_an_unterminated_string_stops_at_the_end_of_its_line():
    source = 'const s = "oops;\n// TODO: fix the quote above\n'

    assert [f.line for f in scan_text(source, "a.js")] == [2]


def test_an_escaped_triple_quote_does_not_end_a_python_string():
    source = 's = """a\\"""b"""  # TODO: fix the quoting\nt = 1\n'

    assert [f.line for f in scan_text(source, "app/m.py")] == [1]
