"""``manage.py register_worker``: the worker registry from the command line."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditRecord
from tasks.models import Worker

pytestmark = pytest.mark.django_db


def test_it_registers_a_worker_with_its_token_encrypted(monkeypatch):
    monkeypatch.setenv("BUILDER_TOKEN", "s3cret-token")
    call_command(
        "register_worker",
        "builder",
        "http://127.0.0.1:9100",
        "--capability",
        "python",
        "--capability",
        "rust",
        "--max-concurrency",
        "8",
        "--token-env",
        "BUILDER_TOKEN",
    )
    worker = Worker.objects.get(name="builder")
    assert (worker.base_url, worker.capabilities, worker.max_concurrency) == (
        "http://127.0.0.1:9100",
        ["python", "rust"],
        8,
    )
    assert worker.token == "s3cret-token"
    assert "s3cret" not in worker.token_ciphertext
    record = AuditRecord.objects.get(action="worker.register")
    assert record.resource_id == "builder"
    assert "s3cret" not in str(record.data)


def test_running_it_again_updates_the_worker(monkeypatch):
    call_command("register_worker", "builder", "http://127.0.0.1:9100")
    call_command("register_worker", "builder", "http://127.0.0.1:9200", "--disabled")
    worker = Worker.objects.get(name="builder")
    assert (worker.base_url, worker.enabled) == ("http://127.0.0.1:9200", False)
    assert list(AuditRecord.objects.order_by("id").values_list("action", flat=True)) == [
        "worker.register",
        "worker.update",
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["builder", "not a url"], "base_url"),
        (["bad name!", "http://127.0.0.1:9"], "name"),
        (["builder", "http://127.0.0.1:9", "--token-env", "NOT_SET_ANYWHERE"], "NOT_SET_ANYWHERE"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("register_worker", *args)
    assert not Worker.objects.exists()
    assert not AuditRecord.objects.exists()


def test_a_url_with_credentials_is_audited_without_them():
    call_command("register_worker", "builder", "http://user:pw@127.0.0.1:9100/")
    assert AuditRecord.objects.get().data["url"] == "http://127.0.0.1:9100/"
