"""A spec's free-form ``input`` is bounded in depth, and the whole spec in size, with the field named.

Through the API and through ``validate_spec`` (the other doors: admin, chat, commands), which
must refuse an input too deep for DRF's JSONField to serialize without a RecursionError.
"""

from __future__ import annotations

from typing import Any

import pytest

from audit.models import AuditRecord
from config.errors import InvalidInput
from tasks.models import Task
from tasks.spec import MAX_INPUT_DEPTH, MAX_SPEC_BYTES, validate_spec

URL = "/api/v1/tasks"


def deep(levels: int) -> dict[str, Any]:
    """An object ``levels`` containers deep, itself included."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"k": value}
    return value


@pytest.mark.django_db
def test_an_input_nested_past_the_bound_is_a_400_naming_input(operator_client):
    r = operator_client.post(URL, {"title": "Deep", "input": deep(MAX_INPUT_DEPTH + 1)}, format="json")
    assert r.status_code == 400
    assert r.json() == {"input": [f"Nested more than {MAX_INPUT_DEPTH} levels deep."]}
    assert not Task.objects.exists()
    assert not AuditRecord.objects.exists()


@pytest.mark.django_db
def test_an_input_at_the_bound_is_accepted(operator_client):
    r = operator_client.post(URL, {"title": "Deep enough", "input": deep(MAX_INPUT_DEPTH)}, format="json")
    assert r.status_code == 201, r.content
    assert Task.objects.get().spec["input"] == deep(MAX_INPUT_DEPTH)


@pytest.mark.django_db
def test_a_list_nested_past_the_bound_inside_input_is_refused_too(operator_client):
    nested_list: Any = 1
    for _ in range(MAX_INPUT_DEPTH):
        nested_list = [nested_list]
    r = operator_client.post(URL, {"title": "Lists", "input": {"data": nested_list}}, format="json")
    assert r.status_code == 400
    assert set(r.json()) == {"input"}


@pytest.mark.django_db
def test_an_input_larger_than_the_spec_bound_is_a_400_naming_input(operator_client):
    big = {"blob": "x" * MAX_SPEC_BYTES}
    r = operator_client.post(URL, {"title": "Big", "input": big}, format="json")
    assert r.status_code == 400
    assert r.json() == {"input": [f"Larger than {MAX_SPEC_BYTES} bytes as JSON."]}
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_a_spec_whose_parts_together_exceed_the_bound_names_its_largest_part(operator_client):
    # Every criterion is within its own bounds; two hundred of them are not.
    criteria = [{"id": f"c{i}", "given": "g" * 2000, "when": "w" * 2000, "then": "t" * 2000} for i in range(200)]
    r = operator_client.post(URL, {"title": "Many criteria", "acceptance": criteria}, format="json")
    assert r.status_code == 400
    assert r.json() == {
        "acceptance": [f"The spec is larger than {MAX_SPEC_BYTES} bytes as JSON; this is its largest part."]
    }
    assert not Task.objects.exists()


@pytest.mark.django_db
def test_an_anonymous_deep_spec_is_refused_as_anonymous(anon_client):
    r = anon_client.post(URL, {"title": "Deep", "input": deep(MAX_INPUT_DEPTH + 1)}, format="json")
    assert r.status_code == 401


@pytest.mark.django_db
def test_a_viewer_posting_a_deep_spec_is_refused_for_the_role(viewer_client):
    r = viewer_client.post(URL, {"title": "Deep", "input": deep(MAX_INPUT_DEPTH + 1)}, format="json")
    assert r.status_code == 403


def test_validate_spec_refuses_an_input_far_too_deep_to_serialize():
    # No parser in front: 5,000 levels would make DRF's JSONField (json.dumps) recurse to death.
    with pytest.raises(InvalidInput) as caught:
        validate_spec({"title": "From the admin", "input": deep(5000)})
    assert set(caught.value.fields) == {"input"}


def test_validate_spec_refuses_an_input_that_is_not_an_object():
    with pytest.raises(InvalidInput) as caught:
        validate_spec({"title": "List input", "input": [1, 2]})
    assert caught.value.fields == {"input": ["Must be a JSON object."]}


def test_one_reused_spec_serializer_keeps_nothing_from_one_spec_to_the_next():
    """validate_spec reuses a serializer per thread: each call's result and errors are its own."""
    good = {
        "title": "a",
        "risk_tier": 3,
        "scope": {"in": ["src/"]},
        "acceptance": [{"id": "A1", "given": "g", "when": "w", "then": "t"}],
    }
    with pytest.raises(InvalidInput) as first:
        validate_spec({**good, "risk_tier": 9, "title": ""})
    assert set(first.value.fields) == {"risk_tier", "title"}
    assert validate_spec(good)["title"] == "a"
    with pytest.raises(InvalidInput) as second:
        validate_spec({**good, "scope": {"in": ["src/"], "bogus": 1}})
    assert second.value.fields == {"scope": {"bogus": ["Unknown field."]}}
    with pytest.raises(InvalidInput) as third:
        validate_spec([1, 2])
    assert set(third.value.fields) == {"non_field_errors"}
    assert validate_spec({**good, "title": "b"})["title"] == "b"
