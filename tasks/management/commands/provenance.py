"""Verdict provenance for commits.

    python manage.py provenance trailer <task-id>      # prints the commit trailer lines
    python manage.py provenance verify <message-file>  # exit 0 only if the trailers name an approved verdict

``verify`` is meant for a git ``commit-msg`` hook (see docs/provenance.md):
the trailers must name an existing task and that task's current verdict, that
verdict must be an approval, and the task must be completed (a risk tier 1
task's automatic approval waits for a reviewer in ``awaiting_review``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from tasks.exceptions import TaskNotFound
from tasks.models import Verdict, VerdictDecision
from tasks.review import verdicts
from tasks.selectors import task_get
from tasks.states import TaskState

_TRAILER = re.compile(r"^(Agency-Task|Agency-Verdict):\s*(\S+)\s*$", re.MULTILINE)
_VERDICT_ID = re.compile(r"^CAWS-VERDICT-([0-9a-f-]{36})$")
# Why an approved verdict of a task that is not completed names nothing a commit may claim.
_WHY = {TaskState.AWAITING_REVIEW: "its approval is the gates' recommendation until a reviewer approves it"}


class Command(BaseCommand):
    help = "Print a task's commit trailers, or verify the trailers of a commit message."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="verb", required=True)
        trailer = sub.add_parser("trailer", help="Print the commit trailer lines of a task's current verdict.")
        trailer.add_argument("task")
        verify = sub.add_parser("verify", help="Exit 0 only if the message's trailers name an approved verdict.")
        verify.add_argument("message_file")

    def handle(self, *args: Any, verb: str, **options: Any) -> None:
        if verb == "trailer":
            self.trailer(options["task"])
        else:
            self.verify(options["message_file"])

    def trailer(self, task_id: str) -> None:
        try:
            task = task_get(task_id=task_id)
        except TaskNotFound as exc:
            raise CommandError(str(exc)) from exc
        record = verdicts.provenance(task)
        if record is None:
            raise CommandError(f"Task {task_id} has no verdict yet.")
        self.stdout.write("\n".join(record["trailers"]))

    def verify(self, message_file: str) -> None:
        try:
            message = Path(message_file).read_text(encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"cannot read {message_file}: {exc.strerror}") from exc
        found: dict[str, list[str]] = {}
        for key, value in _TRAILER.findall(message):
            found.setdefault(key, []).append(value)
        tasks, verdict_ids = found.get("Agency-Task", []), found.get("Agency-Verdict", [])
        if len(tasks) != 1 or len(verdict_ids) != 1:
            raise CommandError("the message needs exactly one Agency-Task: and one Agency-Verdict: trailer")
        match = _VERDICT_ID.match(verdict_ids[0])
        if not match:
            raise CommandError(f"{verdict_ids[0]} is not a verdict id (CAWS-VERDICT-<uuid>)")
        try:
            task = task_get(task_id=tasks[0])
        except TaskNotFound as exc:
            raise CommandError(str(exc)) from exc
        verdict = Verdict.objects.filter(pk=match.group(1), task=task).first()
        if verdict is None:
            raise CommandError(f"{verdict_ids[0]} is not a verdict of task {task.pk}")
        current = verdicts.latest_verdict(task)
        if current is None or current.pk != verdict.pk:
            raise CommandError(f"{verdict_ids[0]} has been superseded by {current.provenance_id}")
        if verdict.decision != VerdictDecision.APPROVED:
            raise CommandError(f"{verdict_ids[0]} is {verdict.decision}, not approved")
        if task.state != TaskState.COMPLETED:
            raise CommandError(
                f"task {task.pk} is {task.state}, not completed: {_WHY.get(task.state, '')}".rstrip(": ")
            )
        self.stdout.write(f"ok: {verdict.provenance_id} approved task {task.pk}")
