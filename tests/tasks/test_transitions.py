"""The one transition path, driven by random operator, dispatcher and verdict causes.

Every rule calls a real service (operator actions, overrides, claims, attempt reports,
lease reaping); none writes a state itself. After each step the machine checks what the
step published after commit against what it wrote: each "task changed" publication is a
legal (from, to, cause) of the table, has exactly one timeline entry (at its seq, with its
from and to) and exactly one audit record, and the task ends in the state the last
publication names. A step that is refused writes and publishes nothing.

Operator actions are also checked against an expected table written out here,
independently of ``tasks.states``, so that a wrong production entry is caught.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from audit.models import AuditRecord
from config.errors import DomainError
from security.principals import Principal
from tasks import services
from tasks.dispatch import claims, leases, reports
from tasks.dispatch.reports import AttemptReport
from tasks.models import Task, TaskEvent, Worker
from tasks.review import verdicts
from tasks.states import TERMINAL_STATES, TRANSITIONS, TaskState
from tasks.transitions import TaskChanged, task_changed

pytestmark = pytest.mark.django_db(transaction=True)

D = Principal.dispatcher("machine")
OPERATOR_EXPECTED = {
    ("cancel", "queued"): "canceled",
    ("cancel", "paused"): "canceled",
    ("cancel", "awaiting_review"): "canceled",
    ("cancel", "running"): "canceling",
    ("pause", "queued"): "paused",
    ("pause", "running"): "paused",
    ("resume", "paused"): "queued",
    ("retry", "failed"): "queued",
    ("retry", "canceled"): "queued",
}
RESULTS = {
    "completed": {"status": "completed", "output": "done", "files_modified": []},
    "placeholder": {
        "status": "completed",
        "output": "done",
        "files_modified": [
            {"path": "src/a.py", "operation": "create", "content": "def f():\n    raise NotImplementedError\n"}
        ],
    },
    "worker_failed": {"status": "failed", "error": "the model refused"},
}
REPORT_KINDS = ["completed", "placeholder", "worker_failed", "transport", "final", "stopped", "not_dispatched"]


class Published:
    def __init__(self) -> None:
        self.changes: list[TaskChanged] = []

    def __call__(self, sender: Any, change: TaskChanged, **kwargs: Any) -> None:
        self.changes.append(change)


class Lifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        from django.contrib.auth.models import User

        self.operator = User.objects.get(username="otto")
        # Each walk starts from an empty queue: tasks left by earlier walks would change what a
        # claim reads, and Hypothesis must be able to replay a walk exactly.
        Task.objects.all().delete()
        self.worker, _ = Worker.objects.get_or_create(name="machine", defaults={"base_url": "http://127.0.0.1:9"})
        self.published = Published()
        task_changed.connect(self.published, weak=False)
        self.tasks: list[str] = []

    def teardown(self) -> None:
        task_changed.disconnect(self.published)

    # -- the check every step goes through ---------------------------------------------
    def step(self, task_id: str, call: Any, *, may_refuse: bool = True) -> None:
        before = Task.objects.get(pk=task_id)
        events_before = TaskEvent.objects.filter(task_id=task_id).count()
        audit_before = AuditRecord.objects.filter(resource_type="task", resource_id=task_id).count()
        start = len(self.published.changes)
        try:
            call()
        except DomainError:
            assert may_refuse, "a dispatcher's decision must always be a legal transition"
            after = Task.objects.get(pk=task_id)
            assert after.state == before.state
            assert after.event_seq == before.event_seq
            assert TaskEvent.objects.filter(task_id=task_id).count() == events_before
            assert AuditRecord.objects.filter(resource_type="task", resource_id=task_id).count() == audit_before
            assert len(self.published.changes) == start
            return
        after = Task.objects.get(pk=task_id)
        mine = [c for c in self.published.changes[start:] if c.task_id == task_id]
        assert len(mine) == len(self.published.changes) - start  # one task per step
        new_events = list(TaskEvent.objects.filter(task_id=task_id, seq__gt=before.event_seq).order_by("seq"))
        assert [e.seq for e in new_events] == list(range(before.event_seq + 1, after.event_seq + 1))
        transitions = [e for e in new_events if "to" in e.data]
        assert [e.seq for e in transitions] == [c.seq for c in mine]
        state = before.state
        for change, event in zip(mine, transitions, strict=True):
            assert (change.from_state, change.to_state, change.cause) in TRANSITIONS
            assert change.from_state == state
            assert event.data["from"] == state
            assert event.data["to"] == change.to_state
            state = change.to_state
        assert after.state == state
        new_audit = AuditRecord.objects.filter(resource_type="task", resource_id=task_id).count() - audit_before
        assert new_audit == len(mine)

    def pick(self, data: st.DataObject, *states: str) -> str:
        """A task, mostly one in ``states`` when there is one (so walks get deep), sometimes any."""
        # In creation order, never by id: ids are random, and the walk must replay exactly.
        states_now = dict(Task.objects.filter(pk__in=self.tasks).values_list("pk", "state"))
        fitting = [t for t in self.tasks if states_now[uuid.UUID(t)] in states]
        if fitting and data.draw(st.integers(0, 9)) > 0:
            return data.draw(st.sampled_from(fitting))
        return data.draw(st.sampled_from(self.tasks))

    # -- rules -----------------------------------------------------------------------
    @initialize(tiers=st.lists(st.sampled_from([1, 3]), min_size=1, max_size=3))
    def create(self, tiers: list[int]) -> None:
        for tier in tiers:
            start = len(self.published.changes)
            task = services.task_create(
                spec={"title": "walk", "risk_tier": tier, "max_attempts": 2}, actor=self.operator
            )
            assert [(c.from_state, c.to_state, c.cause) for c in self.published.changes[start:]] == [
                ("", "queued", "create")
            ]
            self.tasks.append(str(task.pk))

    @rule(data=st.data(), action=st.sampled_from(["cancel", "pause", "resume", "retry"]))
    def operator_acts(self, data: st.DataObject, action: str) -> None:
        task_id = self.pick(
            data,
            *{
                "cancel": ["queued", "running", "paused", "awaiting_review"],
                "pause": ["queued", "running"],
                "resume": ["paused"],
                "retry": ["failed", "canceled"],
            }[action],
        )
        current = Task.objects.get(pk=task_id).state
        service = services.ACTION_SERVICES[action]
        self.step(task_id, lambda: service(task_id=task_id, actor=self.operator, reason="random walk"))
        expected = OPERATOR_EXPECTED.get((action, current), current)
        assert Task.objects.get(pk=task_id).state == expected

    @rule(data=st.data(), decision=st.sampled_from(["approve", "reject", "request_changes"]))
    def reviewer_overrides(self, data: st.DataObject, decision: str) -> None:
        task_id = self.pick(data, "awaiting_review", "failed")

        def override() -> None:
            verdicts.task_override(task_id=task_id, actor=self.operator, decision=decision, reason="a reviewer's call")

        self.step(task_id, override)

    @rule(data=st.data())
    def dispatcher_claims(self, data: st.DataObject) -> None:
        task_id = self.pick(data, "queued")
        Task.objects.filter(pk=task_id).update(run_after=None)  # backoff would only make the walk wait

        def claim() -> None:
            claims.task_claim(
                actor=D,
                limit=1,
                pick_worker=lambda t: self.worker if str(t.pk) == task_id else None,
                lease_s=30,
            )

        self.step(task_id, claim, may_refuse=False)

    @rule(data=st.data(), kind=st.sampled_from(REPORT_KINDS), stale=st.sampled_from([False, False, False, True]))
    def dispatcher_reports(self, data: st.DataObject, kind: str, stale: bool) -> None:
        task_id = self.pick(data, "running", "canceling")
        attempt = Task.objects.get(pk=task_id).attempt - (1 if stale else 0)
        if attempt < 1:
            return
        if kind in RESULTS:
            report = AttemptReport(task_id, attempt, "result", result=RESULTS[kind])
        elif kind in ("transport", "final"):
            report = AttemptReport(task_id, attempt, "failed", error="503", retryable=kind == "transport")
        else:
            report = AttemptReport(task_id, attempt, kind, error=kind)
        self.step(task_id, lambda: reports.apply_reports(actor=D, reports=[report]), may_refuse=False)

    @rule(data=st.data())
    def dispatcher_dies(self, data: st.DataObject) -> None:
        task_id = self.pick(data, "running", "canceling")
        # The lease runs out (its dispatcher died): a lease field, not the state.
        Task.objects.filter(pk=task_id, lease_expires_at__isnull=False).update(
            lease_expires_at=timezone.now() - timedelta(seconds=1)
        )
        self.step(task_id, lambda: leases.reap_expired_leases(actor=Principal.dispatcher("reaper")), may_refuse=False)

    @invariant()
    def tasks_are_in_known_states_and_finished_ones_hold_no_lease(self) -> None:
        for task in Task.objects.filter(pk__in=self.tasks):
            assert task.state in TaskState.values
            if task.state in TERMINAL_STATES:
                assert task.finished_at is not None
                assert task.lease_owner == ""


def test_random_causes_through_the_one_transition_path_reach_only_legal_states(operator) -> None:
    run_state_machine_as_test(
        Lifecycle,
        settings=settings(
            max_examples=60,
            stateful_step_count=40,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
    # Which rows a walk reaches is chance; the scripted test below covers every row for sure.


def test_a_rolled_back_transition_publishes_nothing(operator, make_task) -> None:
    task = make_task()
    published = Published()
    task_changed.connect(published, weak=False)
    try:

        def pause_then_fail() -> None:
            with transaction.atomic():
                services.task_pause(task_id=task.pk, actor=operator, reason="hold")
                raise RuntimeError("a later failure in the same transaction")

        with pytest.raises(RuntimeError, match="later failure"):
            pause_then_fail()
        assert published.changes == []
        task.refresh_from_db()
        assert task.state == "queued"
        services.task_pause(task_id=task.pk, actor=operator, reason="hold")
        assert [(c.from_state, c.to_state, c.cause, c.seq) for c in published.changes] == [
            ("queued", "paused", "pause", 2)
        ]
    finally:
        task_changed.disconnect(published)


def test_an_illegal_transition_is_a_409_error_naming_the_state(operator, make_task) -> None:
    from tasks.exceptions import IllegalTransition

    task = make_task()
    with pytest.raises(IllegalTransition) as caught:
        services.task_resume(task_id=task.pk, actor=operator)
    assert caught.value.http_status == 409
    assert caught.value.as_dict() == {
        "detail": "Cannot resume a task that is queued.",
        "code": "illegal_transition",
        "action": "resume",
        "state": "queued",
    }


# -- every row of the table, scripted ------------------------------------------------------


def _reach(state: str, operator: Any, worker: Worker, *, judged: bool, tier: int) -> Task:
    """A task brought to ``state`` through the services only (``judged``: a failed task that a
    verdict failed, so that it may be overridden)."""
    task = services.task_create(spec={"title": "row", "risk_tier": tier, "max_attempts": 1}, actor=operator)
    if state == "queued":
        return task
    if state == "canceled":
        return services.task_cancel(task_id=task.pk, actor=operator)
    claims.task_claim(actor=D, limit=10, pick_worker=lambda t: worker if t.pk == task.pk else None, lease_s=30)
    if state == "paused":
        return services.task_pause(task_id=task.pk, actor=operator)
    if state == "canceling":
        return services.task_cancel(task_id=task.pk, actor=operator)
    if state in ("awaiting_review", "completed"):
        result = RESULTS["completed"]
    elif judged:
        result = RESULTS["placeholder"]
    else:
        result = None
    if state != "running":
        report = (
            AttemptReport(str(task.pk), 1, "result", result=result)
            if result
            else AttemptReport(str(task.pk), 1, "failed", error="503", retryable=False)
        )
        reports.apply_reports(actor=D, reports=[report])
    task.refresh_from_db()
    assert task.state == state
    return task


def _cause(task: Task, cause: str, to: str, operator: Any) -> None:
    if cause in ("cancel", "pause", "resume", "retry"):
        services.ACTION_SERVICES[cause](task_id=task.pk, actor=operator, reason="scripted")
    elif cause == "override":
        decision = {"completed": "approve", "failed": "reject", "queued": "request_changes"}[to]
        verdicts.task_override(task_id=task.pk, actor=operator, decision=decision, reason="a reviewer's call")
    elif cause == "claim":
        claims.task_claim(actor=D, limit=10, pick_worker=lambda t: Worker.objects.get(name="rows"), lease_s=30)
    elif cause in ("lease_expired",):
        if to == "failed":
            Task.objects.filter(pk=task.pk).update(max_attempts=task.attempt)
        else:
            Task.objects.filter(pk=task.pk).update(max_attempts=task.attempt + 1)
        Task.objects.filter(pk=task.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
        leases.reap_expired_leases(actor=D)
    else:
        if cause == "verdict" and to == "awaiting_review":
            kind = "completed"
        else:
            kind = {("verdict", "completed"): "completed", ("verdict", "failed"): "placeholder"}.get((cause, to))
        if cause == "requeue":
            Task.objects.filter(pk=task.pk).update(max_attempts=task.attempt + 1)
        if kind:
            report = AttemptReport(str(task.pk), task.attempt, "result", result=RESULTS[kind])
        elif cause == "cancel_confirmed":
            report = AttemptReport(str(task.pk), task.attempt, "stopped", error="canceled")
        else:
            report = AttemptReport(str(task.pk), task.attempt, "failed", error="503", retryable=cause == "requeue")
        reports.apply_reports(actor=D, reports=[report])


@pytest.mark.parametrize(
    ("frm", "to", "cause"), sorted(t for t in TRANSITIONS if t[2] != "create"), ids=lambda v: str(v) or "new"
)
def test_every_row_of_the_table_writes_one_event_one_audit_record_and_one_publication(
    operator, frm: str, to: str, cause: str
) -> None:
    worker = Worker.objects.create(name="rows", base_url="http://127.0.0.1:9")
    tier = 1 if "awaiting_review" in (frm, to) else 3
    task = _reach(frm, operator, worker, judged=frm == "failed" and cause == "override", tier=tier)
    published = Published()
    task_changed.connect(published, weak=False)
    try:
        events = task.event_seq
        audit = AuditRecord.objects.filter(resource_type="task", resource_id=task.pk).count()
        _cause(task, cause, to, operator)
    finally:
        task_changed.disconnect(published)
    task.refresh_from_db()
    assert task.state == to
    assert [(c.from_state, c.to_state, c.cause) for c in published.changes] == [(frm, to, cause)]
    moved = TaskEvent.objects.filter(task=task, seq__gt=events, data__has_key="to")
    assert [(e.seq, e.data["from"], e.data["to"]) for e in moved] == [(published.changes[0].seq, frm, to)]
    assert AuditRecord.objects.filter(resource_type="task", resource_id=task.pk).count() == audit + 1
