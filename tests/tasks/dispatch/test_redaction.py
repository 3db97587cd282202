"""Keeping worker secrets out of text without mangling it: long secrets by value, short ones by position."""

from __future__ import annotations

import pytest

from security.redaction import MIN_SECRET_LENGTH, mask_secrets, redact_url
from tasks.dispatch.worker_client.redaction import Redactor, public_url, url_secrets


def test_a_short_query_value_does_not_mask_every_occurrence_of_it():
    # The defect: with ?x=1 every "1" of an error message became "***".
    redact = Redactor(base_url="http://127.0.0.1:9100/?x=1", token="")
    text = "HTTP 501 from worker after 1 of 3 attempts (port 9100)"
    assert redact(text) == text


def test_a_short_query_value_in_a_quoted_url_is_still_masked_by_position():
    redact = Redactor(base_url="http://127.0.0.1:9/?x=1&code=ab", token="")
    text = "Max retries exceeded with url: /execute?x=1&code=ab (Caused by ConnectionRefusedError(111))"
    assert (
        redact(text) == "Max retries exceeded with url: /execute?x=***&code=*** (Caused by ConnectionRefusedError(111))"
    )


def test_secrets_of_meaningful_length_are_masked_wherever_they_occur():
    token = "tok-SUPERSECRET-4711"
    redact = Redactor(base_url="http://user:secret-pw@127.0.0.1:9/?code=qsecret-long", token=token)
    text = f"bad token {token}; body echoed secret-pw and qsecret-long and qsecret-long%21"
    assert redact(text) == "bad token ***; body echoed *** and *** and ***%21"


def test_a_short_token_is_not_used_for_substring_masking_but_its_header_is_masked():
    redact = Redactor(base_url="http://127.0.0.1:9", token="abc")
    assert redact("abc of the abcs") == "abc of the abcs"
    assert redact("headers: {'Authorization': 'Bearer abc'}") == "headers: {'Authorization': 'Bearer ***'}"


def test_userinfo_in_any_quoted_url_is_masked_by_position():
    redact = Redactor(base_url="http://u:p@127.0.0.1:9", token="")
    assert redact("GET http://u:p@127.0.0.1:9/health failed") == "GET http://***@127.0.0.1:9/health failed"


@pytest.mark.parametrize("secret", ["1", "short", "x" * (MIN_SECRET_LENGTH - 1)])
def test_only_values_of_at_least_the_minimum_length_are_candidates(secret):
    assert url_secrets(f"http://h.example/?k={secret}") == []
    assert mask_secrets(f"a {secret} b", [secret]) == f"a {secret} b"
    long = "y" * MIN_SECRET_LENGTH
    assert mask_secrets(f"a {long} b", [secret, long]) == "a *** b"


def test_urls_are_shown_without_credentials():
    assert public_url("http://u:p@h.example:8080/run?code=abc&x=1") == "http://h.example:8080/run?code=***&x=***"
    assert redact_url("http://u:p@h.example:8080/run?code=abc#f") == "http://h.example:8080/run"
    assert redact_url("http://[::1]:9/x?y=1") == "http://[::1]:9/x"
    # A port that is not a number used to raise from redact_url itself.
    assert redact_url("http://u:p@h.example:port/") == "<unparseable url>"
