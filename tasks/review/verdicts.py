"""Verdicts: the automatic one after the gates, and human overrides.

The automatic verdict runs inside the transaction that applies a completed
result (:mod:`tasks.dispatch.reports`): gates, then active waivers drop the
violations of the gates they cover, then the score and the blocking
severities decide. Risk tier 1 always waits in ``awaiting_review`` for a
human. An override (approve, reject, request changes) needs a reason of at
least ten characters; request changes puts the task back in the queue with
the reviewer's guidance added to its spec.

Each verdict is one decision, so it has one audit record (``task.verdict`` or
``task.override``), which is also the record of the state change it causes.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.db import transaction

from security import roles
from security.principals import require
from security.sandbox_audit import task_file_reader
from tasks.dispatch import bus
from tasks.exceptions import IllegalTransition, InvalidOverride
from tasks.models import EventType, Task, Verdict, VerdictDecision
from tasks.review.gates.checks import BLOCKING, TIER_THRESHOLDS, Violation, run_gates, score
from tasks.review.waiver_selectors import active_waivers_for
from tasks.services import lock_task
from tasks.states import Cause, TaskState
from tasks.transitions import TaskWrites, transition

OVERRIDE_DECISIONS = {
    "approve": (VerdictDecision.APPROVED, TaskState.COMPLETED),
    "reject": (VerdictDecision.REJECTED, TaskState.FAILED),
    "request_changes": (VerdictDecision.CHANGES_REQUESTED, TaskState.QUEUED),
}
OVERRIDABLE_STATES = (TaskState.AWAITING_REVIEW, TaskState.FAILED)
MIN_REASON = 10


def automatic_verdict(*, task: Task, result: dict[str, Any]) -> tuple[Verdict, str]:
    """Gate ``result`` and decide. ``task`` is locked by the caller, who applies the state returned
    and saves the verdict (unsaved here, so that a batch of results writes its verdicts at once)."""
    # The gates read the workspace copy of a diff's file, when the worker applied it there.
    violations = run_gates(spec=task.spec, result=result, read_file=task_file_reader(task_id=str(task.pk)))
    waivers = active_waivers_for(task_id=task.pk, gates=sorted({v.gate for v in violations})) if violations else []
    kept: list[Violation] = []
    waived: list[dict[str, Any]] = []
    for violation in violations:
        waiver = next((w for w in waivers if violation.gate in w.gates), None)
        if waiver is None:
            kept.append(violation)
        else:
            waived.append({**violation.to_dict(), "waiver": str(waiver.pk), "waiver_title": waiver.title})
    tier = task.risk_tier
    threshold = TIER_THRESHOLDS[tier]
    value = score(kept)
    blocking = [v for v in kept if v.severity in BLOCKING]
    if blocking or value < threshold:
        decision = VerdictDecision.CHANGES_REQUESTED
        why = f"{len(blocking)} blocking violation(s); score {value} against {threshold} for risk tier {tier}"
    else:
        decision = VerdictDecision.APPROVED
        why = f"no blocking violation; score {value} meets {threshold} for risk tier {tier}"
    if waived:
        why += f"; {len(waived)} violation(s) waived"
    verdict = Verdict(
        task=task,
        attempt=task.attempt,
        decision=decision,
        automatic=True,
        reason=why,
        score=value,
        threshold=threshold,
        violations=[v.to_dict() for v in kept],
        waived=waived,
    )
    task.violations = [{**v.to_dict(), "waived_by": None} for v in kept] + [
        {**{k: w[k] for k in ("gate", "rule", "severity", "file", "line", "message")}, "waived_by": w["waiver"]}
        for w in waived
    ]
    if tier == 1:
        new_state = TaskState.AWAITING_REVIEW
    elif decision == VerdictDecision.APPROVED:
        new_state = TaskState.COMPLETED
    else:
        new_state = TaskState.FAILED
    return verdict, new_state


def verdict_summary(verdict: Verdict) -> dict[str, Any]:
    """What the timeline and the audit record say about a verdict."""
    return {
        "verdict": verdict.provenance_id,
        "decision": verdict.decision,
        "automatic": verdict.automatic,
        "score": verdict.score,
        "threshold": verdict.threshold,
        "violations": len(verdict.violations),
        "waived": [{"rule": w["rule"], "waiver": w["waiver"]} for w in verdict.waived],
    }


def overridable(task: Task) -> bool:
    """Whether a human verdict may be given on ``task`` now (the API, the admin buttons and the
    service ask this one question).

    Awaiting review: yes. Failed: only when its latest attempt produced a result that a verdict
    judged (the gates failed it, or a reviewer rejected it). A task whose latest attempt failed
    without a result has nothing to approve, whatever earlier attempts were judged.
    """
    if task.state == TaskState.AWAITING_REVIEW:
        return True
    if task.state != TaskState.FAILED or not task.result:
        return False
    return task.verdicts.filter(attempt=task.attempt).exists()


def task_override(*, task_id: uuid.UUID | str, actor: Any, decision: str, reason: str, guidance: str = "") -> Task:
    """A human verdict on a task awaiting review (or failed by its gates)."""
    acting = require(actor, roles.can_operate, "override a verdict")
    reason = (reason or "").strip()
    if decision not in OVERRIDE_DECISIONS:
        raise InvalidOverride({"decision": [f"Must be one of {', '.join(OVERRIDE_DECISIONS)}."]})
    if len(reason) < MIN_REASON:
        raise InvalidOverride({"reason": [f"An override needs a reason of at least {MIN_REASON} characters."]})
    verdict_decision, new_state = OVERRIDE_DECISIONS[decision]
    with transaction.atomic():
        task = lock_task(task_id)
        if not overridable(task):
            why = "" if task.state not in OVERRIDABLE_STATES else " and its latest attempt has no judged result"
            raise IllegalTransition(
                action="override", state=task.state, message=f"Cannot override a task that is {task.state}{why}."
            )
        w = TaskWrites()
        verdict = Verdict(
            task=task,
            attempt=task.attempt,
            decision=verdict_decision,
            automatic=False,
            decided_by=acting.user_or_none(),
            reason=reason,
            violations=[v for v in task.violations if not v.get("waived_by")],
            waived=[v for v in task.violations if v.get("waived_by")],
        )
        w.verdict(verdict)
        fields: dict[str, Any] = {}
        if new_state == TaskState.QUEUED:
            note = {"by": acting.name or acting.actor, "at": w.now.isoformat(), "text": guidance or reason}
            spec = {**task.spec, "guidance": [*task.spec.get("guidance", []), note]}
            fields = {
                "spec": spec,
                "max_attempts": task.attempt + spec.get("max_attempts", 3),
                "finished_at": None,
                "error": "",
            }
        else:
            fields = {"finished_at": w.now}
        summary = verdict_summary(verdict)
        transition(
            w,
            task,
            to=new_state,
            cause=Cause.OVERRIDE,
            actor=acting,
            event=EventType.OVERRIDE,
            data={**summary, "actor": acting.actor, "reason": reason},
            audit_action="task.override",
            audit_data=summary,
            reason=reason,
            **fields,
        )
        w.flush()
        if new_state == TaskState.QUEUED:
            bus.publish({"kind": "work"})
    return task


def latest_verdict(task: Task) -> Verdict | None:
    return task.verdicts.order_by("-created_at").first()


def provenance(task: Task) -> dict[str, Any] | None:
    """The verdict provenance of a task and the commit trailer lines that name it."""
    verdict = latest_verdict(task)
    if verdict is None:
        return None
    return {
        "task_id": str(task.pk),
        # A commit may name the verdict only once the task is completed: a tier 1 task's
        # automatic approval is a recommendation until a human approves it (awaiting_review).
        "task_state": task.state,
        "verdict_id": verdict.provenance_id,
        "decision": verdict.decision,
        "automatic": verdict.automatic,
        "decided_by": verdict.decided_by.username if verdict.decided_by else None,
        "decided_at": verdict.created_at,
        "attempt": verdict.attempt,
        "score": verdict.score,
        "waived": verdict.waived,
        "trailers": [f"Agency-Task: {task.pk}", f"Agency-Verdict: {verdict.provenance_id}"],
    }
