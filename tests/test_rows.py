"""config/rows.py: instances from a hand-written SELECT equal the ORM's own, field by field."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.utils import timezone

from config.rows import instances, select_list
from security.models import ApiToken
from security.tokens import token_issue, token_user

pytestmark = pytest.mark.django_db


def _fields(obj):
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}


@pytest.mark.parametrize("used", [False, True])
def test_a_token_and_its_user_read_by_hand_equal_the_orms(operator, used):
    token, key = token_issue(user=operator, actor="system", name="t")
    if used:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    User.objects.filter(pk=operator.pk).update(last_login=timezone.now())
    quote = connection.ops.quote_name
    sql = (
        f"SELECT {select_list(ApiToken, 't')}, {select_list(User, 'u')} FROM {quote(ApiToken._meta.db_table)} t "  # noqa: S608 - model names
        f"JOIN {quote(User._meta.db_table)} u ON u.id = t.user_id WHERE t.id = %s"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            sql,
            [token.pk],
        )
        read_token, read_user = instances(cursor.fetchone(), [ApiToken, User])
    assert _fields(read_token) == _fields(ApiToken.objects.get(pk=token.pk))
    assert _fields(read_user) == _fields(User.objects.get(pk=operator.pk))
    assert read_user.is_active is True
    assert read_user.last_login.tzinfo is not None
    assert read_token._state.adding is False
    assert read_token._state.db == "default"
    user, found = token_user(key)
    assert user == operator
    assert found.pk == token.pk
    assert found.user is user


def test_token_user_refuses_an_unknown_key_and_an_inactive_user(operator):
    _, key = token_issue(user=operator, actor="system", name="t")
    assert token_user(key + "x") is None
    User.objects.filter(pk=operator.pk).update(is_active=False)
    assert token_user(key) is None


def test_insert_rows_writes_what_bulk_create_writes_and_sets_the_automatic_keys(operator, make_task, monkeypatch):
    from config import rows
    from tasks.models import TaskEvent

    monkeypatch.setattr(rows, "INSERT_PARAMS", 12)  # two rows a statement: the chunking is crossed
    task = make_task()
    base = task.event_seq
    data = [{"n": i, "text": "é\u2603", "nested": {"list": [1, None, True]}} for i in range(5)]
    ours = [TaskEvent(task=task, seq=base + 1 + i, type="worker.progress", data=d) for i, d in enumerate(data)]
    rows.insert_rows(ours)
    assert all(e.pk is not None and e._state.adding is False for e in ours)
    assert len({e.pk for e in ours}) == 5
    theirs = [TaskEvent(task=task, seq=base + 6 + i, type="worker.progress", data=d) for i, d in enumerate(data)]
    TaskEvent.objects.bulk_create(theirs)
    stored = {e.pk: e for e in TaskEvent.objects.filter(pk__in=[e.pk for e in ours + theirs])}
    for mine, bulk in zip(ours, theirs, strict=True):
        a, b = _fields(stored[mine.pk]), _fields(stored[bulk.pk])
        assert a.pop("seq") + 5 == b.pop("seq")
        a.pop("id"), b.pop("id"), a.pop("created_at"), b.pop("created_at")
        assert a == b
        assert stored[mine.pk].created_at == mine.created_at
