"""The task state machine, driven by random action sequences through the services.

The expected transitions are written out here independently of
``tasks.states`` so that a wrong entry in the production table is caught.
"""

from __future__ import annotations

import pytest
from django.db import transaction
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from audit.models import AuditRecord
from tasks import services, transitions
from tasks.exceptions import IllegalTransition
from tasks.models import Task, TaskEvent

EXPECTED = {
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
ACTIONS = ["cancel", "pause", "resume", "retry"]
ALL_STATES = ["queued", "running", "paused", "canceling", "awaiting_review", "completed", "failed", "canceled"]
# States only the dispatcher and verdicts (not built yet) lead to; the machine
# places tasks in them directly so operator actions are tried from every state.
DISPATCHER_STATES = ["running", "canceling", "awaiting_review", "completed", "failed"]


class TaskLifecycle(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        from django.contrib.auth.models import User

        self.user = User.objects.get(username="otto")
        self.model: dict[str, str] = {}
        self.transitions: dict[str, int] = {}

    @rule()
    def create(self) -> None:
        task = services.task_create(spec={"title": f"task {len(self.model)}"}, actor=self.user)
        self.model[str(task.pk)] = "queued"
        self.transitions[str(task.pk)] = 0

    @rule(data=st.data(), action=st.sampled_from(ACTIONS))
    def act(self, data: st.DataObject, action: str) -> None:
        if not self.model:
            return
        task_id = data.draw(st.sampled_from(sorted(self.model)))
        current = self.model[task_id]
        expected = EXPECTED.get((action, current))
        service = services.ACTION_SERVICES[action]
        if expected is None:
            with pytest.raises(IllegalTransition) as info:
                service(task_id=task_id, actor=self.user, reason="random walk")
            assert info.value.state == current
        else:
            task = service(task_id=task_id, actor=self.user, reason="random walk")
            assert task.state == expected
            self.model[task_id] = expected
            self.transitions[task_id] += 1

    @rule(data=st.data(), state=st.sampled_from(DISPATCHER_STATES))
    def dispatcher_moves(self, data: st.DataObject, state: str) -> None:
        if not self.model:
            return
        task_id = data.draw(st.sampled_from(sorted(self.model)))
        Task.objects.filter(pk=task_id).update(state=state)
        self.model[task_id] = state

    @invariant()
    def states_match_the_model(self) -> None:
        actual = dict(Task.objects.filter(pk__in=list(self.model)).values_list("id", "state"))
        assert {str(k): v for k, v in actual.items()} == self.model
        assert set(actual.values()) <= set(ALL_STATES)

    @invariant()
    def every_transition_has_one_event_and_one_audit_record(self) -> None:
        for task_id, count in self.transitions.items():
            seqs = list(TaskEvent.objects.filter(task_id=task_id).order_by("seq").values_list("seq", flat=True))
            assert seqs == list(range(1, count + 2))  # +1: the "created" event
            audit = AuditRecord.objects.filter(resource_type="task", resource_id=task_id)
            assert audit.filter(action="task.create").count() == 1
            assert audit.exclude(action="task.create").count() == count


@pytest.mark.django_db
def test_random_action_sequences_never_reach_an_illegal_state(operator) -> None:
    run_state_machine_as_test(
        TaskLifecycle,
        settings=settings(
            max_examples=40,
            stateful_step_count=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.mark.django_db
def test_a_failure_mid_transition_writes_nothing(operator, make_task, monkeypatch) -> None:
    task = make_task()
    events_before = TaskEvent.objects.count()
    audit_before = AuditRecord.objects.count()

    def broken_audit(entries):
        raise RuntimeError("disk full")

    monkeypatch.setattr(transitions, "audit_records", broken_audit)
    with pytest.raises(RuntimeError, match="disk full"):
        services.task_cancel(task_id=task.pk, actor=operator, reason="stop")

    task.refresh_from_db()
    assert task.state == "queued"
    assert task.cancel_requested_at is None
    assert task.event_seq == 1
    assert TaskEvent.objects.count() == events_before
    assert AuditRecord.objects.count() == audit_before


@pytest.mark.django_db
def test_a_failed_create_leaves_no_task(operator, monkeypatch) -> None:
    def broken_audit(entries):
        raise RuntimeError("disk full")

    monkeypatch.setattr(transitions, "audit_records", broken_audit)
    with pytest.raises(RuntimeError):
        services.task_create(spec={"title": "never"}, actor=operator)
    assert not Task.objects.exists()
    assert not TaskEvent.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_audit_function_refuses_to_run_outside_a_transaction() -> None:
    from audit.services import audit_record

    assert not transaction.get_connection().in_atomic_block
    with pytest.raises(RuntimeError, match=r"inside transaction\.atomic"):
        audit_record(actor="system", action="task.create", resource_type="task", resource_id=1)
    assert not AuditRecord.objects.exists()
