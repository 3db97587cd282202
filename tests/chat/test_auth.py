"""Which origins may use a session cookie on the chat WebSocket (chat.auth.origin_allowed)."""

from __future__ import annotations

import pytest

from chat.auth import origin_allowed


@pytest.mark.parametrize(
    ("origin", "host", "allowed"),
    [
        ("http://127.0.0.1:8000", "127.0.0.1:8000", True),
        ("https://agency.example.com", "agency.example.com", True),
        ("http://127.0.0.1:9999", "127.0.0.1:8000", False),  # another port: another origin
        ("http://evil.example", "127.0.0.1:8000", False),
        ("null", "127.0.0.1:8000", False),
        ("http://127.0.0.1:8000", None, False),
        ("ftp://127.0.0.1:8000", "127.0.0.1:8000", False),
        ("http://sub.agency.example.com", "agency.example.com", False),
    ],
)
def test_only_the_sockets_own_host_and_port_or_a_trusted_origin(settings, origin, host, allowed):
    settings.ALLOWED_HOSTS = ["127.0.0.1", ".agency.example.com"]
    assert origin_allowed(origin, host) is allowed


def test_a_wildcard_allowed_hosts_admits_no_other_site(settings):
    settings.ALLOWED_HOSTS = ["*"]
    assert not origin_allowed("https://evil.example", "agency.example.com")
    assert origin_allowed("https://agency.example.com", "agency.example.com")


def test_a_trusted_origin_is_allowed_whatever_the_host(settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://console.example.com"]
    assert origin_allowed("https://console.example.com", "internal:8000")


def test_a_host_outside_allowed_hosts_is_refused_even_when_it_matches(settings):
    settings.ALLOWED_HOSTS = ["agency.example.com"]
    assert not origin_allowed("http://rebound.example", "rebound.example")
