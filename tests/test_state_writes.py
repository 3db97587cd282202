"""Nothing outside the one transition path assigns ``Task.state`` (an AST scan of the apps).

The scan flags, in every module of the project's apps except ``tasks/transitions.py``:
an assignment to an attribute named ``state`` (``task.state = ...``, ``+=``, annotated),
``setattr(x, "state", ...)``, and a ``state=`` keyword (or a ``"state"`` key of a ``**``
dict) in a call that writes rows: ``update``, ``create``, ``bulk_create``,
``get_or_create``, ``update_or_create``, ``set`` of the write path, or a ``Task(...)``
constructor. Reads (``filter(state=...)``) are fine. Migrations are history and are skipped.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APPS = ["tasks", "audit", "chat", "metrics", "security", "config"]
ALLOWED = {Path("tasks/transitions.py")}
# Other things called "state" (not a task's), each by its exact line.
NOT_A_TASK = {
    ("tasks/dispatch/breakers.py", "self._storage.state = new"),  # a circuit breaker's state
    ("tasks/exceptions.py", "self.state = state"),  # the state an IllegalTransition names
}
WRITE_CALLS = {"update", "create", "bulk_create", "get_or_create", "update_or_create", "set", "Task"}


def state_writes(source: str) -> list[int]:
    """Line numbers of the state writes in ``source``."""
    found: list[int] = []
    for node in ast.walk(ast.parse(source)):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Attribute) and leaf.attr == "state" and isinstance(leaf.ctx, ast.Store):
                    found.append(node.lineno)
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == "setattr" and len(node.args) >= 2:
                key = node.args[1]
                if isinstance(key, ast.Constant) and key.value == "state":
                    found.append(node.lineno)
            if name in WRITE_CALLS:
                for keyword in node.keywords:
                    if keyword.arg == "state" or (
                        keyword.arg is None
                        and isinstance(keyword.value, ast.Dict)
                        and any(isinstance(k, ast.Constant) and k.value == "state" for k in keyword.value.keys)
                    ):
                        found.append(node.lineno)
    return sorted(set(found))


def test_no_module_outside_the_transition_path_assigns_task_state() -> None:
    offenders = []
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            relative = path.relative_to(ROOT)
            if "migrations" in relative.parts or relative in ALLOWED:
                continue
            lines = path.read_text().splitlines()
            for line in state_writes(path.read_text()):
                if (str(relative), lines[line - 1].strip()) not in NOT_A_TASK:
                    offenders.append(f"{relative}:{line}: {lines[line - 1].strip()}")
    assert offenders == []


def test_the_scan_finds_each_kind_of_state_write() -> None:
    source = """
task.state = "running"
self.task.state += "x"
obj.state: str = "y"
setattr(task, "state", "queued")
Task.objects.filter(pk=1).update(state="failed")
Task.objects.create(title="t", state="completed")
Task(title="t", state="queued")
writes.set(task, **{"state": "queued"})
Task.objects.filter(state="queued").count()
print(task.state)
"""
    assert state_writes(source) == [2, 3, 4, 5, 6, 7, 8, 9]
