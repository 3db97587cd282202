"""Shared fixtures: one persona per role, API clients logged in as each."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.utils import timezone
from rest_framework.test import APIClient

from security import tokens
from security.models import ApiToken
from tasks import services
from tasks.models import Task


def pytest_collection_modifyitems(config, items) -> None:
    from django.conf import settings

    if settings.DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        skip = pytest.mark.skip(reason="needs PostgreSQL (DATABASE_URL)")
        for item in items:
            if "postgres" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(autouse=True)
def _keystore_probe_uncached(monkeypatch) -> None:
    """Every health check reads the keystore afresh in tests (the cache is tested on its own)."""
    from metrics import health

    monkeypatch.setattr(health, "KEYSTORE_PROBE_TTL_S", 0.0)
    monkeypatch.setattr(health, "_keystore_probe", None)


@pytest.fixture(autouse=True)
def _stream_publication(request) -> Any:
    """The SSE publisher thread stays out of tests unless they ask for it (``stream_publication``).

    It writes the stored stream events from its own thread and connection, which would wait
    on (SQLite) or outlive (PostgreSQL) the transaction a test runs in. The stream tests run
    it for real, in a server process or with this marker.
    """
    from chat.watch import on_task_writes as on_chat_writes
    from metrics.stream.publish import on_task_writes
    from tasks.transitions import task_writes_committed

    if "stream_publication" in request.keywords:
        yield
        return
    receivers = [(on_task_writes, "metrics.stream"), (on_chat_writes, "chat.watch")]
    for receiver, uid in receivers:
        task_writes_committed.disconnect(receiver, dispatch_uid=uid)
    yield
    for receiver, uid in receivers:
        task_writes_committed.connect(receiver, dispatch_uid=uid)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings) -> None:
    """PBKDF2 costs ~0.3 s a user; tests do not need its strength."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _user(username: str, role: str | None) -> User:
    user = User.objects.create_user(username=username, password="pw-" + username)
    if role:
        # get_or_create: a transactional test flushes the groups the migration made.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def viewer(db) -> User:
    return _user("vera", "viewer")


@pytest.fixture
def operator(db) -> User:
    return _user("otto", "operator")


@pytest.fixture
def admin_user(db) -> User:
    return _user("ada", "admin")


@pytest.fixture
def nobody(db) -> User:
    """Authenticated, but holds no role."""
    return _user("nora", None)


@pytest.fixture
def anon_client() -> APIClient:
    return APIClient()


def api_key_for(user: User) -> str:
    """A new API key for ``user``, stored as the service stores it (its digest), without the audit record.

    Fixtures make many; the audit record of issuing one is tested in tests/security/test_tokens.py.
    Its last use is now, like a token in steady use: the once-a-minute bookkeeping UPDATE of a
    first use (tested there too) stays out of the tests that pin a view's queries.
    """
    key = tokens.KEY_PREFIX + secrets.token_urlsafe(32)
    ApiToken.objects.create(user=user, prefix=key[:12], digest=tokens.digest_of(key), last_used_at=timezone.now())
    return key


def _token_client(user: User) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {api_key_for(user)}")
    return client


@pytest.fixture
def viewer_client(viewer) -> APIClient:
    return _token_client(viewer)


@pytest.fixture
def operator_client(operator) -> APIClient:
    return _token_client(operator)


@pytest.fixture
def admin_client_api(admin_user) -> APIClient:
    return _token_client(admin_user)


@pytest.fixture
def nobody_client(nobody) -> APIClient:
    return _token_client(nobody)


@pytest.fixture
def make_task(db, operator) -> Callable[..., Task]:
    def make(**spec: Any) -> Task:
        spec.setdefault("title", "Write the release notes")
        return services.task_create(spec=spec, actor=operator)

    return make
