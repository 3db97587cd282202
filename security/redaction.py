"""Redaction of secrets from what gets logged, audited or shown."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit, urlunsplit

MASK = "***"
# Masking a value wherever it occurs is safe only for values long enough to be distinctive:
# a query value of ``1`` masked as a substring turned every "1" of an error message (ports,
# status codes, attempt numbers) into ``***``. Shorter secrets are masked by structure
# instead (URL userinfo and query values, Authorization headers), never by value.
MIN_SECRET_LENGTH = 8


def redact_url(url: str) -> str:
    """The URL without userinfo, query or fragment (where credentials hide)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return "<unparseable url>"
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{host}:{port}" if port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def maskable(secrets: Iterable[str]) -> list[str]:
    """The secrets long enough to be masked wherever they occur, longest first (so none is left half-masked)."""
    return sorted({s for s in secrets if len(s) >= MIN_SECRET_LENGTH}, key=len, reverse=True)


def mask_secrets(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each secret of meaningful length replaced by :data:`MASK`."""
    for secret in maskable(secrets):
        text = text.replace(secret, MASK)
    return text
