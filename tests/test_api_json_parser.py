"""The API's JSON parser: a body nested thousands deep, or larger than the limit, is a 4xx, not a 500.

json.loads dies of RecursionError on deep nesting, which DRF's parser does not catch (a 500
with the debug page), and DRF reads a JSON body whole whatever its size, bypassing Django's
DATA_UPLOAD_MAX_MEMORY_SIZE.
"""

from __future__ import annotations

import io

import pytest

from audit.models import AuditRecord
from config.parsers import MAX_JSON_DEPTH, JSONParser, PayloadTooLarge
from config.strict import nesting_depth_exceeds
from tasks.models import Task

URL = "/api/v1/tasks"


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


@pytest.fixture(params=[True, False], ids=["debug", "no-debug"])
def debug(request, settings) -> bool:
    settings.DEBUG = request.param
    return request.param


@pytest.mark.django_db
@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_a_body_nested_thousands_deep_is_a_400_naming_the_nesting(debug, operator_client, depth):
    r = operator_client.post(URL, nested(depth), content_type="application/json")
    assert r.status_code == 400, r.content[:200]
    assert r["Content-Type"] == "application/json"
    assert r.json() == {
        "detail": f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep.",
        "code": "parse_error",
    }
    assert not Task.objects.exists()
    assert not AuditRecord.objects.exists()


@pytest.mark.django_db
def test_a_body_just_past_the_parsers_bound_is_refused_by_the_parser(operator_client):
    # Parses without RecursionError, but is refused before any serializer recurses into it.
    body = '{"title": "Deep", "input": {"a": ' + nested(MAX_JSON_DEPTH) + "}}"
    r = operator_client.post(URL, body, content_type="application/json")
    assert r.status_code == 400
    assert r.json()["code"] == "parse_error"


@pytest.mark.django_db
def test_a_deeply_nested_object_on_an_action_is_a_400_too(operator_client, make_task):
    task = make_task()
    r = operator_client.post(
        f"{URL}/{task.id}/actions", '{"action": ' + nested(5000) + "}", content_type="application/json"
    )
    assert r.status_code == 400
    assert r.json()["code"] == "parse_error"


@pytest.mark.django_db
def test_an_anonymous_deep_body_is_refused_as_anonymous_first(anon_client):
    # Authentication comes before parsing: no one unauthenticated makes the server parse.
    r = anon_client.post(URL, nested(10_000), content_type="application/json")
    assert r.status_code == 401


@pytest.mark.django_db
def test_a_viewer_posting_a_deep_body_is_refused_for_the_role(viewer_client):
    r = viewer_client.post(URL, nested(10_000), content_type="application/json")
    assert r.status_code == 403


@pytest.mark.django_db
@pytest.mark.parametrize("body", ['{"title": NaN}', '{"title": Infinity}', '{"title": "x"', "\xff"])
def test_a_body_that_is_not_strict_json_is_a_parse_error(operator_client, body):
    r = operator_client.post(URL, body.encode("latin-1"), content_type="application/json")
    assert r.status_code == 400
    assert r.json()["code"] == "parse_error"


def test_the_parser_reads_no_more_than_the_limit_when_no_length_is_given(settings):
    # A chunked body has no Content-Length for the middleware to check; the parser still stops.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    stream = io.BytesIO(b'{"title": "' + b"x" * 10_000 + b'"}')
    with pytest.raises(PayloadTooLarge):
        JSONParser().parse(stream, parser_context={})
    assert stream.tell() == 101


def test_the_parser_takes_a_body_exactly_at_the_limit(settings):
    body = b'{"title": "' + b"x" * 88 + b'"}'
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(body)
    assert JSONParser().parse(io.BytesIO(body), parser_context={}) == {"title": "x" * 88}


@pytest.mark.parametrize(
    ("value", "limit", "exceeds"),
    [
        ({}, 1, False),
        ({"a": [1]}, 1, True),
        ({"a": [1]}, 2, False),
        ([[[]]], 2, True),
        ("scalar", 0, False),
        ({"a": {"b": {"c": {}}}, "x": 1}, 3, True),
    ],
)
def test_the_depth_check_counts_containers(value, limit, exceeds):
    assert nesting_depth_exceeds(value, limit) is exceeds


def test_the_depth_check_handles_a_structure_too_deep_to_recurse_over():
    value: list = []
    for _ in range(50_000):
        value = [value]
    assert nesting_depth_exceeds(value, 100)
