"""Forms of the operator console (the Django admin)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.widgets import AdminURLFieldWidget
from django.forms.fields import InvalidJSONInput
from rest_framework import serializers

from config.errors import InvalidInput
from security import egress
from security.redaction import redact_url
from tasks import workers
from tasks.models import Gate, Task, Waiver, Worker
from tasks.review.verdicts import OVERRIDE_DECISIONS
from tasks.review.waivers import (
    MAX_WAIVER_DAYS,
    MIN_JUSTIFICATION,
    MIN_REVOKE_REASON,
    NOTE_MAX_LENGTH,
    WaiverRequestSerializer,
)
from tasks.spec import validate_spec
from tasks.states import TaskAction

REASON_MAX_LENGTH = 1000

SPEC_TEMPLATE = {
    "title": "",
    "description": "",
    "priority": "medium",
    "risk_tier": 2,
    "mode": "feature",
    "scope": {"in": [], "out": []},
    "acceptance": [],
}


def _spec_error_messages(detail: Any, path: tuple[str, ...] = ()) -> Iterator[str]:
    """Flatten DRF's nested error detail into ``field.sub: message`` lines."""
    if isinstance(detail, dict):
        for key, value in detail.items():
            yield from _spec_error_messages(value, path if key == "non_field_errors" else (*path, str(key)))
    elif isinstance(detail, list):
        for index, item in enumerate(detail):
            if isinstance(item, dict | list):
                yield from _spec_error_messages(item, (*path, str(index)))
            else:
                yield f"{'.'.join(path)}: {item}" if path else str(item)
    else:
        yield f"{'.'.join(path)}: {detail}" if path else str(detail)


class PrettyJSONField(forms.JSONField):
    def prepare_value(self, value: Any) -> str:
        if isinstance(value, InvalidJSONInput):
            return value
        return json.dumps(value, indent=2, ensure_ascii=False, cls=self.encoder)


class TaskCreateForm(forms.ModelForm):
    """The add form: one working spec as JSON, validated exactly as the API validates it."""

    spec = PrettyJSONField(
        initial=SPEC_TEMPLATE,
        widget=forms.Textarea(attrs={"rows": 20, "cols": 90, "class": "vLargeTextField", "spellcheck": "false"}),
        help_text="The CAWS working spec as a JSON object; the title is required, unknown keys are refused.",
    )

    class Meta:
        model = Task
        fields = ["spec"]

    def clean_spec(self) -> Any:
        spec = self.cleaned_data["spec"]
        try:
            validate_spec(spec)
        except InvalidInput as exc:
            raise forms.ValidationError(list(_spec_error_messages(exc.fields))) from exc
        # The raw spec goes to the service, which normalises it itself.
        return spec


class TaskActionForm(ActionForm):
    reason = forms.CharField(label="Reason:", required=False, max_length=REASON_MAX_LENGTH)


class TaskActForm(forms.Form):
    """The per-task buttons of the change page."""

    action = forms.ChoiceField(choices=[*TaskAction.choices, ("override", "override")])
    reason = forms.CharField(required=False, max_length=REASON_MAX_LENGTH)
    decision = forms.ChoiceField(choices=[(d, d) for d in OVERRIDE_DECISIONS], required=False)
    guidance = forms.CharField(required=False, max_length=10_000)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("action") == "override" and not data.get("decision"):
            raise forms.ValidationError("An override needs a decision.")
        return data


class WorkerForm(forms.ModelForm):
    """The worker registry's add and change form, held to the rules of :mod:`tasks.workers`.

    :meth:`clean` runs the services' own serializer, so the console refuses exactly what
    the API and ``register_worker`` refuse, with the same messages; the admin then calls
    the service with :attr:`worker_changes`. The bearer token is write-only: it is never
    rendered, and a blank field keeps the stored one.
    """

    base_url = forms.CharField(
        max_length=egress.MAX_URL_LENGTH,
        widget=AdminURLFieldWidget,
        help_text="http:// or https:// only, without user:password@ or a query string: the secret goes in token.",
    )
    token = forms.CharField(
        required=False,
        strip=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The bearer token the dispatcher sends to this worker. Stored encrypted; leave blank to keep it.",
    )

    class Meta:
        model = Worker
        fields = ("name", *workers.SETTINGS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.worker_changes: dict[str, Any] = {}
        if self.instance.pk is not None:
            # A row registered before the URL policy may carry credentials in its URL: the form
            # shows it without them, and a field left as shown keeps the stored URL.
            self.initial["base_url"] = redact_url(self.instance.base_url)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        adding = self.instance.pk is None
        names = ("name", *workers.SETTINGS) if adding else [f for f in workers.SETTINGS if f in self.changed_data]
        data = {name: cleaned[name] for name in names if name in cleaned}
        if "capabilities" in data and data["capabilities"] is None:
            data["capabilities"] = []  # an emptied JSON box
        if cleaned.get("token"):
            data["token"] = cleaned["token"]
        if adding:
            serializer: serializers.Serializer = workers.WorkerRegisterSerializer(data=data)
        else:
            serializer = workers.WorkerUpdateSerializer(data=data, instance=self.instance)
        if not serializer.is_valid():
            for field, errors in serializer.errors.items():
                # A field the form already refused would only be reported twice.
                if field not in self.errors:
                    self.add_error(field if field in self.fields else None, [str(e) for e in errors])
        elif adding and workers.worker_name_taken(data["name"]):
            self.add_error("name", f"A worker named {data['name']!r} is already registered.")
        self.worker_changes = data
        return cleaned

    def _post_clean(self) -> None:
        # The serializer in clean() is the validation every door shares, and the service writes
        # the row, so the model's own validation is not run a second time: its URLField would
        # refuse single-label hosts (http://worker:8080) that the API and the command accept.
        pass


class WaiverRequestForm(forms.ModelForm):
    """The add form: a waiver request, held to the same rules as ``POST /api/v1/waivers``."""

    gates = forms.MultipleChoiceField(
        choices=Gate.choices, widget=forms.CheckboxSelectMultiple, help_text="The gates whose violations it drops."
    )

    class Meta:
        model = Waiver
        fields = ["title", "reason", "gates", "justification", "expires_at", "task"]
        help_texts = {
            "justification": f"Why the gate should not apply; at least {MIN_JUSTIFICATION} characters.",
            "expires_at": f"In the future, at most {MAX_WAIVER_DAYS} days ahead.",
            "task": "The one task it covers; leave empty for every task.",
        }

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        task = cleaned.get("task")
        data = {
            name: cleaned[name]
            for name in ("title", "reason", "gates", "justification", "expires_at")
            if name in cleaned
        }
        data["task"] = task.pk if task is not None else None
        serializer = WaiverRequestSerializer(data=data)
        if not serializer.is_valid():
            for field, errors in serializer.errors.items():
                # A field the form already refused would only be reported twice.
                if field not in self.errors:
                    self.add_error(field if field in self.fields else None, [str(e) for e in errors])
        return cleaned


class WaiverActionForm(ActionForm):
    note = forms.CharField(
        label=f"Note (a reason of at least {MIN_REVOKE_REASON} characters to revoke):",
        required=False,
        max_length=NOTE_MAX_LENGTH,
    )
