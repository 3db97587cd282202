"""API tokens kept as digests: a key works, a dump does not show it, issuing and revoking are audited."""

from __future__ import annotations

import importlib
from datetime import timedelta
from io import StringIO
from types import SimpleNamespace

import pytest
from django.apps import apps
from django.core.management import call_command
from django.db import connection
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AuditRecord
from security import tokens
from security.models import ApiToken

pytestmark = pytest.mark.django_db


def api(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_an_issued_key_works_and_only_its_digest_is_stored(viewer):
    token, key = tokens.token_issue(user=viewer, actor="system", name="laptop")
    assert key.startswith("agy_")
    assert api(key).get("/api/v1/tasks").status_code == 200
    stored = ApiToken.objects.values_list("prefix", "digest").get(pk=token.pk)
    assert stored == (key[:12], tokens.digest_of(key))
    dump = StringIO()
    call_command("dumpdata", stdout=dump)
    assert key not in dump.getvalue()
    record = AuditRecord.objects.get(action=tokens.TOKEN_ISSUE)
    assert record.data == {"user": viewer.pk, "name": "laptop", "prefix": key[:12]}


@pytest.mark.parametrize("key", ["", "agy_unknown", "x" * 300, "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"])
def test_an_unknown_key_is_refused(key, viewer):
    tokens.token_issue(user=viewer, actor="system")
    response = api(key).get("/api/v1/tasks")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_an_inactive_users_key_is_refused(viewer):
    _, key = tokens.token_issue(user=viewer, actor="system")
    viewer.is_active = False
    viewer.save()
    assert api(key).get("/api/v1/tasks").status_code == 401


def test_last_use_is_recorded_at_most_once_a_minute(viewer):
    token, key = tokens.token_issue(user=viewer, actor="system")
    api(key).get("/api/v1/tasks")
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    api(key).get("/api/v1/tasks")
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=first - timedelta(minutes=2))
    api(key).get("/api/v1/tasks")
    assert ApiToken.objects.get(pk=token.pk).last_used_at > first


def test_create_token_prints_the_key_alone(viewer):
    out, err = StringIO(), StringIO()
    call_command("create_token", viewer.username, "--name", "ci", stdout=out, stderr=err)
    key = out.getvalue().strip()
    assert api(key).get("/api/v1/tasks").status_code == 200
    assert "shown once" in err.getvalue()
    assert key not in err.getvalue()


def test_create_token_names_a_missing_user():
    with pytest.raises(Exception, match="no user named 'ghost'"):
        call_command("create_token", "ghost", stdout=StringIO(), stderr=StringIO())


def test_an_admin_revokes_a_token_in_the_console_and_it_is_audited(viewer, admin_user):
    token, key = tokens.token_issue(user=viewer, actor="system")
    admin_user.is_staff = True
    admin_user.save()
    console = Client()
    console.force_login(admin_user)
    page = console.get(f"/admin/security/apitoken/{token.pk}/change/").content.decode()
    assert token.prefix in page
    assert key not in page
    response = console.post(f"/admin/security/apitoken/{token.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    assert api(key).get("/api/v1/tasks").status_code == 401
    record = AuditRecord.objects.get(action=tokens.TOKEN_REVOKE)
    assert (record.actor, record.resource_id) == (f"user:{admin_user.pk}", str(token.pk))


def test_a_viewer_cannot_see_tokens_in_the_console(viewer):
    viewer.is_staff = True
    viewer.save()
    console = Client()
    console.force_login(viewer)
    assert console.get("/admin/security/apitoken/").status_code == 403


def test_the_migration_adopts_old_drf_tokens_and_deletes_their_plaintext(viewer):
    old_key = "9944b09199c62bcf9418ad846dd0e4bbdfc6ee4b"
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id integer NOT NULL, created timestamp)"
        )
        cursor.execute(
            "INSERT INTO authtoken_token (key, user_id, created) VALUES (%s, %s, %s)",
            [old_key, viewer.pk, "2026-11-01 10:00:00"],
        )
    migration = importlib.import_module("security.migrations.0002_api_tokens")
    # The function reads only the editor's connection (a schema editor cannot open inside the
    # test's transaction on SQLite).
    migration.adopt_drf_tokens(apps, SimpleNamespace(connection=connection))
    assert api(old_key).get("/api/v1/tasks").status_code == 200
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM authtoken_token")
        assert cursor.fetchone() == (0,)
