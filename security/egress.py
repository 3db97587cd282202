"""Outbound-URL policy: which URLs this installation may be told to call.

:func:`check_worker_url` is the one check every door applies to a worker's base URL
(the worker services validate through it, so the admin, the API and the management
commands refuse the same URLs with the same words). It is deliberately one function:
the egress policy proper (allowlisted hosts, no metadata or link-local addresses) will
extend it here rather than grow a second check beside it.

This module imports no app.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

ALLOWED_SCHEMES = frozenset({"http", "https"})
MAX_URL_LENGTH = 500

# Codes of the refusals, so that a door can phrase one in its own terms (the CLI names
# its --token-env option where the API names its token field).
MALFORMED = "url_malformed"
SCHEME = "url_scheme"
HOST = "url_host"
CREDENTIALS = "url_credentials"

# What the API schema promises is accepted (a subset of what check_worker_url accepts: it also
# takes IP literals, IDNs and longer names), so that generated clients and contract tests can
# produce a URL the server will not refuse: http(s), up to three RFC 1123 labels, a port in
# 1-65535, a path without spaces, control characters, query or fragment.
_SCHEMA_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SCHEMA_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
WORKER_URL_SCHEMA_PATTERN = (
    rf"^https?://{_SCHEMA_LABEL}(\.{_SCHEMA_LABEL}){{0,2}}(:{_SCHEMA_PORT})?(/[^\s?#\x00-\x1f\x7f]*)?$"
)

# An LDH label (RFC 1123); single-label names such as ``worker`` in a compose network are valid hosts.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class URLRefused(ValueError):
    """The URL may not be used; ``code`` says why (one of the constants above)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def check_worker_url(url: str) -> str:
    """``url`` (stripped) if it may be registered as a worker's base URL, else :class:`URLRefused`.

    Refused: anything but http and https (the dispatcher speaks HTTP only: an ``ftp://``
    row used to be accepted and then failed every dispatch cycle), a missing or malformed
    host or port, and credentials of any kind. Userinfo and query strings are where
    credentials hide (``user:pass@``, ``?code=`` of function hosts, ``?token=``); a
    secret there would be stored in plain text and shown wherever the URL is, so the only
    place for one is the worker's token, which is encrypted at rest and sent as a bearer
    header. Fragments are never sent to a server, so one can only be a mistake.
    """
    url = url.strip()
    if not url:
        raise URLRefused("Enter the worker's URL, e.g. https://worker.example.com.", code=MALFORMED)
    if len(url) > MAX_URL_LENGTH:
        raise URLRefused(f"At most {MAX_URL_LENGTH} characters.", code=MALFORMED)
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise URLRefused("A URL cannot contain spaces or control characters.", code=MALFORMED)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        raise URLRefused(f"Not a valid URL ({exc}).", code=MALFORMED) from exc
    scheme = parts.scheme.lower()
    if "://" not in url or not scheme:
        raise URLRefused("Enter a full URL with its scheme, e.g. https://worker.example.com.", code=MALFORMED)
    if scheme not in ALLOWED_SCHEMES:
        raise URLRefused(f"Use an http:// or https:// URL; {scheme}:// is not supported.", code=SCHEME)
    if "@" in parts.netloc:
        raise URLRefused("Credentials do not belong in the URL (it has user:password@).", code=CREDENTIALS)
    if parts.query or url.endswith("?"):
        raise URLRefused("Credentials do not belong in the URL (it has a query string).", code=CREDENTIALS)
    if parts.fragment or "#" in url:
        raise URLRefused("Remove the #fragment: it is never sent to the worker.", code=MALFORMED)
    if not _valid_host(parts.hostname or ""):
        raise URLRefused("The URL needs a valid host name or IP address.", code=HOST)
    if port == 0:
        raise URLRefused("Port 0 cannot be called.", code=HOST)
    return url


def _valid_host(host: str) -> bool:
    if not host:
        return False
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return True
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_host.removesuffix(".").split(".")
    return len(ascii_host) <= 253 and all(_LABEL.match(label) for label in labels)
