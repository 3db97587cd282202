"""The task pages of the console: the list with its filters and bulk actions, the change page
with its timeline and action buttons. Every change calls a service."""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.contrib.admin.views.main import ChangeList
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.forms.models import BaseInlineFormSet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseBadRequest, HttpResponseRedirect
from django.urls import URLPattern, path, reverse
from django.utils.decorators import method_decorator
from django.utils.html import format_html, format_html_join
from django.views.decorators.http import require_POST

from config.admin_paginator import EstimatedCountPaginator
from config.errors import DomainError
from security import roles
from tasks import services
from tasks.admin.common import ServiceOnlyAdmin, pretty_json, run_bulk_action
from tasks.admin.forms import (
    REASON_MAX_LENGTH,
    TaskActForm,
    TaskActionForm,
    TaskCreateForm,
)
from tasks.exceptions import TaskNotFound
from tasks.models import Task, TaskEvent
from tasks.review import verdicts
from tasks.states import TaskAction, target_state

# A timeline can hold thousands of events; the change page shows the newest ones.
TIMELINE_LIMIT = 50


class LatestEventsFormSet(BaseInlineFormSet):
    def get_queryset(self) -> QuerySet[TaskEvent]:
        if not hasattr(self, "_queryset"):
            # The services number events 1..event_seq under the task's row lock,
            # so the newest ones are a range on the (task, seq) unique index.
            floor = self.instance.event_seq - TIMELINE_LIMIT
            self._queryset = self.queryset.filter(seq__gt=floor).order_by("seq")
        return self._queryset


class TaskEventInline(admin.TabularInline):
    model = TaskEvent
    formset = LatestEventsFormSet
    fields = ("seq", "type", "data", "created_at")
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    verbose_name_plural = "timeline"

    def get_formset(self, request: HttpRequest, obj: Task | None = None, **kwargs: Any) -> Any:
        # Inline instances are made per request, so naming the count here is safe.
        if obj is not None:
            total = obj.event_seq
            if total > TIMELINE_LIMIT:
                self.verbose_name_plural = f"timeline (latest {TIMELINE_LIMIT} of {total} events)"
            else:
                self.verbose_name_plural = f"timeline ({total} event{'s' if total != 1 else ''})"
        return super().get_formset(request, obj, **kwargs)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return roles.can_view(request.user)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class TaskChangeList(ChangeList):
    def get_queryset(self, request: HttpRequest, exclude_parameters: Any = None) -> QuerySet[Task]:
        # The list never shows the spec or the result, which can be large JSON.
        return super().get_queryset(request, exclude_parameters).defer("spec", "result")


class RiskTierFilter(admin.SimpleListFilter):
    """Fixed choices: the default filter for a plain integer runs SELECT DISTINCT over the whole table."""

    title = "risk tier"
    parameter_name = "risk_tier"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("1", "1"), ("2", "2"), ("3", "3")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Task]) -> QuerySet[Task]:
        if self.value() in {"1", "2", "3"}:
            return queryset.filter(risk_tier=int(self.value()))
        return queryset


def _run_bulk_action(modeladmin: TaskAdmin, request: HttpRequest, queryset: QuerySet[Task], action: str) -> None:
    """Apply one service per selected task, each in its own transaction, and report each outcome."""
    service = services.ACTION_SERVICES[action]
    reason = request.POST.get("reason", "").strip()[:REASON_MAX_LENGTH]

    def apply(task_id: Any) -> str:
        return f" ({service(task_id=task_id, actor=request.user, reason=reason).state})"

    run_bulk_action(modeladmin, request, queryset, action=action, noun="tasks", apply=apply)


