"""Property: source without comments never yields a comment finding, whatever its strings hold.

Hypothesis builds programs from identifiers, string literals, docstrings, f-strings, template literals
and regular expressions that are full of marker words and comment syntax; only code findings (stub
shapes) may come out.
"""

from __future__ import annotations

import ast
import io
import json
import tokenize

from hypothesis import given, settings
from hypothesis import strategies as st

from tasks.review.gates.placeholders import scan_text

MARKERS = (
    "TODO: implement",
    "FIXME: fix it",
    "HACK: replace",
    "XXX: remove",
    "PLACEHOLDER: fill in",
    "not yet implemented",
    "unimplemented",
    "stub implementation",
    "temporary fix",
    "quick hack",
    "hardcoded for now",
    "magic number",
    "in a real implementation",
    "eventually add it",
    "todo",
    "# TODO: fix",
    "// FIXME: fix",
    "/* PLACEHOLDER: x */",
    "*/",
    "/*",
    "#",
    "'",
    '"',
    "`",
    "\\",
)
WORDS = ("todo", "fixme", "hack", "placeholder", "stub", "fake", "updated_at", "list", "value", "tmp", "magic")

identifiers = st.lists(st.sampled_from(WORDS), min_size=1, max_size=3).map(lambda parts: "v_" + "_".join(parts))
free_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)
phrases = st.lists(st.one_of(st.sampled_from(MARKERS), free_text), max_size=5).map(" ".join)


def _docstring(text: str) -> str:
    body = text.replace("\\", "/").replace('"', "'").replace("\r", " ")
    return '"""' + body + ' """'


python_literals = st.one_of(
    phrases.map(repr),
    phrases.map(lambda t: "f" + repr(t.replace("{", "{{").replace("}", "}}"))),
    phrases.map(lambda t: "b" + repr(t.encode("ascii", "replace"))[1:]),
    st.lists(phrases, max_size=3).map(lambda lines: _docstring("\n".join(lines))),
)


@st.composite
def python_statements(draw) -> str:
    name, other = draw(identifiers), draw(identifiers)
    literal, second = draw(python_literals), draw(python_literals)
    doc = _docstring(draw(phrases))
    return draw(
        st.sampled_from(
            (
                f"{name} = {literal}",
                f"{name} = [{literal}, {second}]  \\\n    + [{other!r}]",
                f"def {name}({other}={literal}):\n    {doc}\n    return {second}",
                f"class C_{name}:\n    {doc}\n    {other} = {{{literal}: {second}}}",
                f"if {name}:\n    print({literal}, {second})\nelse:\n    {other} = ({literal}\n        )",
            )
        )
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(python_statements(), min_size=1, max_size=6).map("\n".join))
def test_python_without_comments_yields_no_comment_finding(source):
    source += "\n"
    ast.parse(source)  # the generator makes valid Python
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    assert not any(tok.type == tokenize.COMMENT for tok in tokens)  # and no comments

    findings = scan_text(source, "app/generated.py")

    assert [f for f in findings if f.source == "comment"] == []


def _single_quoted(text: str) -> str:
    return "'" + text.replace("\\", "/").replace("'", '"').replace("\n", " ") + "'"


def _template(text: str, inner: str) -> str:
    body = text.replace("\\", "/").replace("`", "'").replace("$", "S")
    return "`" + body + "${" + inner + "}" + body + "`"


def _regex(text: str) -> str:
    body = "".join(c if c.isalnum() or c in " :#*'\"`-" else "." for c in text) or "x"
    return "/" + body.replace("*", ".").lstrip("*") + "/g"


# Regular expressions that a lexer without regex literals would misread as comments or strings.
TRICKY_REGEXES = ("/\\/\\//g", '/"/', "/'/", "/`/", '/[/"]+/', "/\\/*x/", "/[*]/")
js_literals = st.recursive(
    st.one_of(phrases.map(json.dumps), phrases.map(_single_quoted)),
    lambda inner: st.tuples(phrases, inner).map(lambda pair: _template(*pair)),
    max_leaves=4,
)


@st.composite
def js_statements(draw) -> str:
    name, other = draw(identifiers), draw(identifiers)
    literal, second = draw(js_literals), draw(js_literals)
    pattern = draw(st.one_of(phrases.map(_regex), st.sampled_from(TRICKY_REGEXES)))
    return draw(
        st.sampled_from(
            (
                f"const {name} = {literal};",
                f"let {name} = {other} / 2 / {other};",
                f"const {name} = [{pattern}, {literal}, {second}];",
                f"function {name}({other}) {{ return [{literal}, {second}].join({other}); }}",
                f"const {name} = {{ key: {literal}, [{second}]: {pattern}.test({other}) }};",
            )
        )
    )


@settings(max_examples=150, deadline=None)
@given(st.lists(js_statements(), min_size=1, max_size=6).map("\n".join))
def test_javascript_without_comments_yields_no_comment_finding(source):
    findings = scan_text(source + "\n", "web/generated.ts")

    assert [f for f in findings if f.source == "comment"] == []
