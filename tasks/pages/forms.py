"""The forms of the task pages: the new-task form, the bulk action, the timeline's paging.

The forms only shape what a browser sends (lines of text into lists, a JSON box into an
object); the rules stay where the API has them: the working spec is checked by
``services.task_create`` (``tasks.spec.WorkingSpecSerializer``), and its field errors are put
back next to the form field that holds each spec field.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from django import forms
from rest_framework import serializers

from config.strict import StrictSerializer
from tasks.models import Priority
from tasks.spec import WorkingSpecSerializer
from tasks.states import TaskAction

# Spec fields whose errors belong to a form field of another name; ``scope`` and
# ``change_budget`` are nested and are split by their inner keys in :meth:`TaskSpecForm.add_spec_errors`.
_NESTED = {
    "scope": {"in": "scope_in", "out": "scope_out", None: "scope_out"},
    "change_budget": {"max_files": "max_files", "max_lines": "max_lines", None: "max_files"},
}
ACCEPTANCE_HELP = (
    "One criterion a line: id | given | when | then (for example: A1 | a user | they sign in | they see the overview)."
)


def _choices(name: str) -> list[tuple[str, str]]:
    return [(value, label) for value, label in WorkingSpecSerializer().fields[name].choices.items()]


def _lines(value: str) -> list[str]:
    return [line.strip() for line in value.splitlines() if line.strip()]


def error_messages(errors: Any) -> list[str]:
    """DRF-shaped errors (strings, lists, dicts keyed by field or list index) as flat sentences."""
    if isinstance(errors, dict):
        found: list[str] = []
        for key, value in errors.items():
            label = f"item {int(key) + 1}" if str(key).isdigit() else str(key)
            found += [f"{label}: {message}" for message in error_messages(value)]
        return found
    if isinstance(errors, list | tuple):
        found = []
        for index, value in enumerate(errors):
            if isinstance(value, dict):
                if value:  # a list serializer gives {} for each valid item
                    found += [f"item {index + 1}, {message}" for message in error_messages(value)]
            else:
                found += error_messages(value)
        return found
    return [str(errors)]


class TaskSpecForm(forms.Form):
    """The fields of a CAWS working spec, as a person types them."""

    title = forms.CharField(required=False, widget=forms.TextInput(attrs={"maxlength": 200}))
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 4}))
    risk_tier = forms.IntegerField(
        required=False,
        initial=3,
        help_text="1 (highest risk, always reviewed by a person) to 3.",
        widget=forms.NumberInput(attrs={"min": 1, "max": 3}),
    )
    mode = forms.ChoiceField(choices=_choices("mode"), initial="feature")
    priority = forms.ChoiceField(choices=[(p.label, p.label) for p in Priority], initial=Priority.MEDIUM.label)
    scope_in = forms.CharField(
        label="Scope: paths in",
        required=False,
        help_text="Repository-relative paths the work may touch, one a line.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    scope_out = forms.CharField(
        label="Scope: paths out",
        required=False,
        help_text="Paths the work must not touch, one a line.",
        widget=forms.Textarea(attrs={"rows": 3}),
    )
    max_files = forms.IntegerField(
        label="Change budget: files", required=False, help_text="Leave both budget fields empty for no budget."
    )
    max_lines = forms.IntegerField(label="Change budget: lines", required=False)
    acceptance = forms.CharField(
        label="Acceptance criteria",
        required=False,
        help_text=ACCEPTANCE_HELP,
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    capabilities = forms.CharField(
        required=False, help_text="Worker capabilities the task needs, separated by commas or spaces."
    )
    input = forms.CharField(
        label="Input (JSON object)",
        required=False,
        help_text='Free-form input for the worker, for example {"sleep_s": 5}.',
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    timeout_s = forms.IntegerField(label="Timeout (seconds)", required=False, help_text="Default 600.")
    max_attempts = forms.IntegerField(label="Maximum attempts", required=False, help_text="Default 3.")

    def clean_acceptance(self) -> list[dict[str, str]]:
        criteria = []
        problems = []
        for number, line in enumerate(_lines(self.cleaned_data["acceptance"]), start=1):
            parts = [part.strip() for part in line.split("|")]
            if len(parts) != 4:
                problems.append(f"Line {number}: write id | given | when | then.")
                continue
            criteria.append(dict(zip(("id", "given", "when", "then"), parts, strict=True)))
        if problems:
            raise forms.ValidationError(problems)
        return criteria

    def clean_input(self) -> Any:
        text = self.cleaned_data["input"].strip()
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc}.") from exc

    def spec(self) -> dict[str, Any]:
        """The working spec this form describes; empty optional fields are left to the spec's defaults."""
        data = self.cleaned_data
        spec: dict[str, Any] = {"title": data["title"], "mode": data["mode"], "priority": data["priority"]}
        if data["description"]:
            spec["description"] = data["description"]
        for name in ("risk_tier", "timeout_s", "max_attempts"):
            if data[name] is not None:
                spec[name] = data[name]
        scope_in, scope_out = _lines(data["scope_in"]), _lines(data["scope_out"])
        if scope_in or scope_out:
            spec["scope"] = {"in": scope_in, "out": scope_out}
        if data["max_files"] is not None or data["max_lines"] is not None:
            spec["change_budget"] = {k: data[k] for k in ("max_files", "max_lines") if data[k] is not None}
        if data["acceptance"]:
            spec["acceptance"] = data["acceptance"]
        capabilities = data["capabilities"].replace(",", " ").split()
        if capabilities:
            spec["capabilities"] = capabilities
        if data["input"] is not None:
            spec["input"] = data["input"]
        return spec

    def add_spec_errors(self, fields: dict[str, Any]) -> None:
        """Put the spec's field errors (``InvalidInput.fields``) next to the form fields that hold them."""
        for name, errors in fields.items():
            if name in _NESTED:
                targets = _NESTED[name]
                if isinstance(errors, dict):
                    for key, inner in errors.items():
                        target = targets.get(key, targets[None])
                        self.add_error(target, error_messages(inner))
                else:
                    self.add_error(targets[None], error_messages(errors))
            elif name in self.fields:
                self.add_error(name, error_messages(errors))
            elif name == "non_field_errors":
                self.add_error(None, error_messages(errors))
            else:
                self.add_error(None, [f"{name}: {message}" for message in error_messages(errors)])


