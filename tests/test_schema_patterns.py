"""The patterns the API schema promises are ones the server accepts (schemathesis relies on it).

Each pattern is a subset of what the server's own check accepts, written without lookahead so
that any JSON Schema tool can use it; these properties hold the two together.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from security import egress
from security.egress import MAX_URL_LENGTH, WORKER_URL_SCHEMA_PATTERN, URLRefused, check_worker_url
from tasks.spec import SCOPE_PATH_PATTERN, ScopePath


@pytest.fixture(autouse=True, scope="module")
def _no_dns() -> Iterator[None]:
    """The schema promises a syntax; what a generated name resolves to is the network's business
    (and a DNS lookup per example would outlast hypothesis's deadline). No name resolves here."""

    def unknown(host: str, port: int) -> list:
        raise socket.gaierror(socket.EAI_NONAME, "no DNS in this test")

    real, egress.resolver = egress.resolver, unknown
    yield
    egress.resolver = real


@settings(max_examples=500)
@given(st.from_regex(WORKER_URL_SCHEMA_PATTERN, fullmatch=True).filter(lambda u: len(u) <= MAX_URL_LENGTH))
def test_every_worker_url_the_schema_allows_is_accepted(url: str) -> None:
    assert check_worker_url(url) == url


@pytest.mark.parametrize(
    "url", ["ftp://w", "http://u:p@w", "http://w?code=1", "http://w#x", "http://w:0", "http://-w", "https://"]
)
def test_the_worker_url_pattern_excludes_what_the_server_refuses(url: str) -> None:
    assert not re.fullmatch(WORKER_URL_SCHEMA_PATTERN, url)
    with pytest.raises(URLRefused):
        check_worker_url(url)


@settings(max_examples=500)
@given(st.from_regex(SCOPE_PATH_PATTERN, fullmatch=True).filter(lambda p: "\x00" not in p and len(p) <= 500))
def test_every_scope_path_the_schema_allows_is_accepted(path: str) -> None:
    ScopePath(max_length=500).run_validation(path)


@pytest.mark.parametrize("path", ["..", "a/../b", "./..", "/etc", "a\\b", "", "a/.."])
def test_the_scope_path_pattern_excludes_what_the_server_refuses(path: str) -> None:
    assert not re.fullmatch(SCOPE_PATH_PATTERN, path)
    with pytest.raises(serializers.ValidationError):
        ScopePath(max_length=500).run_validation(path)


@pytest.mark.parametrize("value", ["x" + "\r" * 20, " " * 21])
def test_max_length_holds_for_the_string_as_sent_not_once_trimmed(value: str) -> None:
    from config.strict import StrictCharField

    field = StrictCharField(max_length=20, allow_blank=True)
    with pytest.raises(serializers.ValidationError, match="no more than 20 characters"):
        field.run_validation(value)
    assert field.run_validation(" x ") == "x"
