"""Redaction of secrets from what gets logged, audited or shown."""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.utils.html import escape
from django.views.debug import ExceptionReporter, SafeExceptionReporterFilter

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


# --- Every log record ------------------------------------------------------------------------
# Secret values this process has read (master keys, keystore secrets, decrypted worker tokens):
# masked wherever they occur in a log record, whichever library wrote it.
_registered: set[str] = set()
_registered_lock = threading.Lock()
_ordered: list[str] = []

# Credentials recognised by their shape, whatever their value: an Authorization header (Bearer,
# Token, Basic), a cookie header or a session/CSRF cookie, userinfo in a URL, a credential-like
# query parameter, and a Vault token header.
_PATTERNS = [
    (re.compile(r"(?i)(\bauthorization['\"]?\s*[:=]\s*['\"]?(?:bearer|token|basic)\s+)[^\s'\",}]+"), r"\1***"),
    (re.compile(r"(?i)(\b(?:cookie|set-cookie)['\"]?\s*[:=]\s*['\"]?)[^'\"\n}]+"), r"\1***"),
    (re.compile(r"(?i)(\b(?:sessionid|csrftoken|csrfmiddlewaretoken)=)[^;&\s'\"]+"), r"\1***"),
    (re.compile(r"(?i)(\bx-vault-token['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"), r"\1***"),
    (re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@"), r"\1***@"),
    # This system's own API keys (security.tokens), never registered as values: only digests are kept.
    (re.compile(r"\b(agy_)[A-Za-z0-9_-]{20,}"), r"\1***"),
    (
        re.compile(
            r"(?i)([?&;](?:token|access_token|refresh_token|id_token|api_key|apikey|key|secret|client_secret"
            r"|password|passwd|pwd|auth|code|sig|signature|session|sessionid)=)[^&\s'\"#<>)]+"
        ),
        r"\1***",
    ),
]


def register_secret(value: str) -> None:
    """Mask ``value`` in every later log record (ignored when too short to mask safely)."""
    if len(value) < MIN_SECRET_LENGTH or value in _registered:
        return
    global _ordered
    with _registered_lock:
        _registered.add(value)
        _ordered = sorted(_registered, key=len, reverse=True)


def redact_text(text: str) -> str:
    """``text`` with the registered secrets and every credential-shaped substring masked."""
    for secret in _ordered:
        if secret in text:
            text = text.replace(secret, MASK)
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """A handler filter (config/settings.py LOGGING) that masks secrets in the whole record.

    It renders the message once (``msg % args``), the traceback and the stack, masks them,
    and leaves the record with the masked text only, so no later formatter can bring the
    arguments back. Attached to the handlers, it sees records of every logger that
    propagates to them: Django's error reports, requests, urllib3 and tenacity included.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken format string is still logged, masked
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact_text(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact_text(record.exc_text)
            # exc_info stays for handlers that need the exception object (Django's AdminEmailHandler
            # builds its report through RedactingExceptionReporterFilter below).
        if record.stack_info:
            record.stack_info = redact_text(record.stack_info)
        return True


class RedactingExceptionReporterFilter(SafeExceptionReporterFilter):
    """Django's error reports (the DEBUG page, mails to admins) with registered secrets masked.

    Django's own filter hides settings and request headers by name; a decrypted token in
    a frame's local variable or echoed in a POST field has no telling name, so every value
    is masked by content as well.
    """

    def cleanse_setting(self, key: Any, value: Any) -> Any:
        value = super().cleanse_setting(key, value)
        return redact_text(value) if isinstance(value, str) else value

    def get_post_parameters(self, request: Any) -> Any:
        params = super().get_post_parameters(request)
        if not params:
            return params
        cleansed = params.copy()
        for key in cleansed:
            cleansed[key] = redact_text(str(cleansed[key]))
        return cleansed


class RedactingExceptionReporter(ExceptionReporter):
    """The rendered error report (HTML page or text) with every secret masked, as a last pass.

    The filter above cleans settings and POST data by name; a decrypted token in a frame's
    local variable or in the exception's message has no telling name, so the whole rendered
    report goes through :func:`redact_text` (with the HTML-escaped form of each secret too).
    """

    def get_traceback_html(self) -> str:
        html = super().get_traceback_html()
        for secret in _ordered:
            html = html.replace(escape(secret), MASK)
        return redact_text(html)

    def get_traceback_text(self) -> str:
        return redact_text(super().get_traceback_text())