class TaskIdsField(forms.Field):
    """Task ids, from a repeated form key (the table's checkboxes); any well-formed id is
    accepted here, and the service reports one that does not exist."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: Any) -> list[str]:
        ids = []
        for item in value or []:
            try:
                ids.append(str(uuid.UUID(str(item))))
            except ValueError as exc:
                raise forms.ValidationError(f"“{item}” is not a task id.") from exc
        return ids


class BulkActionForm(forms.Form):
    """Cancel or retry over the tasks ticked in the table, or over every task matching the filter."""

    SELECTED, MATCHING = "selected", "matching"

    action = forms.ChoiceField(choices=[(TaskAction.CANCEL, "cancel"), (TaskAction.RETRY, "retry")])
    scope = forms.ChoiceField(choices=[(SELECTED, "the selected tasks"), (MATCHING, "every task matching the filter")])
    task_ids = TaskIdsField(required=False)
    query = forms.CharField(required=False, max_length=2000)
    reason = forms.CharField(required=False, max_length=2000)
    # The number of matching tasks the operator was shown and confirmed.
    confirmed = forms.IntegerField(required=False, min_value=0)

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("scope") == self.SELECTED and not data.get("task_ids") and "task_ids" not in self.errors:
            self.add_error("task_ids", "Select at least one task, or choose every task matching the filter.")
        return data


class TimelineQuerySerializer(StrictSerializer):
    """``?before=<seq>`` pages back through the timeline; ``?after=<seq>`` fetches what is new."""

    before = serializers.IntegerField(min_value=1, required=False)
    after = serializers.IntegerField(min_value=0, required=False)
