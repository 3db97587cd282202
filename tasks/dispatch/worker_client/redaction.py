"""Keeping a worker's credentials out of log lines, timeline entries and error text.

A worker's base URL may carry secrets of its own (``https://user:pass@host`` or a
``?code=...`` query as some function hosts use) besides the bearer token, and the
exceptions of requests and urllib3 quote URLs verbatim. Everything this client writes
anywhere goes through :class:`Redactor` first.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

MASK = "***"
_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@")
# Defence in depth for an Authorization header quoted in some exception text; the known token is masked anyway.
_BEARER = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?bearer\s+)[^\s'\"]+")


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
    """The pieces of ``url`` that must never be shown: userinfo and query values, raw and percent-decoded."""
    parts = urlsplit(url)
    found = [parts.username or "", parts.password or ""]
    found += [value for _, value in parse_qsl(parts.query, keep_blank_values=True)]
    expanded = set()
    for secret in found:
        if secret:
            expanded.update({secret, unquote(secret), quote(secret, safe="")})
    return sorted(expanded, key=len, reverse=True)  # longest first, so no secret is left half-masked


class Redactor:
    """Masks one worker's secrets (token, URL userinfo and query values) in any text."""

    def __init__(self, *, base_url: str, token: str) -> None:
        secrets = set(url_secrets(base_url))
        if token:
            secrets.add(token)
        self._secrets = sorted(secrets, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        text = _USERINFO.sub(lambda m: f"{m['scheme']}{MASK}@", text)
        return _BEARER.sub(lambda m: f"{m[1]}{MASK}", text)
