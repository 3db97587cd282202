"""The worker registry: services that register, change, enable, disable and delete workers, and its reads.

Every door (the admin, ``/api/v1/workers``, ``manage.py register_worker``, the embedded
``serve``) calls these, so a worker is validated by one strict serializer, checked against
one URL policy (:func:`security.egress.check_worker_url`), allowed by one role check and
audited with one payload shape whichever door was used. Changing the registry is an admin
decision (the ``system`` principal, for management commands, holds every role); reading
it needs the viewer role.

The bearer token is write-only: it is encrypted at rest by the model and appears in no
return value, audit record or log line; readers get ``has_token``. A URL is shown and
recorded only through :func:`security.redaction.redact_url`, because rows registered
before the URL policy may still carry credentials.
"""

from __future__ import annotations

import math
from typing import Any

from django.db import IntegrityError, models, transaction
from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from audit.services import audit_record
from config.errors import Conflict, NotFound
from config.strict import StrictCharField, StrictIntegerField, StrictRegexField, StrictSerializer, validated
from security import egress, roles
from security.principals import Principal, require
from security.redaction import redact_url
from tasks.models import Task, Worker
from tasks.states import ACTIVE_STATES

NAME_PATTERN = r"^[-a-zA-Z0-9_]+$"
# The pattern of a task spec's capabilities (tasks/spec.py), so a worker can offer every capability a task can ask for.
CAPABILITY_PATTERN = r"^[a-z0-9][a-z0-9_.:-]{0,99}$"
MAX_CAPABILITIES = 50
MAX_TOKEN_LENGTH = 4096
REASON_MAX_LENGTH = 1000

# The settings a registration stores and an update may change, in the order forms show them.
SETTINGS = (
    "base_url",
    "capabilities",
    "max_concurrency",
    "enabled",
    "request_timeout_s",
    "retry_max_attempts",
    "retry_initial_backoff_ms",
    "retry_max_backoff_ms",
    "breaker_fail_max",
    "breaker_reset_timeout_s",
)


class WorkerAction(models.TextChoices):
    """The audit actions of the registry."""

    REGISTER = "worker.register"
    UPDATE = "worker.update"
    ENABLE = "worker.enable"
    DISABLE = "worker.disable"
    DELETE = "worker.delete"


# --- domain errors (each transport maps them once: config.exceptions for DRF) -------


class WorkerNotFound(NotFound):
    def __init__(self, name: str) -> None:
        super().__init__(f"No worker is registered as {name!r}.")
        self.name = name


class WorkerNameTaken(Conflict):
    """Registering a name that is in use (409; the body names the field, as a form would)."""

    code = "worker_exists"

    def __init__(self, name: str) -> None:
        message = f"A worker named {name!r} is already registered; change it instead."
        super().__init__(message, fields={"name": [message]})
        self.name = name


class WorkerBusy(Conflict):
    """Deleting a worker that runs attempts would orphan them mid-flight (409)."""

    code = "worker_busy"

    def __init__(self, name: str, active: int) -> None:
        super().__init__(
            f"Worker {name!r} has {active} task(s) running or canceling; disable it and let them finish first.",
            active=active,
        )


# --- input ------------------------------------------------------------------------


def credentials_message(refusal: str, *, where: str = "the `token` field") -> str:
    """The refusal of a URL with credentials, pointing to where a secret belongs for this door."""
    return (
        f"{refusal} Remove them from base_url and give the secret with {where}: "
        "it is stored encrypted and sent as a bearer token."
    )


class StrictBooleanField(serializers.BooleanField):
    """DRF reads ``"yes"``, ``"0"`` and ``1`` as booleans; these fields take JSON booleans only."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            raise serializers.ValidationError(f"Must be a boolean, not {type(data).__name__}.")
        return data


class StrictFloatField(serializers.FloatField):
    """A finite JSON number (integers included), never a string or a boolean."""

    def to_internal_value(self, data: Any) -> float:
        if isinstance(data, bool) or not isinstance(data, int | float):
            raise serializers.ValidationError(f"Must be a number, not {type(data).__name__}.")
        if not math.isfinite(data):
            # NaN passes every min/max comparison; from Python callers it would reach the database.
            raise serializers.ValidationError("Must be a finite number.")
        return super().to_internal_value(data)


@extend_schema_field(
    {"type": "string", "maxLength": egress.MAX_URL_LENGTH, "pattern": egress.WORKER_URL_SCHEMA_PATTERN}
)
class WorkerURLField(StrictCharField):
    """A worker's base URL; checked by :func:`security.egress.check_worker_url` in the serializer."""