@admin.action(description="Cancel selected tasks", permissions=["operate"])
def cancel_tasks(modeladmin: TaskAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    _run_bulk_action(modeladmin, request, queryset, TaskAction.CANCEL)


@admin.action(description="Pause selected tasks", permissions=["operate"])
def pause_tasks(modeladmin: TaskAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    _run_bulk_action(modeladmin, request, queryset, TaskAction.PAUSE)


@admin.action(description="Resume selected tasks", permissions=["operate"])
def resume_tasks(modeladmin: TaskAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    _run_bulk_action(modeladmin, request, queryset, TaskAction.RESUME)


@admin.action(description="Retry selected tasks", permissions=["operate"])
def retry_tasks(modeladmin: TaskAdmin, request: HttpRequest, queryset: QuerySet[Task]) -> None:
    _run_bulk_action(modeladmin, request, queryset, TaskAction.RETRY)


@admin.register(Task)
class TaskAdmin(ServiceOnlyAdmin):
    list_display = ("title", "state", "priority", "risk_tier", "attempts", "worker", "created_by", "created_at")
    list_filter = ("state", "priority", RiskTierFilter, "worker")
    list_select_related = ("worker", "created_by")
    search_fields = ("title",)
    search_help_text = "Title contains the words, or paste a task id."
    # Matches the (created_at, id) index; other columns would sort the whole table.
    ordering = ("-created_at", "-id")
    sortable_by = ("created_at",)
    show_full_result_count = False
    show_facets = admin.ShowFacets.NEVER
    paginator = EstimatedCountPaginator
    action_form = TaskActionForm
    actions = (cancel_tasks, pause_tasks, resume_tasks, retry_tasks)
    inlines = (TaskEventInline,)
    fieldsets = (
        (None, {"fields": ("id", "title", "state", "priority", "risk_tier", "created_by", "created_at", "updated_at")}),
        (
            "Execution",
            {
                "fields": (
                    ("attempt", "max_attempts", "run_after"),
                    ("worker", "lease_owner", "lease_expires_at"),
                    ("progress_percent", "progress_phase"),
                    ("started_at", "finished_at"),
                )
            },
        ),
        ("Outcome", {"fields": ("result_json", "error")}),
        ("Review", {"fields": ("verdict_display", "violations_json")}),
        ("Cancellation", {"fields": ("cancel_requested_at", "cancel_requested_by", "cancel_reason")}),
        ("Working spec", {"fields": ("spec_json",)}),
    )
    # Everything: state changes only through the services (actions and buttons).
    readonly_fields = tuple(flatten_fieldsets(fieldsets))

    # --- changelist -------------------------------------------------------------

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return TaskChangeList

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Task], search_term: str
    ) -> tuple[QuerySet[Task], bool]:
        try:
            task_id = uuid.UUID(search_term.strip())
        except ValueError:
            return super().get_search_results(request, queryset, search_term)
        return queryset.filter(pk=task_id), False

    @admin.display(description="attempt")
    def attempts(self, obj: Task) -> str:
        return f"{obj.attempt}/{obj.max_attempts}"

    @admin.display(description="result")
    def result_json(self, obj: Task) -> str:
        return pretty_json(obj.result)

    @admin.display(description="spec")
    def spec_json(self, obj: Task) -> str:
        return pretty_json(obj.spec)

    @admin.display(description="violations")
    def violations_json(self, obj: Task) -> str:
        return pretty_json(obj.violations or None)

    @admin.display(description="verdicts")
    def verdict_display(self, obj: Task) -> str:
        rows = [
            format_html(
                "<li><code>{}</code>: <strong>{}</strong> ({}{}) {} — {}</li>",
                v.provenance_id,
                v.decision,
                "automatic" if v.automatic else f"by {v.decided_by.username if v.decided_by else '?'}",
                f", score {v.score} / {v.threshold}" if v.score is not None else "",
                v.created_at.strftime("%Y-%m-%d %H:%M:%S"),
                v.reason,
            )
            for v in obj.verdicts.select_related("decided_by").order_by("-created_at")[:20]
        ]
        return format_html("<ul>{}</ul>", format_html_join("", "{}", ((r,) for r in rows))) if rows else "-"

    # --- add form: the create service -----------------------------------------

    def get_form(self, request: HttpRequest, obj: Task | None = None, change: bool = False, **kwargs: Any) -> Any:
        if obj is None:
            return TaskCreateForm
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fieldsets(self, request: HttpRequest, obj: Task | None = None) -> Any:
        if obj is None:
            return [(None, {"fields": ["spec"]})]
        return super().get_fieldsets(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Task | None = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def get_inlines(self, request: HttpRequest, obj: Task | None) -> Any:
        return self.inlines if obj is not None else ()

    def save_form(self, request: HttpRequest, form: forms.ModelForm, change: bool) -> Task:
        if change:  # unreachable: has_change_permission is False for everyone
            raise PermissionDenied
        # The row, its first event and its audit record, in one transaction.
        return services.task_create(spec=form.cleaned_data["spec"], actor=request.user)

    def response_post_save_add(self, request: HttpRequest, obj: Task) -> HttpResponse:
        # Show the new task (state, timeline, buttons) rather than the list.
        return HttpResponseRedirect(reverse("admin:tasks_task_change", args=[obj.pk]))

    def save_model(self, request: HttpRequest, obj: Task, form: forms.ModelForm, change: bool) -> None:
        """Nothing to do: ``save_form`` already saved the task through the service."""

    def save_related(self, request: HttpRequest, form: forms.ModelForm, formsets: Any, change: bool) -> None:
        """A task has no many-to-many fields and no editable inlines."""

    # --- per-task buttons -------------------------------------------------------

    def render_change_form(
        self,
        request: HttpRequest,
        context: dict[str, Any],
        add: bool = False,
        change: bool = False,
        form_url: str = "",
        obj: Task | None = None,
    ) -> HttpResponse:
        if obj is not None and roles.can_operate(request.user):
            context["task_actions"] = [
                (action.value, action.label) for action in TaskAction if target_state(action, obj.state)
            ]
            if verdicts.overridable(obj):
                context["override_decisions"] = [(d, d.replace("_", " ")) for d in verdicts.OVERRIDE_DECISIONS]
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)

    def get_urls(self) -> list[URLPattern]:
        info = self.opts.app_label, self.opts.model_name
        act = self.admin_site.admin_view(self.task_act_view)  # staff login and CSRF protection
        return [path("<uuid:object_id>/act/", act, name="{}_{}_act".format(*info)), *super().get_urls()]

    @method_decorator(require_POST)
    def task_act_view(self, request: HttpRequest, object_id: uuid.UUID) -> HttpResponse:
        if not roles.can_operate(request.user):
            raise PermissionDenied
        form = TaskActForm(request.POST)
        if not form.is_valid():
            return HttpResponseBadRequest("Unknown action or reason too long.")
        action = form.cleaned_data["action"]
        reason = form.cleaned_data["reason"].strip()
        try:
            if action == "override":
                task = verdicts.task_override(
                    task_id=object_id,
                    actor=request.user,
                    decision=form.cleaned_data["decision"],
                    reason=reason,
                    guidance=form.cleaned_data["guidance"],
                )
            else:
                task = services.ACTION_SERVICES[action](task_id=object_id, actor=request.user, reason=reason)
        except TaskNotFound as exc:
            raise Http404(str(exc)) from exc
        except DomainError as exc:
            self.message_user(request, str(exc), messages.ERROR)
        else:
            self.message_user(request, f"{action.capitalize()} applied: the task is now {task.state}.")
        info = self.opts.app_label, self.opts.model_name
        return HttpResponseRedirect(reverse("admin:{}_{}_change".format(*info), args=[object_id]))
