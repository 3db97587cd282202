"""Unified diffs applied by the reference worker (tasks/reference_worker/patch.py): exactly, or not at all."""

from __future__ import annotations

import difflib

import pytest

from tasks.reference_worker.patch import PatchError, apply_diff, parse_diff

OLD = "".join(f"line {n}\n" for n in range(1, 21))


def unified(old: str, new: str, **kwargs) -> str:
    return "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), "a/f.txt", "b/f.txt", **kwargs))


@pytest.mark.parametrize(
    "new",
    [
        OLD.replace("line 5\n", "line five\n"),
        OLD.replace("line 1\n", ""),
        OLD + "line 21\n",
        "line 0\n" + OLD,
        OLD.replace("line 3\n", "").replace("line 17\n", "line 17\nline 17.5\n"),
        "",
    ],
    ids=["change", "delete-first", "append", "prepend", "two-hunks", "empty-all"],
)
def test_a_diff_from_difflib_applies_forward_and_back(new):
    diff = unified(OLD, new)

    assert apply_diff(OLD, diff) == new
    assert apply_diff(new, diff, reverse=True) == OLD


def test_a_diff_with_no_context_lines_applies():
    new = OLD.replace("line 10\n", "line ten\n")
    assert apply_diff(OLD, unified(OLD, new, n=0)) == new


def test_the_missing_newline_at_the_end_of_a_file_is_honoured_both_ways():
    old, new = "a\nb\n", "a\nb"
    diff = "--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n+b\n\\ No newline at end of file\n"

    assert apply_diff(old, diff) == new
    assert apply_diff(new, diff, reverse=True) == old


def test_crlf_lines_and_form_feeds_are_text_not_separators():
    old = "a\r\n\x0cb\r\n"
    diff = "@@ -1,2 +1,2 @@\n a\r\n-\x0cb\r\n+\x0cc\r\n"
    assert apply_diff(old, diff) == "a\r\n\x0cc\r\n"


@pytest.mark.parametrize(
    ("diff", "message"),
    [
        ("@@ -5,1 +5,1 @@\n-line 6\n+six\n", "does not apply"),
        ("@@ -30,1 +30,1 @@\n-line 30\n+thirty\n", "does not have"),
        ("@@ -5,2 +5,2 @@\n-line 5\n+five\n", "cut short"),
        ("@@ -5,1 +5,2 @@\n-line 5\n-line 6\n+five\n+x\n", "more lines"),
        ("@@ -5,1 +5,1 @@\n-line 5\n+five\n+extra\n", "after the last hunk"),
        ("--- a/f\n+++ b/f\n", "no hunk"),
        ("@@ -5,1 +5,1 @@\n-line 5\n+five\n--- a/g\n+++ b/g\n@@ -1 +1 @@\n-x\n+y\n", "one file"),
        ("@@ -5,1 +5,1 @@\n*line 5\n", "not a diff line"),
        ("@@ -9,1 +9,1 @@\n-line 9\n+nine\n@@ -5,1 +5,1 @@\n-line 5\n+five\n", "does not have"),
    ],
)
def test_a_diff_that_does_not_apply_exactly_is_refused_with_the_reason(diff, message):
    with pytest.raises(PatchError, match=message):
        apply_diff(OLD, diff)


def test_a_diff_already_applied_does_not_apply_again_but_its_reverse_does():
    new = OLD.replace("line 5\n", "line five\n")
    diff = unified(OLD, new)

    with pytest.raises(PatchError):
        apply_diff(new, diff)
    assert apply_diff(new, diff, reverse=True) == OLD


@pytest.mark.parametrize(
    "new",
    [OLD + "\nappended\n", OLD.replace("line 20\n", ""), "line 0\n" + OLD, OLD.replace("line 1\n", "")],
    ids=["append", "delete-last", "prepend", "delete-first"],
)
def test_an_edit_at_either_end_does_not_apply_twice_so_a_retry_can_tell_it_is_done(new):
    diff = unified(OLD, new)
    done = apply_diff(OLD, diff)

    assert done == new
    with pytest.raises(PatchError):
        apply_diff(done, diff)
    assert apply_diff(done, diff, reverse=True) == OLD
    with pytest.raises(PatchError):
        apply_diff(OLD, diff, reverse=True)


def test_a_diff_that_creates_a_file_needs_it_empty():
    diff = unified("", "x = 1\n")

    assert apply_diff("", diff) == "x = 1\n"
    with pytest.raises(PatchError, match="empty file"):
        apply_diff("x = 1\n", diff)


def test_headers_are_skipped_and_an_empty_context_line_may_lose_its_space():
    old = "a\n\nb\n"
    diff = "diff --git a/f b/f\nindex 1..2 100644\n--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n\n-b\n+c\n"
    assert [h.lines for h in parse_diff(diff)] == [
        [(" ", "a", True), (" ", "", True), ("-", "b", True), ("+", "c", True)]
    ]
    assert apply_diff(old, diff) == "a\n\nc\n"