TOKEN_PATTERN = r"^[!-~]*$"  # noqa: S105 - a pattern, not a secret
TOKEN_MESSAGE = "A token is printable ASCII: no spaces, control or non-ASCII characters."  # noqa: S105 - a message


class WorkerRegisterSerializer(StrictSerializer):
    """A worker as every door registers it; defaults are the model's."""

    name = StrictRegexField(
        NAME_PATTERN,
        max_length=100,
        help_text="Letters, digits, hyphens and underscores; it identifies the worker and never changes.",
    )
    base_url = WorkerURLField(
        max_length=egress.MAX_URL_LENGTH,
        help_text="http(s) URL without credentials or query string; the secret goes in `token`.",
    )
    capabilities = serializers.ListField(
        child=StrictRegexField(CAPABILITY_PATTERN), max_length=MAX_CAPABILITIES, default=list
    )
    max_concurrency = StrictIntegerField(min_value=1, max_value=1000, default=4)
    enabled = StrictBooleanField(default=True)
    # It goes into an Authorization header verbatim: printable ASCII only (whitespace would split
    # or end it, and a character past latin-1 cannot be sent in a header at all).
    token = StrictRegexField(
        TOKEN_PATTERN,
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        max_length=MAX_TOKEN_LENGTH,
        error_messages={"invalid": TOKEN_MESSAGE},
        help_text="Bearer token sent to the worker. Write-only; stored encrypted; empty for none.",
    )
    request_timeout_s = StrictFloatField(min_value=1, max_value=3600, default=30.0)
    retry_max_attempts = StrictIntegerField(min_value=1, max_value=20, default=3)
    retry_initial_backoff_ms = StrictIntegerField(min_value=0, max_value=600_000, default=500)
    retry_max_backoff_ms = StrictIntegerField(min_value=0, max_value=3_600_000, default=5000)
    breaker_fail_max = StrictIntegerField(min_value=1, max_value=1000, default=5)
    breaker_reset_timeout_s = StrictIntegerField(min_value=1, max_value=86_400, default=60)

    def validate_base_url(self, value: str) -> str:
        try:
            return egress.check_worker_url(value)
        except egress.URLRefused as exc:
            message = credentials_message(exc.message) if exc.code == egress.CREDENTIALS else exc.message
            # The code lets a door phrase the refusal in its own terms (register_worker names --token-env).
            raise serializers.ValidationError(message, code=exc.code) from exc

    def validate_capabilities(self, value: list[str]) -> list[str]:
        return sorted(set(value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        initial = attrs.get("retry_initial_backoff_ms", getattr(self.instance, "retry_initial_backoff_ms", None))
        ceiling = attrs.get("retry_max_backoff_ms", getattr(self.instance, "retry_max_backoff_ms", None))
        if initial is not None and ceiling is not None and ceiling < initial:
            raise serializers.ValidationError(
                {"retry_max_backoff_ms": [f"Must be at least retry_initial_backoff_ms ({initial})."]}
            )
        return attrs


class WorkerUpdateSerializer(WorkerRegisterSerializer):
    """A change of some settings: every field optional, none defaulted, the name fixed.

    The name is the worker's identity in the audit trail, breaker state and URLs, so a
    rename would split one worker's history in two; registering the new name is explicit.
    """

    name = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("partial", True)
        super().__init__(*args, **kwargs)

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        # partial=True already skips the defaults; dropping them keeps the schema from promising any.
        for field in fields.values():
            field.default = serializers.empty
            field.required = False
        return fields

    def to_internal_value(self, data: Any) -> Any:
        if not (isinstance(data, dict) and "name" in data):
            return super().to_internal_value(data)
        errors: dict[str, Any] = {"name": ["A worker's name cannot change; register a worker under the new name."]}
        try:
            super().to_internal_value({k: v for k, v in data.items() if k != "name"})
        except serializers.ValidationError as exc:
            if isinstance(exc.detail, dict):
                errors.update(exc.detail)
        raise serializers.ValidationError(errors)


class WorkerReasonSerializer(StrictSerializer):
    """The optional reason an admin gives for a change; it goes to the audit record."""

    reason = StrictCharField(max_length=REASON_MAX_LENGTH, required=False, allow_blank=True, default="")


# --- reads ------------------------------------------------------------------------


def worker_list(*, actor: Any, enabled: bool | None = None) -> QuerySet[Worker]:
    """The registry by name; ``enabled`` narrows it to the enabled (or the disabled) workers."""
    require(actor, roles.can_view, "see the worker registry")
    workers = Worker.objects.order_by("name")
    if enabled is not None:
        workers = workers.filter(enabled=enabled)
    return workers


def worker_get(*, actor: Any, name: str) -> Worker:
    require(actor, roles.can_view, "see the worker registry")
    try:
        return Worker.objects.get(name=name)
    except Worker.DoesNotExist as exc:
        raise WorkerNotFound(name) from exc


def worker_loads(*, actor: Any) -> dict[int, int]:
    """Attempts in flight (running or canceling) per worker id, in one grouped query.

    The dispatcher's own count of a worker's load (tasks.dispatch.claims), read for display;
    a worker with nothing in flight is absent. The state index finds the few active tasks.
    """
    require(actor, roles.can_view, "see the worker registry")
    rows = (
        Task.objects.filter(state__in=ACTIVE_STATES, worker__isnull=False)
        .values("worker_id")
        .annotate(n=models.Count("id"))
        .values_list("worker_id", "n")
    )
    return dict(rows)


def worker_name_taken(name: str) -> bool:
    """Whether ``name`` is registered: the service's refusal, and the admin form's early one."""
    return Worker.objects.filter(name=name).exists()


# --- services ---------------------------------------------------------------------


def worker_register(
    *,
    actor: Any,
    name: str,
    base_url: str,
    capabilities: list[str] | None = None,
    max_concurrency: int | None = None,
    enabled: bool | None = None,
    token: str = "",
    request_timeout_s: float | None = None,
    retry_max_attempts: int | None = None,
    retry_initial_backoff_ms: int | None = None,
    retry_max_backoff_ms: int | None = None,
    breaker_fail_max: int | None = None,
    breaker_reset_timeout_s: int | None = None,
    reason: str = "",
) -> Worker:
    """Register a new worker (admin). ``None`` means the default; ``token`` empty means none.

    Raises :class:`WorkerNameTaken` (409) for a name in use and ``InvalidInput`` (400) for bad input.
    """
    acting = require(actor, roles.is_admin, "register a worker")
    given = {
        "name": name,
        "base_url": base_url,
        "capabilities": capabilities,
        "max_concurrency": max_concurrency,
        "enabled": enabled,
        "token": token,
        "request_timeout_s": request_timeout_s,
        "retry_max_attempts": retry_max_attempts,
        "retry_initial_backoff_ms": retry_initial_backoff_ms,
        "retry_max_backoff_ms": retry_max_backoff_ms,
        "breaker_fail_max": breaker_fail_max,
        "breaker_reset_timeout_s": breaker_reset_timeout_s,
    }
    clean = validated(WorkerRegisterSerializer, {k: v for k, v in given.items() if v is not None})
    reason = _reason(reason)
    with transaction.atomic():
        if worker_name_taken(clean["name"]):
            raise WorkerNameTaken(clean["name"])
        worker = Worker(name=clean["name"], **{field: clean[field] for field in SETTINGS})
        worker.token = clean.get("token", "")
        try:
            # A savepoint, so that losing a race for the name is a 409, not a broken transaction.
            with transaction.atomic():
                worker.save(force_insert=True)
        except IntegrityError as exc:
            if worker_name_taken(clean["name"]):
                raise WorkerNameTaken(clean["name"]) from exc
            raise
        changed = [*SETTINGS, "token"] if worker.token_ciphertext else list(SETTINGS)
        _audit(acting, WorkerAction.REGISTER, worker, changed=changed, reason=reason)
    return worker


def worker_update(
    *,
    actor: Any,
    name: str,
    base_url: str | None = None,
    capabilities: list[str] | None = None,
    max_concurrency: int | None = None,
    enabled: bool | None = None,
    token: str | None = None,
    request_timeout_s: float | None = None,
    retry_max_attempts: int | None = None,
    retry_initial_backoff_ms: int | None = None,
    retry_max_backoff_ms: int | None = None,
    breaker_fail_max: int | None = None,
    breaker_reset_timeout_s: int | None = None,
    reason: str = "",
) -> Worker:
    """Change some settings of a worker (admin); ``None`` keeps a setting, ``token=""`` removes the token.

    A change that changes nothing writes nothing, not even an audit record.
    """
    acting = require(actor, roles.is_admin, "change a worker")
    given = {
        "base_url": base_url,
        "capabilities": capabilities,
        "max_concurrency": max_concurrency,
        "enabled": enabled,
        "token": token,
        "request_timeout_s": request_timeout_s,
        "retry_max_attempts": retry_max_attempts,
        "retry_initial_backoff_ms": retry_initial_backoff_ms,
        "retry_max_backoff_ms": retry_max_backoff_ms,
        "breaker_fail_max": breaker_fail_max,
        "breaker_reset_timeout_s": breaker_reset_timeout_s,
    }
    data = {k: v for k, v in given.items() if v is not None}
    reason = _reason(reason)
    with transaction.atomic():
        worker = _lock(name)
        # Validated against the locked row: the backoff ceiling is checked against the stored floor.
        clean = validated(WorkerUpdateSerializer, data, instance=worker)
        changed = [field for field in SETTINGS if field in clean and getattr(worker, field) != clean[field]]
        for field in changed:
            setattr(worker, field, clean[field])
        columns = list(changed)
        new_token = clean.get("token")
        # A token given is a token written: comparing would mean decrypting the old one, and a
        # rotation to the same value is still an act worth recording.
        if new_token or (new_token == "" and worker.token_ciphertext):
            worker.token = new_token
            changed.append("token")
            columns.append("token_ciphertext")
        if not changed:
            return worker
        worker.save(update_fields=[*columns, "updated_at"])
        _audit(acting, WorkerAction.UPDATE, worker, changed=changed, reason=reason)
    return worker


def worker_set_enabled(*, actor: Any, name: str, enabled: bool, reason: str = "") -> Worker:
    """Enable or disable a worker (admin). Disabling stops new claims; attempts in flight finish."""
    acting = require(actor, roles.is_admin, "enable or disable a worker")
    reason = _reason(reason)
    with transaction.atomic():
        worker = _lock(name)
        if worker.enabled == enabled:
            return worker
        worker.enabled = enabled
        worker.save(update_fields=["enabled", "updated_at"])
        action = WorkerAction.ENABLE if enabled else WorkerAction.DISABLE
        _audit(acting, action, worker, changed=["enabled"], reason=reason)
    return worker


def worker_delete(*, actor: Any, name: str, reason: str = "") -> None:
    """Remove a worker from the registry (admin); its past tasks keep their history, without the link.

    Refused with :class:`WorkerBusy` while a task is running or canceling at it.
    """
    acting = require(actor, roles.is_admin, "delete a worker")
    reason = _reason(reason)
    with transaction.atomic():
        worker = _lock(name)
        active = worker.tasks.filter(state__in=ACTIVE_STATES).count()
        if active:
            raise WorkerBusy(worker.name, active)
        worker.delete()  # before the audit record: the audit chain lock is taken last (docs/audit.md)
        _audit(acting, WorkerAction.DELETE, worker, changed=[], reason=reason)


# --- helpers ----------------------------------------------------------------------


def _reason(reason: str) -> str:
    return validated(WorkerReasonSerializer, {"reason": reason})["reason"]


def _lock(name: str) -> Worker:
    try:
        return Worker.objects.select_for_update().get(name=name)
    except Worker.DoesNotExist as exc:
        raise WorkerNotFound(name) from exc


def _audit(acting: Principal, action: WorkerAction, worker: Worker, *, changed: list[str], reason: str) -> None:
    """The one payload of every registry record: what changed and the settings after (never the token)."""
    audit_record(
        actor=acting.actor,
        action=action.value,
        resource_type="worker",
        resource_id=worker.name,
        data={
            "changed": changed,
            "url": redact_url(worker.base_url),
            "enabled": worker.enabled,
            "capabilities": list(worker.capabilities or []),
            "max_concurrency": worker.max_concurrency,
            "has_token": bool(worker.token_ciphertext),
        },
        reason=reason,
    )
