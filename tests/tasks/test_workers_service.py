"""tasks.workers, called directly: every service and selector for every kind of principal, the URL policy, audit."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import AnonymousUser, User

from audit.models import AuditRecord
from config.errors import Conflict, InvalidInput, NotAuthenticated, NotFound, PermissionDenied
from security.principals import ANONYMOUS, SYSTEM
from tasks import workers
from tasks.models import Task, Worker

pytestmark = pytest.mark.django_db

URL = "http://127.0.0.1:9100"
TOKEN = "s3cret-token-value"
AUDIT_KEYS = {"changed", "url", "enabled", "capabilities", "max_concurrency", "has_token"}


def snapshot() -> tuple[list[dict[str, Any]], int]:
    """Every worker column and the audit count: what "nothing was written" compares."""
    return list(Worker.objects.order_by("pk").values()), AuditRecord.objects.count()


@pytest.fixture
def builder() -> Worker:
    """Registered by the system, with a token, so changes start from a realistic row."""
    return workers.worker_register(
        actor=SYSTEM, name="builder", base_url=URL, capabilities=["python"], token=TOKEN, max_concurrency=4
    )


@pytest.fixture
def principals(viewer: User, operator: User, admin_user: User, nobody: User) -> dict[str, Any]:
    return {
        "viewer": viewer,
        "operator": operator,
        "admin": admin_user,
        "nobody": nobody,
        "anonymous user": AnonymousUser(),
        "anonymous principal": ANONYMOUS,
        "system": SYSTEM,
    }


WRITE_REFUSALS = {
    "viewer": PermissionDenied,
    "operator": PermissionDenied,
    "nobody": PermissionDenied,
    "anonymous user": NotAuthenticated,
    "anonymous principal": NotAuthenticated,
}
WHO = ["viewer", "operator", "admin", "nobody", "anonymous user", "anonymous principal", "system"]

SERVICES: dict[str, Callable[..., Any]] = {
    "register": lambda actor: workers.worker_register(actor=actor, name="fresh", base_url=URL),
    "update": lambda actor: workers.worker_update(actor=actor, name="builder", max_concurrency=9),
    "disable": lambda actor: workers.worker_set_enabled(actor=actor, name="builder", enabled=False),
    "delete": lambda actor: workers.worker_delete(actor=actor, name="builder"),
}
EXPECTED_ACTION = {
    "register": ("worker.register", "fresh"),
    "update": ("worker.update", "builder"),
    "disable": ("worker.disable", "builder"),
    "delete": ("worker.delete", "builder"),
}

EFFECT: dict[str, Callable[[], bool]] = {
    "register": lambda: Worker.objects.filter(name="fresh").exists(),
    "update": lambda: Worker.objects.get(name="builder").max_concurrency == 9,
    "disable": lambda: Worker.objects.get(name="builder").enabled is False,
    "delete": lambda: not Worker.objects.filter(name="builder").exists(),
}


# --- roles ------------------------------------------------------------------------------


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("who", WHO)
def test_only_the_admin_role_and_the_system_change_the_registry(service, who, builder, principals):
    actor = principals[who]
    before = snapshot()
    if who in WRITE_REFUSALS:
        with pytest.raises(WRITE_REFUSALS[who], match=r"admin role|Log in"):
            SERVICES[service](actor)
        assert snapshot() == before
        return
    SERVICES[service](actor)
    assert EFFECT[service]()
    action, resource_id = EXPECTED_ACTION[service]
    record = AuditRecord.objects.latest("seq")
    assert (record.action, record.resource_type, record.resource_id) == (action, "worker", resource_id)
    assert record.actor == ("system" if who == "system" else f"user:{actor.pk}")
    assert set(record.data) == AUDIT_KEYS


@pytest.mark.parametrize("who", WHO)
def test_anyone_with_a_role_reads_the_registry(who, builder, principals):
    actor = principals[who]
    if who == "nobody":
        with pytest.raises(PermissionDenied, match="viewer role"):
            workers.worker_list(actor=actor)
        with pytest.raises(PermissionDenied):
            workers.worker_get(actor=actor, name="builder")
    elif who.startswith("anonymous"):
        with pytest.raises(NotAuthenticated):
            workers.worker_list(actor=actor)
        with pytest.raises(NotAuthenticated):
            workers.worker_get(actor=actor, name="builder")
    else:
        assert [w.name for w in workers.worker_list(actor=actor)] == ["builder"]
        assert workers.worker_get(actor=actor, name="builder").pk == builder.pk


def test_the_role_is_checked_before_the_worker_is_looked_up(viewer):
    # A viewer learns nothing about which names exist from a refused change.
    with pytest.raises(PermissionDenied):
        workers.worker_update(actor=viewer, name="no-such-worker", max_concurrency=2)


# --- register ---------------------------------------------------------------------------


def test_it_registers_a_worker_with_its_settings_and_an_encrypted_token(admin_user):
    worker = workers.worker_register(
        actor=admin_user,
        name="builder",
        base_url=" https://worker.example.com/v1 ",
        capabilities=["rust", "python", "rust"],
        max_concurrency=8,
        token=TOKEN,
        request_timeout_s=12,
        retry_max_attempts=5,
        retry_initial_backoff_ms=100,
        retry_max_backoff_ms=900,
        breaker_fail_max=7,
        breaker_reset_timeout_s=30,
        reason="new fleet",
    )
    worker.refresh_from_db()
    assert (worker.base_url, worker.capabilities, worker.max_concurrency, worker.enabled) == (
        "https://worker.example.com/v1",
        ["python", "rust"],
        8,
        True,
    )
    assert (worker.request_timeout_s, worker.retry_max_attempts, worker.retry_initial_backoff_ms) == (12.0, 5, 100)
    assert (worker.retry_max_backoff_ms, worker.breaker_fail_max, worker.breaker_reset_timeout_s) == (900, 7, 30)
    assert worker.token == TOKEN
    assert TOKEN not in worker.token_ciphertext
    record = AuditRecord.objects.get()
    assert (record.action, record.resource_id, record.actor, record.reason) == (
        "worker.register",
        "builder",
        f"user:{admin_user.pk}",
        "new fleet",
    )
    assert record.data == {
        "changed": [*workers.SETTINGS, "token"],
        "url": "https://worker.example.com/v1",
        "enabled": True,
        "capabilities": ["python", "rust"],
        "max_concurrency": 8,
        "has_token": True,
    }
    assert TOKEN not in str(record.data)


def test_defaults_are_the_models():
    worker = workers.worker_register(actor=SYSTEM, name="plain", base_url=URL)
    worker.refresh_from_db()
    fresh = Worker(name="x", base_url=URL)
    assert [getattr(worker, f) for f in workers.SETTINGS if f != "base_url"] == [
        getattr(fresh, f) for f in workers.SETTINGS if f != "base_url"
    ]
    assert worker.token_ciphertext == ""
    assert AuditRecord.objects.get().data["has_token"] is False


def test_a_taken_name_is_a_conflict_naming_the_field(builder):
    before = snapshot()
    with pytest.raises(workers.WorkerNameTaken) as caught:
        workers.worker_register(actor=SYSTEM, name="builder", base_url="http://127.0.0.1:9200")
    assert isinstance(caught.value, Conflict)
    assert (caught.value.http_status, list(caught.value.fields)) == (409, ["name"])
    assert snapshot() == before


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("name", {"name": "bad name!"}),
        ("name", {"name": ""}),
        ("max_concurrency", {"max_concurrency": 0}),
        ("max_concurrency", {"max_concurrency": "2"}),
        ("enabled", {"enabled": "true"}),
        ("capabilities", {"capabilities": "python"}),
        ("capabilities", {"capabilities": ["Not A Capability"]}),
        ("request_timeout_s", {"request_timeout_s": "30"}),
        ("request_timeout_s", {"request_timeout_s": float("nan")}),
        ("retry_max_attempts", {"retry_max_attempts": 0}),
        ("retry_max_backoff_ms", {"retry_initial_backoff_ms": 1000, "retry_max_backoff_ms": 10}),
        ("breaker_fail_max", {"breaker_fail_max": True}),
        ("token", {"token": "has a space"}),
        ("reason", {"reason": "x" * 1001}),
    ],
)
def test_bad_input_is_refused_naming_the_field_and_nothing_is_written(field, kwargs):
    arguments = {"name": "builder", "base_url": URL} | kwargs
    with pytest.raises(InvalidInput) as caught:
        workers.worker_register(actor=SYSTEM, **arguments)
    assert field in caught.value.fields
    assert snapshot() == ([], 0)


# --- the URL policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("ftp://files.example.com/worker", "ftp:// is not supported"),
        ("file:///etc/passwd", "file:// is not supported"),
        ("gopher://example.com", "not supported"),
        ("not a url", "spaces"),
        ("worker.example.com", "full URL"),
        ("http://", "host"),
        ("http://exa mple.com", "spaces"),
        ("http://-bad-.example.com", "host"),
        ("http://127.0.0.1:99999", "valid URL"),
        ("http://127.0.0.1:0", "Port 0"),
        ("http://127.0.0.1:9100/#frag", "fragment"),
        ("http://" + "a" * 500 + ".com", "500"),
    ],
)
def test_only_http_and_https_urls_with_a_host_are_accepted(url, words):
    with pytest.raises(InvalidInput) as caught:
        workers.worker_register(actor=SYSTEM, name="builder", base_url=url)
    assert list(caught.value.fields) == ["base_url"]
    assert words in str(caught.value.fields["base_url"][0])
    assert snapshot() == ([], 0)


@pytest.mark.parametrize(
    "url",
    [
        "http://user:pass@127.0.0.1:9100",
        "https://token@worker.example.com",
        "https://fn.example.net/api/run?code=abc123",
        "https://worker.example.com/?token=abc",
        "https://worker.example.com/?page=1",
        "https://worker.example.com/?",
    ],
)
def test_credentials_in_the_url_are_refused_with_a_pointer_to_the_token(url):
    with pytest.raises(InvalidInput) as caught:
        workers.worker_register(actor=SYSTEM, name="builder", base_url=url)
    [error] = caught.value.fields["base_url"]
    assert error.code == "url_credentials"
    assert "base_url" in error
    assert "`token` field" in error
    assert snapshot() == ([], 0)


@pytest.mark.parametrize(
    "url",
    ["http://worker:8080", "https://[::1]:9443/agents/", "http://127.0.0.1:9100", "HTTPS://Worker.Example.COM"],
)
def test_single_label_hosts_ip_literals_and_paths_are_accepted(url):
    assert workers.worker_register(actor=SYSTEM, name="builder", base_url=url).base_url == url


# --- update -------------------------------------------------------------------------------------


def test_an_update_changes_the_given_settings_only_and_records_which(builder, admin_user):
    worker = workers.worker_update(
        actor=admin_user, name="builder", max_concurrency=9, capabilities=["python"], reason="more room"
    )
    worker.refresh_from_db()
    assert (worker.max_concurrency, worker.capabilities, worker.base_url, worker.token) == (9, ["python"], URL, TOKEN)
    record = AuditRecord.objects.latest("seq")
    assert (record.action, record.reason) == ("worker.update", "more room")
    # capabilities were given but equal: not a change.
    assert record.data == {
        "changed": ["max_concurrency"],
        "url": URL,
        "enabled": True,
        "capabilities": ["python"],
        "max_concurrency": 9,
        "has_token": True,
    }


def test_an_update_that_changes_nothing_writes_nothing(builder):
    before = snapshot()
    workers.worker_update(actor=SYSTEM, name="builder", max_concurrency=4, base_url=URL)
    workers.worker_update(actor=SYSTEM, name="builder")
    assert snapshot() == before


def test_a_token_given_is_written_and_an_empty_one_removes_it(builder):
    workers.worker_update(actor=SYSTEM, name="builder", token="another-long-token")
    builder.refresh_from_db()
    assert builder.token == "another-long-token"
    assert AuditRecord.objects.latest("seq").data["changed"] == ["token"]

    workers.worker_update(actor=SYSTEM, name="builder", token="")
    builder.refresh_from_db()
    assert builder.token_ciphertext == ""
    record = AuditRecord.objects.latest("seq")
    assert (record.data["changed"], record.data["has_token"]) == (["token"], False)
    assert "another-long-token" not in str(list(AuditRecord.objects.values_list("data", flat=True)))


def test_an_update_is_validated_against_the_stored_row(builder):
    before = snapshot()
    # The stored floor is 500 ms: a ceiling under it is refused though only the ceiling is given.
    with pytest.raises(InvalidInput) as caught:
        workers.worker_update(actor=SYSTEM, name="builder", retry_max_backoff_ms=100)
    assert list(caught.value.fields) == ["retry_max_backoff_ms"]
    with pytest.raises(InvalidInput, match="base_url"):
        workers.worker_update(actor=SYSTEM, name="builder", base_url="ftp://files.example.com")
    with pytest.raises(InvalidInput, match="token"):
        workers.worker_update(actor=SYSTEM, name="builder", base_url="http://u:p@127.0.0.1:9100")
    assert snapshot() == before


def test_the_update_serializer_refuses_a_rename():
    serializer = workers.WorkerUpdateSerializer(data={"name": "other", "max_concurrency": 0})
    assert not serializer.is_valid()
    assert set(serializer.errors) == {"name", "max_concurrency"}
    assert "cannot change" in serializer.errors["name"][0]


@pytest.mark.parametrize(
    "call",
    [
        lambda: workers.worker_update(actor=SYSTEM, name="ghost", max_concurrency=2),
        lambda: workers.worker_set_enabled(actor=SYSTEM, name="ghost", enabled=False),
        lambda: workers.worker_delete(actor=SYSTEM, name="ghost"),
        lambda: workers.worker_get(actor=SYSTEM, name="ghost"),
    ],
)
def test_a_missing_worker_is_not_found(call, builder):
    before = snapshot()
    with pytest.raises(NotFound, match="ghost"):
        call()
    assert snapshot() == before


# --- enable, disable, delete --------------------------------------------------------------------


def test_disabling_and_enabling_are_recorded_once_each(builder, admin_user):
    workers.worker_set_enabled(actor=admin_user, name="builder", enabled=False, reason="maintenance")
    workers.worker_set_enabled(actor=admin_user, name="builder", enabled=False)  # already: nothing
    builder.refresh_from_db()
    assert builder.enabled is False
    workers.worker_set_enabled(actor=admin_user, name="builder", enabled=True)
    builder.refresh_from_db()
    assert builder.enabled is True
    records = AuditRecord.objects.filter(action__in=["worker.enable", "worker.disable"]).order_by("seq")
    assert [(r.action, r.reason, r.data["changed"], r.data["enabled"]) for r in records] == [
        ("worker.disable", "maintenance", ["enabled"], False),
        ("worker.enable", "", ["enabled"], True),
    ]


def test_deleting_keeps_the_history_of_finished_tasks(builder, make_task, admin_user):
    task = make_task()
    Task.objects.filter(pk=task.pk).update(state="completed", worker=builder)
    workers.worker_delete(actor=admin_user, name="builder", reason="decommissioned")
    assert not Worker.objects.exists()
    task.refresh_from_db()
    assert (task.state, task.worker_id) == ("completed", None)
    record = AuditRecord.objects.latest("seq")
    assert (record.action, record.resource_id, record.reason) == ("worker.delete", "builder", "decommissioned")
    assert record.data == {
        "changed": [],
        "url": URL,
        "enabled": True,
        "capabilities": ["python"],
        "max_concurrency": 4,
        "has_token": True,
    }


@pytest.mark.parametrize("state", ["running", "canceling"])
def test_a_worker_with_tasks_in_flight_cannot_be_deleted(builder, make_task, state):
    task = make_task()
    Task.objects.filter(pk=task.pk).update(state=state, worker=builder, attempt=1)
    before = snapshot()
    with pytest.raises(workers.WorkerBusy, match="disable it") as caught:
        workers.worker_delete(actor=SYSTEM, name="builder")
    assert caught.value.http_status == 409
    assert snapshot() == before


def test_every_registry_record_has_the_same_shape_and_no_secret(builder):
    workers.worker_update(actor=SYSTEM, name="builder", max_concurrency=2, token="rotated-token-123")
    workers.worker_set_enabled(actor=SYSTEM, name="builder", enabled=False)
    workers.worker_delete(actor=SYSTEM, name="builder")
    records = AuditRecord.objects.filter(resource_type="worker").order_by("seq")
    assert [r.action for r in records] == ["worker.register", "worker.update", "worker.disable", "worker.delete"]
    for record in records:
        assert set(record.data) == AUDIT_KEYS
        assert TOKEN not in str(record.data)
        assert "rotated-token-123" not in str(record.data)
