"""``manage.py register_worker``: the worker registry from the command line."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from audit.models import AuditRecord
from tasks.models import Worker

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command("register_worker", *args, stdout=out)
    return out.getvalue()


def test_it_registers_a_worker_with_its_token_encrypted(monkeypatch):
    monkeypatch.setenv("BUILDER_TOKEN", "s3cret-token")
    out = run(
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
    assert out == "registered worker builder at http://127.0.0.1:9100\n"
    worker = Worker.objects.get(name="builder")
    assert (worker.base_url, worker.capabilities, worker.max_concurrency) == (
        "http://127.0.0.1:9100",
        ["python", "rust"],
        8,
    )
    assert worker.token == "s3cret-token"
    assert "s3cret" not in worker.token_ciphertext
    record = AuditRecord.objects.get(action="worker.register")
    # The command acts as the system principal, through the same service as the admin and the API.
    assert (record.resource_id, record.actor) == ("builder", "system")
    assert record.data["has_token"] is True
    assert "s3cret" not in str(record.data)


def test_running_it_again_updates_the_worker_and_an_identical_run_writes_nothing(monkeypatch):
    run("builder", "http://127.0.0.1:9100")
    assert run("builder", "http://127.0.0.1:9200", "--disabled") == "updated worker builder at http://127.0.0.1:9200\n"
    worker = Worker.objects.get(name="builder")
    assert (worker.base_url, worker.enabled) == ("http://127.0.0.1:9200", False)
    assert (
        run("builder", "http://127.0.0.1:9200", "--disabled") == "unchanged worker builder at http://127.0.0.1:9200\n"
    )
    records = AuditRecord.objects.order_by("seq")
    assert [r.action for r in records] == ["worker.register", "worker.update"]
    assert records[1].data["changed"] == ["base_url", "enabled"]


def test_an_update_without_token_env_keeps_the_token(monkeypatch):
    monkeypatch.setenv("BUILDER_TOKEN", "s3cret-token")
    run("builder", "http://127.0.0.1:9100", "--token-env", "BUILDER_TOKEN")
    run("builder", "http://127.0.0.1:9100", "--max-concurrency", "2")
    worker = Worker.objects.get()
    assert (worker.max_concurrency, worker.token) == (2, "s3cret-token")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["builder", "not a url"], "base_url"),
        (["builder", "ftp://files.example.com/worker"], "base_url: Use an http:// or https:// URL"),
        (["builder", "gopher://example.com"], "base_url: .*not supported"),
        (["bad name!", "http://127.0.0.1:9"], "name"),
        (["builder", "http://127.0.0.1:9", "--max-concurrency", "0"], "max_concurrency"),
        (["builder", "http://127.0.0.1:9", "--capability", "Not Valid"], "capabilities"),
        (["builder", "http://127.0.0.1:9", "--token-env", "NOT_SET_ANYWHERE"], "NOT_SET_ANYWHERE"),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("register_worker", *args)
    assert not Worker.objects.exists()
    assert not AuditRecord.objects.exists()


@pytest.mark.parametrize(
    "url",
    ["http://user:pw-s3cret@127.0.0.1:9100/", "https://fn.example.net/run?code=qs3cret1", "http://h.example/?token=t"],
)
def test_a_url_with_credentials_is_refused_pointing_to_token_env(url):
    with pytest.raises(CommandError) as caught:
        call_command("register_worker", "builder", url)
    message = str(caught.value)
    assert message.startswith("base_url: Credentials do not belong in the URL")
    assert "--token-env" in message
    assert "`token` field" not in message  # the API's words, not this command's
    assert "s3cret" not in message
    assert not Worker.objects.exists()
    assert not AuditRecord.objects.exists()


def test_it_prints_and_records_an_old_rows_url_without_its_credentials():
    Worker.objects.create(name="legacy", base_url="https://bob:hunter2-pw@fn.example.net/run?code=abcdefgh")
    out = run("legacy", "https://fn.example.net/run", "--max-concurrency", "2")
    assert out == "updated worker legacy at https://fn.example.net/run\n"
    record = AuditRecord.objects.get()
    assert record.data["changed"] == ["base_url", "max_concurrency"]
    assert "hunter2" not in str(record.data)
