"""API tokens: issued once, kept as digests, checked by digest (``ApiToken``).

The one door through which tokens are made, looked up and revoked: the DRF authentication
class, the chat socket, the SSE streams and Prometheus all call :func:`token_user`.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta
from typing import Any

from django.db import connection, transaction
from django.utils import timezone
from rest_framework import authentication, exceptions

from audit.services import audit_record
from config.rows import fetch, select_list
from security.models import ApiToken

KEY_PREFIX = "agy_"
# How stale ``last_used_at`` may get: one UPDATE a minute per token, not one per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)

TOKEN_ISSUE = "token.issue"  # noqa: S105 - audit action names
TOKEN_REVOKE = "token.revoke"  # noqa: S105


def digest_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_issue(*, user: Any, actor: str, name: str = "") -> tuple[ApiToken, str]:
    """A new token for ``user``: the row, and the key, which exists nowhere else once returned."""
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(user=user, name=name[:100], prefix=key[:12], digest=digest_of(key))
        audit_record(
            actor=actor,
            action=TOKEN_ISSUE,
            resource_type="api_token",
            resource_id=token.pk,
            data={"user": user.pk, "name": token.name, "prefix": token.prefix},
        )
    return token, key


def token_revoke(*, token: ApiToken, actor: str) -> None:
    with transaction.atomic():
        audit_record(
            actor=actor,
            action=TOKEN_REVOKE,
            resource_type="api_token",
            resource_id=token.pk,
            data={"user": token.user_id, "prefix": token.prefix},
        )
        token.delete()


def token_user(key: str) -> tuple[Any, ApiToken] | None:
    """The active user a key belongs to, and its token; None for an unknown key or an inactive user."""
    if not key or len(key) > 200:
        return None
    token = _token_with_user(digest_of(key))
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user, token


def _token_with_user(digest: str) -> ApiToken | None:
    """The token of ``digest`` with its user, in one hand-written join (config/rows.py: every request asks)."""
    User = ApiToken._meta.get_field("user").related_model
    quote, meta = connection.ops.quote_name, ApiToken._meta
    tokens, users = quote(meta.db_table), quote(User._meta.db_table)
    joined = f"u.{quote(User._meta.pk.column)} = t.{quote(meta.get_field('user').column)}"
    sql = (
        f"SELECT {select_list(ApiToken, 't')}, {select_list(User, 'u')} FROM {tokens} t "  # noqa: S608 - model names
        f"JOIN {users} u ON {joined} WHERE t.{quote(meta.get_field('digest').column)} = %s"
    )
    found = fetch(sql, [digest], [ApiToken, User])
    if not found:
        return None
    token, user = found[0]
    token.user = user
    return token


class ApiTokenAuthentication(authentication.TokenAuthentication):
    """DRF's ``Authorization: Token <key>`` header, checked against the digests."""

    def authenticate_credentials(self, key: str) -> tuple[Any, ApiToken]:
        found = token_user(key)
        if found is None:
            raise exceptions.AuthenticationFailed("Invalid token.")
        return found
