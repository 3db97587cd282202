"""Who is on a chat WebSocket: a token (``Authorization: Token <key>``) or the session cookie.

Browsers send the cookie by themselves, to any site that opens a socket to us, so a
connection that relies on it must come from our own origin (``Origin`` naming the host and
port the socket was opened to, or one of ``CSRF_TRUSTED_ORIGINS``); a token is never sent by a
browser on its own, so a client with one may come from anywhere (scripts send no Origin).
Any ``Origin`` that is present must be ours, whichever way the client authenticates.
The verdict is left in ``scope["chat_refusal"]`` for the consumer to close with its code.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.http.request import validate_host

from security.tokens import token_user

DEV_HOSTS = ["localhost", "127.0.0.1", "[::1]", ".localhost"]


def origin_allowed(origin: str, host_header: str | None) -> bool:
    """Our own origin: one of ``CSRF_TRUSTED_ORIGINS``, or the very host and port the socket was
    opened to (its ``Host`` header, itself one of ``ALLOWED_HOSTS``), as Django's CSRF check
    judges a form's origin. ``ALLOWED_HOSTS`` wildcards (``*``, ``.example.com``) never admit
    another site: the origin must name this host."""
    if origin in getattr(settings, "CSRF_TRUSTED_ORIGINS", []):
        return True
    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.netloc or not host_header:
        return False
    if parts.netloc.lower() != host_header.lower():
        return False
    hostname = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    allowed = list(settings.ALLOWED_HOSTS) or (DEV_HOSTS if settings.DEBUG else [])
    return validate_host(hostname.lower(), allowed)


@database_sync_to_async
def _token_user(key: str) -> Any:
    found = token_user(key)
    return found[0] if found else None


class ChatAuth:
    """Token or cookie, and the origin rule above; wraps channels' session/auth middleware."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.cookie_app = AuthMiddlewareStack(app)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        headers = {k.decode("latin1").lower(): v.decode("latin1") for k, v in scope.get("headers", [])}
        origin = headers.get("origin")
        scope = dict(scope)
        if origin is not None and not origin_allowed(origin, headers.get("host")):
            scope["user"], scope["chat_refusal"] = AnonymousUser(), ("origin", f"Origin {origin[:80]} is not allowed.")
            return await self.app(scope, receive, send)
        authorization = headers.get("authorization", "")
        scheme, _, key = authorization.partition(" ")
        if authorization:
            user = await _token_user(key.strip()) if scheme.lower() in ("token", "bearer") else None
            scope["user"] = user or AnonymousUser()
            if user is None:
                scope["chat_refusal"] = ("token", "Invalid token.")
            return await self.app(scope, receive, send)
        if origin is None:
            # No origin and no token: not a browser (which always sends Origin) and no credential.
            scope["user"] = AnonymousUser()
            return await self.app(scope, receive, send)
        return await self.cookie_app(scope, receive, send)
