"""Review commands: human overrides of a verdict, waivers, and commit provenance."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from agency.context import TASK_ID, ResourceId, State, fetch_pages, json_option, more_hint, paging_options, pass_state
from agency.errors import CheckFailed, ExitCode, NotFound, UsageProblem
from agency.render import field_rows, print_json, table, truncate, when

# --- override ---------------------------------------------------------------------


@click.group()
def override() -> None:
    """Decide a task's verdict by hand.

    Approve, reject or request changes, for a task awaiting review, or one whose
    automatic verdict failed it. The reason (10 characters or more) is kept with the
    verdict and in the audit trail.
    """


def _override_command(name: str, decision: str, summary: str, *, guidance: bool = False) -> click.Command:
    def command(state: State, task_id: str, reason: str, guidance_text: str = "") -> int:
        body = {"action": "override", "decision": decision, "reason": reason}
        if guidance_text:
            body["guidance"] = guidance_text
        task = state.client().post(f"/api/v1/tasks/{task_id}/actions", body)
        verdict = task.get("verdict") or {}
        state.output(
            task,
            lambda t: (
                f"Task {t['id']} is {t['state']}: verdict {verdict.get('decision')} {verdict.get('id', '')}".rstrip()
            ),
        )
        return ExitCode.OK

    command = pass_state(command)
    command = json_option(command)
    if guidance:
        command = click.option(
            "--guidance", "guidance_text", default="", help="What to change; added to the spec for the next attempt."
        )(command)
    command = click.option("--reason", required=True, help="Why (at least 10 characters).")(command)
    command = click.argument("task_id", type=TASK_ID)(command)
    return click.command(name, help=summary)(command)


override.add_command(_override_command("approve", "approve", "Approve the task's result: it completes."))
override.add_command(_override_command("reject", "reject", "Reject the task's result: it fails."))
override.add_command(
    _override_command(
        "request-changes",
        "request_changes",
        "Request changes: the task goes back to the queue with your guidance added to its spec.",
        guidance=True,
    )
)


# --- waivers ----------------------------------------------------------------------

WAIVER_ID = ResourceId("waiver")
_DURATION = re.compile(r"^(\d+)\s*([mhdw])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@click.group()
def waiver() -> None:
    """Request, decide and list waivers.

    A waiver is a time-boxed exemption from named gates, for one task or all. Operators
    request them; an admin other than the requester approves or rejects; admins revoke.
    """


def _waiver_table(page: dict[str, Any]) -> str:
    rows = page.get("results") or []
    if not rows:
        return "No waivers."
    return table(
        ["ID", "STATUS", "GATES", "TASK", "EXPIRES", "BY", "TITLE"],
        [
            [
                w.get("id"),
                w.get("status") + (" (active)" if w.get("active") else ""),
                ",".join(w.get("gates") or []),
                w.get("task") or "all tasks",
                when(w.get("expires_at")),
                w.get("requested_by") or "-",
                truncate(w.get("title"), 40),
            ]
            for w in rows
        ],
    )


def _waiver_details(w: dict[str, Any]) -> str:
    decided = None
    if w.get("decided_at"):
        decided = f"{when(w['decided_at'])} by {w.get('decided_by') or 'a deleted user'}"
        if w.get("decision_note"):
            decided += f": {w['decision_note']}"
    revoked = None
    if w.get("revoked_at"):
        revoked = f"{when(w['revoked_at'])} by {w.get('revoked_by') or 'a deleted user'}: {w.get('revoke_reason', '')}"
    return field_rows(
        [
            ("Waiver", w.get("id")),
            ("Title", w.get("title")),
            ("Status", w.get("status") + (" (active: waiving its gates now)" if w.get("active") else "")),
            ("Gates", ", ".join(w.get("gates") or [])),
            ("Task", w.get("task") or "all tasks"),
            ("Reason", w.get("reason")),
            ("Justification", truncate(w.get("justification"), 300)),
            ("Expires", when(w.get("expires_at"))),
            ("Requested", f"{when(w.get('created_at'))} by {w.get('requested_by') or 'a deleted user'}"),
            ("Decided", decided),
            ("Revoked", revoked),
        ]
    )


@waiver.command("list")
@click.option(
    "--status",
    "statuses",
    multiple=True,
    metavar="STATUS",
    help="pending, approved, rejected, revoked, expired (repeatable).",
)
@click.option("--task", "task_id", type=TASK_ID, help="Waivers of this task.")
@click.option("--gate", help="placeholders, scope, budget or acceptance.")
@paging_options(default_size=50)
@json_option
@pass_state
def waiver_list(
    state: State,
    statuses: tuple[str, ...],
    task_id: str | None,
    gate: str | None,
    page_size: int,
    cursor: str | None,
    all_pages: bool,
) -> int:
    """List waivers, newest first."""
    params = {"status": list(statuses), "task": task_id, "gate": gate, "page_size": page_size}
    page, next_cursor = fetch_pages(state.client(), "/api/v1/waivers", params, cursor=cursor, all_pages=all_pages)
    state.output(page, _waiver_table)
    if not state.json:
        more_hint(next_cursor)
    return ExitCode.OK


@waiver.command("show")
@click.argument("waiver_id", type=WAIVER_ID)
@json_option
@pass_state
def waiver_show(state: State, waiver_id: str) -> int:
    """Show one waiver."""
    state.output(state.client().get(f"/api/v1/waivers/{waiver_id}"), _waiver_details)
    return ExitCode.OK


def _expiry(expires_at: str | None, expires_in: str | None) -> str:
    if bool(expires_at) == bool(expires_in):
        raise UsageProblem("give one of --expires-at TIME or --expires-in DURATION (e.g. 7d)")
    if expires_at:
        return expires_at
    match = _DURATION.match(expires_in.strip().lower())
    if not match:
        raise UsageProblem(
            f"--expires-in takes a number and a unit m, h, d or w (30m, 12h, 7d, 2w), got {expires_in!r}"
        )
    delta = timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})
    return (datetime.now(UTC) + delta).isoformat(timespec="seconds")


@waiver.command("request")
@click.option("--title", required=True, help="What the waiver is for.")
@click.option(
    "--reason",
    required=True,
    help="emergency_hotfix, legacy_integration, experimental_feature, third_party_constraint, "
    "performance_critical, security_patch, infrastructure_limitation or other.",
)
@click.option(
    "--gate",
    "gates",
    multiple=True,
    required=True,
    help="A gate to waive: placeholders, scope, budget, acceptance (repeatable).",
)
@click.option("--justification", required=True, help="Why it is safe (at least 20 characters).")
@click.option("--expires-at", metavar="TIME", help="When it ends, ISO 8601 (at most 90 days ahead).")
@click.option("--expires-in", metavar="DURATION", help="Or how long it lasts: 30m, 12h, 7d, 2w.")
@click.option("--task", "task_id", type=TASK_ID, help="The one task it covers (default: every task).")
@json_option
@pass_state
def waiver_request(
    state: State,
    title: str,
    reason: str,
    gates: tuple[str, ...],
    justification: str,
    expires_at: str | None,
    expires_in: str | None,
    task_id: str | None,
) -> int:
    """Request a waiver.

    It is pending until an admin other than you approves it.

    \b
    Example:
      agency waiver request --title "Vendored parser" --reason legacy_integration \\
        --gate placeholders --justification "Upstream code, reviewed separately." --expires-in 7d
    """
    body = {
        "title": title,
        "reason": reason,
        "gates": [g.strip() for value in gates for g in value.split(",") if g.strip()],
        "justification": justification,
        "expires_at": _expiry(expires_at, expires_in),
        "task": task_id,
    }
    created = state.client().post("/api/v1/waivers", body)
    state.output(created, lambda w: f"Requested waiver {w['id']} ({w['status']}); an admin other than you approves it.")
    return ExitCode.OK


def _decision_command(verb: str, summary: str) -> click.Command:
    @waiver.command(verb, help=summary)
    @click.argument("waiver_id", type=WAIVER_ID)
    @click.option("--note", default="", help="A note kept with the decision.")
    @json_option
    @pass_state
    def command(state: State, waiver_id: str, note: str) -> int:
        decided = state.client().post(f"/api/v1/waivers/{waiver_id}/{verb}", {"note": note})
        state.output(decided, lambda w: f"Waiver {w['id']} is {w['status']}.")
        return ExitCode.OK

    return command


_decision_command("approve", "Approve a pending waiver (admin; not your own request).")
_decision_command("reject", "Reject a pending waiver (admin; not your own request).")


@waiver.command("revoke")
@click.argument("waiver_id", type=WAIVER_ID)
@click.option("--reason", required=True, help="Why (at least 10 characters).")
@json_option
@pass_state
def waiver_revoke(state: State, waiver_id: str, reason: str) -> int:
    """Revoke a pending or approved waiver (admin)."""
    revoked = state.client().post(f"/api/v1/waivers/{waiver_id}/revoke", {"reason": reason})
    state.output(revoked, lambda w: f"Waiver {w['id']} is {w['status']}.")
    return ExitCode.OK


# --- provenance -------------------------------------------------------------------

_TRAILER = re.compile(r"^(Agency-Task|Agency-Verdict):\s*(\S+)\s*$", re.MULTILINE)
_VERDICT_ID = re.compile(r"^CAWS-VERDICT-[0-9a-fA-F-]{36}$")


@click.group()
def provenance() -> None:
    """Commit trailers of verdicts, and their check.

    Print a task's trailer lines, or verify the trailers of a commit message
    (docs/provenance.md).
    """


@provenance.command("trailer")
@click.argument("task_id", type=TASK_ID)
@json_option
@pass_state
def provenance_trailer(state: State, task_id: str) -> int:
    """Print a task's commit trailer lines.

    The Agency-Task: and Agency-Verdict: lines of its current verdict; exit code 3 when it
    has no verdict yet.
    """
    record = state.client().get(f"/api/v1/tasks/{task_id}/provenance")
    state.output(record, lambda r: "\n".join(r.get("trailers") or []))
    return ExitCode.OK


@provenance.command("verify")
@click.argument("message_file", type=click.File("r", encoding="utf-8"))
@json_option
@pass_state
def provenance_verify(state: State, message_file: Any) -> int:
    """Check a commit message's trailers.

    Exit 0 only if they name the task's current verdict, it is an approval, and the task is completed.
    MESSAGE_FILE is the commit message (- for stdin). It needs exactly one Agency-Task:
    and one Agency-Verdict: trailer; the verdict must be the task's current one (a later
    override supersedes it) and an approval of a completed task (a risk tier 1 task's
    automatic approval waits for a reviewer). Anything else exits 1 and says why.

    \b
    As a git hook, in .git/hooks/commit-msg:
      #!/bin/sh
      exec agency provenance verify "$1"
    """
    message = message_file.read()
    found: dict[str, list[str]] = {}
    for key, value in _TRAILER.findall(message):
        found.setdefault(key, []).append(value)
    tasks, verdict_ids = found.get("Agency-Task", []), found.get("Agency-Verdict", [])
    if len(tasks) != 1 or len(verdict_ids) != 1:
        raise CheckFailed("the message needs exactly one Agency-Task: and one Agency-Verdict: trailer")
    verdict_id = verdict_ids[0]
    if not _VERDICT_ID.match(verdict_id):
        raise CheckFailed(f"{verdict_id} is not a verdict id (CAWS-VERDICT-<uuid>)")
    try:
        task_id = TASK_ID.convert(tasks[0], None, None)
    except click.BadParameter as exc:
        raise CheckFailed(f"Agency-Task: {exc.message}") from exc
    try:
        record = state.client().get(f"/api/v1/tasks/{task_id}/provenance")
    except NotFound as exc:
        raise CheckFailed(f"task {task_id}: {exc.message}", status=exc.status, body=exc.body) from exc
    if record.get("verdict_id", "").lower() != verdict_id.lower():
        raise CheckFailed(
            f"{verdict_id} is not the current verdict of task {task_id} (that is {record.get('verdict_id')})"
        )
    if record.get("decision") != "approved":
        raise CheckFailed(f"{verdict_id} is {record.get('decision')}, not approved")
    if record.get("task_state") != "completed":
        why = AWAITING_WHY if record.get("task_state") == "awaiting_review" else ""
        raise CheckFailed(f"task {task_id} is {record.get('task_state')}, not completed{why}")
    if state.json:
        print_json({"ok": True, **record})
    else:
        click.echo(f"ok: {record['verdict_id']} approved task {task_id}")
    return ExitCode.OK


AWAITING_WHY = ": its approval is the gates' recommendation until a reviewer approves it"
COMMANDS = [override, waiver, provenance]
