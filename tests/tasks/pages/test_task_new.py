"""GET, POST /tasks/new/: the working-spec form, its errors next to each field, the values kept."""

from __future__ import annotations

import pytest

from audit.models import AuditRecord
from tasks.models import Task

pytestmark = pytest.mark.django_db

URL = "/tasks/new/"
BASE = {"title": "Write the changelog", "mode": "feature", "priority": "medium", "risk_tier": "2"}


def error_of(body: str, field: str) -> str:
    """The text of the error list rendered next to ``field``."""
    start = body.index(f'<ul class="errorlist" id="id_{field}_error">')
    return body[start : body.index("</ul>", start)]


def test_anonymous_visitors_are_sent_to_log_in(client):
    assert client.get(URL)["Location"] == "/login/?next=/tasks/new/"
    r = client.post(URL, BASE)
    assert r.status_code == 302
    assert not Task.objects.exists()


@pytest.mark.parametrize("who", ["viewer_page", "nobody_page"])
def test_roles_below_operator_get_403_and_nothing_is_written(request, who):
    client = request.getfixturevalue(who)
    assert client.get(URL).status_code == 403
    assert client.post(URL, BASE).status_code == 403
    assert not Task.objects.exists()
    assert not AuditRecord.objects.exists()


def test_an_operator_gets_every_spec_field_with_a_label(operator_page):
    body = operator_page.get(URL).content.decode()
    for field in (
        "title",
        "description",
        "risk_tier",
        "mode",
        "priority",
        "scope_in",
        "scope_out",
        "max_files",
        "max_lines",
        "acceptance",
        "capabilities",
        "input",
        "timeout_s",
        "max_attempts",
    ):
        assert f'<label for="id_{field}">' in body
        assert f'id="id_{field}"' in body


def test_it_creates_the_task_from_every_field_and_opens_its_page(operator_page, operator):
    data = {
        **BASE,
        "description": "For the 2.0 release.",
        "mode": "chore",
        "priority": "high",
        "scope_in": "docs/\nCHANGELOG.md\n",
        "scope_out": "src",
        "max_files": "3",
        "max_lines": "200",
        "acceptance": "A1 | a release | the changelog is read | every change is listed\nA2 | x | y | z",
        "capabilities": "writing, markdown",
        "input": '{"sleep_s": 1}',
        "timeout_s": "120",
        "max_attempts": "2",
    }
    r = operator_page.post(URL, data)
    task = Task.objects.get()
    assert r.status_code == 302
    assert r["Location"] == f"/tasks/{task.pk}/"
    assert task.created_by == operator
    assert (task.title, task.risk_tier, task.get_priority_display(), task.max_attempts) == (
        "Write the changelog",
        2,
        "high",
        2,
    )
    spec = task.spec
    assert spec["scope"] == {"in": ["docs", "CHANGELOG.md"], "out": ["src"]}
    assert spec["change_budget"] == {"max_files": 3, "max_lines": 200}
    assert spec["acceptance"][0] == {
        "id": "A1",
        "given": "a release",
        "when": "the changelog is read",
        "then": "every change is listed",
    }
    assert spec["capabilities"] == ["markdown", "writing"]
    assert spec["input"] == {"sleep_s": 1}
    assert (spec["mode"], spec["timeout_s"], spec["description"]) == ("chore", 120, "For the 2.0 release.")
    record = AuditRecord.objects.get(action="task.create")
    assert record.resource_id == str(task.pk)
    assert record.actor == f"user:{operator.pk}"


def test_empty_optional_fields_take_the_specs_defaults(operator_page):
    operator_page.post(URL, {"title": "Just a title", "mode": "feature", "priority": "medium", "risk_tier": ""})
    spec = Task.objects.get().spec
    assert (spec["risk_tier"], spec["timeout_s"], spec["max_attempts"], spec["input"]) == (3, 600, 3, {})
    assert "scope" not in spec
    assert "change_budget" not in spec


def test_a_bad_tier_is_shown_next_to_the_field_with_the_values_kept(operator_page):
    r = operator_page.post(URL, {**BASE, "risk_tier": "7", "scope_in": "docs"})
    body = r.content.decode()
    assert r.status_code == 400
    assert "less than or equal to 3" in error_of(body, "risk_tier")
    assert 'aria-invalid="true"' in body
    assert 'value="Write the changelog"' in body
    assert 'value="7"' in body
    assert ">\ndocs</textarea>" in body
    assert not Task.objects.exists()
    assert not AuditRecord.objects.exists()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"title": ""}, "title", "may not be blank"),
        ({"risk_tier": "high"}, "risk_tier", "Enter a whole number."),
        ({"mode": "rewrite"}, "mode", "Select a valid choice."),
        ({"scope_in": "../etc"}, "scope_in", "relative path inside the repository"),
        ({"scope_out": "/etc"}, "scope_out", "relative path inside the repository"),
        ({"scope_in": "src", "scope_out": "src"}, "scope_out", "both in and out of scope"),
        ({"max_files": "3"}, "max_lines", "required"),
        ({"max_files": "0", "max_lines": "1"}, "max_files", "greater than or equal to 1"),
        ({"acceptance": "A1 | only two"}, "acceptance", "Line 1: write id | given | when | then."),
        ({"acceptance": "A1 | g | w | "}, "acceptance", "item 1: then: This field may not be blank."),
        ({"acceptance": "A1 | g | w | t\nA1 | g | w | t"}, "acceptance", "Duplicate criterion ids: A1."),
        ({"capabilities": "Bad Cap!"}, "capabilities", "item 1"),
        ({"input": "{nope"}, "input", "Not valid JSON"),
        ({"input": "[1, 2]"}, "input", "Must be a JSON object."),
        ({"timeout_s": "0"}, "timeout_s", "greater than or equal to 1"),
        ({"max_attempts": "99"}, "max_attempts", "less than or equal to 20"),
    ],
)
def test_each_spec_error_is_shown_next_to_its_field(operator_page, data, field, message):
    r = operator_page.post(URL, {**BASE, **data})
    assert r.status_code == 400
    assert message in error_of(r.content.decode(), field)
    assert not Task.objects.exists()
    assert not AuditRecord.objects.exists()


def test_other_methods_are_refused(operator_page):
    assert operator_page.put(URL).status_code == 405
