"""Forms of the operator console (the Django admin)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from django import forms
from django.contrib.admin.helpers import ActionForm
from django.contrib.admin.widgets import AdminURLFieldWidget
from django.forms.fields import InvalidJSONInput

from config.errors import InvalidInput
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
    """The worker's bearer token is write-only: it is encrypted on save and never shown again."""

    # Explicit, ahead of Django 6's change of the default: a bare host means https.
    base_url = forms.URLField(max_length=500, assume_scheme="https", widget=AdminURLFieldWidget)
    token = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text="The bearer token the dispatcher sends to this worker. Stored encrypted; leave blank to keep it.",
    )

    class Meta:
        model = Worker
        fields = (
            "name",
            "base_url",
            "token",
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

    def save(self, commit: bool = True) -> Worker:
        if self.cleaned_data.get("token"):
            self.instance.token = self.cleaned_data["token"]
        return super().save(commit)


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
