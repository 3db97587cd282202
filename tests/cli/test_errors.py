"""The one mapping from HTTP answers to exit codes and messages, and the field-error lines."""

from __future__ import annotations

import pytest

from agency.errors import ExitCode, api_error, exit_code_for_status, field_errors


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, ExitCode.USAGE),
        (413, ExitCode.USAGE),
        (415, ExitCode.USAGE),
        (422, ExitCode.USAGE),
        (401, ExitCode.REFUSED),
        (403, ExitCode.REFUSED),
        (404, ExitCode.NOT_FOUND),
        (410, ExitCode.NOT_FOUND),
        (409, ExitCode.CONFLICT),
        (408, ExitCode.UNREACHABLE),
        (429, ExitCode.UNREACHABLE),
        (500, ExitCode.UNREACHABLE),
        (502, ExitCode.UNREACHABLE),
        (503, ExitCode.UNREACHABLE),
    ],
)
def test_each_status_has_its_exit_code(status, code):
    assert exit_code_for_status(status) == code
    assert api_error(status, {"detail": "x", "code": "y"}).exit_code == code


def test_the_codes_are_the_documented_ones():
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "TASK_FAILED": 1,
        "USAGE": 2,
        "NOT_FOUND": 3,
        "CONFLICT": 4,
        "UNREACHABLE": 5,
        "REFUSED": 77,
        "INTERRUPTED": 130,
    }


def test_field_errors_name_nested_fields_and_list_items():
    body = {
        "title": ["This field is required."],
        "state": {"0": ['"bogus" is not a valid choice.']},
        "scope": {"in": {"1": ["Must be a relative path inside the repository, without '..'."]}},
        "acceptance": [{}, {"id": ["This value does not match the required pattern."]}],
        "non_field_errors": ["Paths both in and out of scope: a."],
    }

    assert field_errors(body) == [
        "title: This field is required.",
        'state[0]: "bogus" is not a valid choice.',
        "scope.in[1]: Must be a relative path inside the repository, without '..'.",
        "acceptance[1].id: This value does not match the required pattern.",
        "non_field_errors: Paths both in and out of scope: a.",
    ]


def test_a_400_lists_the_field_errors_and_a_detail_is_said_as_is():
    fields = api_error(400, {"reason": ["An override needs a reason of at least 10 characters."]})
    assert fields.exit_code == ExitCode.USAGE
    assert fields.details == ["reason: An override needs a reason of at least 10 characters."]

    detail = api_error(
        415, {"detail": 'Unsupported media type "text/plain" in request.', "code": "unsupported_media_type"}
    )
    assert detail.message == 'the server refused the request (415): Unsupported media type "text/plain" in request.'


def test_401_and_403_say_which_refusal_it_is():
    no_token = api_error(401, {"detail": "Authentication credentials were not provided."}, has_token=False)
    bad_token = api_error(401, {"detail": "Invalid token.", "code": "authentication_failed"})
    role = api_error(403, {"detail": "You need the operator role for this action.", "code": "permission_denied"})

    assert "no API token" in no_token.message
    assert "AGENCY_TOKEN" in no_token.message
    assert "does not accept this API token (Invalid token.)" in bad_token.message
    assert role.message.startswith("refused (403): You need the operator role for this action.")
    assert "its user's role does not allow this" in role.message


def test_an_answer_that_is_not_json_still_maps_by_status():
    error = api_error(502, None, reason="Bad Gateway")
    assert error.exit_code == ExitCode.UNREACHABLE
    assert error.message == "the server failed (502): Bad Gateway"
    assert error.as_dict() == {"error": {"message": error.message, "exit_code": 5, "status": 502}}
