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
from django.utils import timezone

from audit.services import actor_for_user, audit_record
from tasks.dispatch import bus
from tasks.exceptions import IllegalTransition, InvalidOverride
from tasks.models import Task, Verdict, VerdictDecision
from tasks.review.gates.checks import BLOCKING, TIER_THRESHOLDS, Violation, run_gates, score
from tasks.review.waiver_selectors import active_waivers_for
from tasks.services import append_event, lock_task
from tasks.states import TaskState

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
    violations = run_gates(spec=task.spec, result=result)
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


def task_override(*, task_id: uuid.UUID | str, user: Any, decision: str, reason: str, guidance: str = "") -> Task:
    """A human verdict on a task awaiting review (or failed by its gates)."""
    reason = (reason or "").strip()
    if decision not in OVERRIDE_DECISIONS:
        raise InvalidOverride({"decision": [f"Must be one of {', '.join(OVERRIDE_DECISIONS)}."]})
    if len(reason) < MIN_REASON:
        raise InvalidOverride({"reason": [f"An override needs a reason of at least {MIN_REASON} characters."]})
    verdict_decision, new_state = OVERRIDE_DECISIONS[decision]
    actor = actor_for_user(user)
    now = timezone.now()
    with transaction.atomic():
        task = lock_task(task_id)
        previous = task.state
        if previous not in OVERRIDABLE_STATES or (previous == TaskState.FAILED and not task.verdicts.exists()):
            raise IllegalTransition(action="override", state=previous)
        verdict = Verdict.objects.create(
            task=task,
            attempt=task.attempt,
            decision=verdict_decision,
            automatic=False,
            decided_by=user if getattr(user, "is_authenticated", False) else None,
            reason=reason,
            violations=[v for v in task.violations if not v.get("waived_by")],
            waived=[v for v in task.violations if v.get("waived_by")],
        )
        task.state = new_state
        task.updated_at = now
        fields = ["state", "updated_at", "event_seq"]
        if new_state == TaskState.QUEUED:
            note = {"by": getattr(user, "username", "system"), "at": now.isoformat(), "text": guidance or reason}
            task.spec = {**task.spec, "guidance": [*task.spec.get("guidance", []), note]}
            task.max_attempts = task.attempt + task.spec.get("max_attempts", 3)
            task.finished_at = None
            task.error = ""
            fields += ["spec", "max_attempts", "finished_at", "error"]
        else:
            task.finished_at = now
            fields.append("finished_at")
        data = {"from": previous, "to": new_state, **verdict_summary(verdict)}
        append_event(task, "override", {**data, "actor": actor, "reason": reason})
        task.save(update_fields=fields)
        audit_record(
            actor=actor, action="task.override", resource_type="task", resource_id=task.pk, data=data, reason=reason
        )
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
