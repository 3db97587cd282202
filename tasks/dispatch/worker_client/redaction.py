"""Keeping a worker's credentials out of log lines, timeline entries and error text.

A worker's base URL may carry secrets of its own (``https://user:pass@host`` or a
``?code=...`` query as some function hosts use) besides the bearer token, and the
exceptions of requests and urllib3 quote URLs verbatim. Everything this client writes
anywhere goes through :class:`Redactor` first.

Known secrets are masked by value only when they are long enough to be distinctive
(:data:`security.redaction.MIN_SECRET_LENGTH`); shorter ones are masked by where they
stand (userinfo, query values, an Authorization header), so a ``?x=1`` cannot turn
every "1" of an error message into ``***``.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from security.redaction import MASK, MIN_SECRET_LENGTH, mask_secrets

_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@")
# Defence in depth for an Authorization header quoted in some exception text; the known token is masked anyway.
_BEARER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?bearer\s+)[^\s'\"]+")
# A query value in a URL quoted by some exception text (``...url: /execute?code=abc``): masked by
# position, since a short value cannot be masked by value.
_QUERY_VALUE = re.compile(r"(?P<key>[?&][A-Za-z0-9_.~%+-]+=)[^&\s'\"#<>)]+")


def public_url(url: str) -> str:
    """``url`` as it may be shown: no userinfo, query values masked, no fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{parts.port}" if parts.port else host
    query = urlencode([(key, MASK) for key, _ in parse_qsl(parts.query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def url_secrets(url: str) -> list[str]:
    """The pieces of ``url`` long enough to mask by value: userinfo and query values, decoded and percent-encoded.

    The length is judged on the decoded secret, not on an encoding of it: ``%2F`` spelled
    out does not make a one-character value distinctive.
    """
    parts = urlsplit(url)
    found = [parts.username or "", parts.password or ""]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    expanded = set()
    for secret in found:
        if len(unquote(secret)) >= MIN_SECRET_LENGTH:  # username and password come still encoded
            expanded.update({secret, unquote(secret), quote(secret, safe="")})
    return sorted(expanded, key=len, reverse=True)  # longest first, so no secret is left half-masked


class Redactor:
    """Masks one worker's secrets (token, URL userinfo and query values) in any text."""

    def __init__(self, *, base_url: str, token: str) -> None:
        self._secrets = [*url_secrets(base_url), token]

    def __call__(self, text: str) -> str:
        text = mask_secrets(text, self._secrets)
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
        text = _QUERY_VALUE.sub(lambda m: f"{m['key']}{MASK}", text)
        return _BEARER.sub(lambda m: f"{m[1]}{MASK}", text)
