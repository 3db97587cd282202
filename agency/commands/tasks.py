"""Task commands: submit, list, status, watch, events, pause, resume, cancel (abort), retry."""

from __future__ import annotations

from typing import Any

import click

from agency import specfile
from agency.context import TASK_ID, State, fetch_pages, json_option, more_hint, paging_options, pass_state
from agency.display import display_for
from agency.errors import ExitCode
from agency.render import bar, entry_line, print_json, table, task_details, truncate, when
from agency.watch import Watch

RECONNECT_HELP = "Seconds to keep retrying after the connection drops, before giving up with exit code 5."


def reconnect_option(f: Any) -> Any:
    return click.option(
        "--reconnect-timeout",
        type=click.FloatRange(0, 3600),
        default=30.0,
        show_default=True,
        metavar="SECONDS",
        help=RECONNECT_HELP,
    )(f)


def watch_task(state: State, task_id: str, reconnect_timeout: float, since: dict[str, Any] | None = None) -> ExitCode:
    watcher = Watch(state.client(), task_id, display_for(state.json), reconnect_timeout=reconnect_timeout)
    return watcher.run(since=since)


@click.command()
@click.argument("spec_file", required=False, metavar="[SPEC_FILE]")
@click.option("--title", help="What to do, in a line (required, here or in the file).")
@click.option("--description", help="The longer statement of the work.")
@click.option("--risk-tier", type=int, help="1 (highest: always reviewed by a human) to 3 (default).")
@click.option("--mode", help="feature (default), fix, refactor or chore.")
@click.option("--priority", help="low, medium (default), high or critical.")
@click.option("--capability", "capabilities", multiple=True, help="A capability the worker must have (repeatable).")
@click.option("--input", "input_json", metavar="JSON", help="The worker's input, a JSON object.")
@click.option("--kind", help="Set input.kind (the reference worker runs echo, sleep, fail, chat).")
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="Set input.KEY (VALUE as JSON if it parses: seconds=5). Repeatable.",
)
@click.option("--scope-in", multiple=True, metavar="PATH", help="A path the change may touch (repeatable).")
@click.option("--scope-out", multiple=True, metavar="PATH", help="A path the change must not touch (repeatable).")
@click.option("--max-files", type=int, help="Change budget: files.")
@click.option("--max-lines", type=int, help="Change budget: lines.")
@click.option("--timeout-s", type=int, help="Seconds an attempt may run (default 600).")
@click.option("--max-attempts", type=int, help="Attempts before the task fails (default 3).")
@click.option(
    "--watch", "then_watch", is_flag=True, help="Follow the task until it ends; the exit code is its outcome."
)
@reconnect_option
@json_option
@pass_state
def submit(
    state: State,
    spec_file: str | None,
    title: str | None,
    description: str | None,
    risk_tier: int | None,
    mode: str | None,
    priority: str | None,
    capabilities: tuple[str, ...],
    input_json: str | None,
    kind: str | None,
    params: tuple[str, ...],
    scope_in: tuple[str, ...],
    scope_out: tuple[str, ...],
    max_files: int | None,
    max_lines: int | None,
    timeout_s: int | None,
    max_attempts: int | None,
    then_watch: bool,
    reconnect_timeout: float,
) -> int:
    """Submit a task from a spec file or flags.

    SPEC_FILE is a working spec in YAML or JSON (- reads stdin). Flags override the
    file's fields. The server validates the spec: its field errors are printed one per
    line (exit code 2).

    \b
    Examples:
      agency submit --title "Sleep five seconds" --kind sleep --param seconds=5 --watch
      agency submit working-spec.yaml --priority high
      cat spec.json | agency submit - --json
    """
    base = specfile.load_spec(spec_file) if spec_file else {}
    spec = specfile.build_spec(
        base,
        fields={
            "title": title,
            "description": description,
            "risk_tier": risk_tier,
            "mode": mode,
            "priority": priority,
            "timeout_s": timeout_s,
            "max_attempts": max_attempts,
        },
        input_json=input_json,
        kind=kind,
        params=params,
        scope_in=scope_in,
        scope_out=scope_out,
        max_files=max_files,
        max_lines=max_lines,
        capabilities=capabilities,
    )
    task = state.client().post("/api/v1/tasks", spec)
    if state.json:
        print_json(task, compact=then_watch)  # with --watch, the entries follow one per line
    else:
        title = truncate(task.get("title"), 60)
        click.echo(f'Submitted {task["id"]} "{title}" ({task.get("state")}, priority {task.get("priority")})')
        if not then_watch:
            click.echo(f"  follow it: agency watch {task['id']}")
    if then_watch:
        return watch_task(state, task["id"], reconnect_timeout, since=task)
    return ExitCode.OK


@click.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    metavar="STATE",
    help="queued, running, paused, canceling, awaiting_review, completed, failed, canceled "
    "(repeatable, or comma-separated).",
)
@click.option(
    "--priority", "priorities", multiple=True, metavar="PRIORITY", help="low, medium, high, critical (repeatable)."
)
@click.option("--worker", help="Tasks of this worker.")
@click.option("--created-after", metavar="TIME", help="ISO 8601, e.g. 2026-12-01T00:00:00Z.")
@click.option("--created-before", metavar="TIME", help="ISO 8601.")
@click.option("-q", "--search", "q", metavar="TEXT", help="Search titles.")
@click.option("--ordering", help="-created_at (default), created_at, -priority or priority.")
@paging_options(default_size=50)
@json_option
@pass_state
def list_tasks(
    state: State,
    states: tuple[str, ...],
    priorities: tuple[str, ...],
    worker: str | None,
    created_after: str | None,
    created_before: str | None,
    q: str | None,
    ordering: str | None,
    page_size: int,
    cursor: str | None,
    all_pages: bool,
) -> int:
    """List tasks, with the API's filters.

    Newest first (see --ordering), one page at a time; --all follows every page.

    \b
    Examples:
      agency list --state running --state queued
      agency list --state failed --created-after 2026-12-01T00:00:00Z --all --json
    """
    params = {
        "state": _split(states),
        "priority": _split(priorities),
        "worker": worker,
        "created_after": created_after,
        "created_before": created_before,
        "q": q,
        "ordering": ordering,
        "page_size": page_size,
    }
    page, next_cursor = fetch_pages(state.client(), "/api/v1/tasks", params, cursor=cursor, all_pages=all_pages)
    state.output(page, _task_table)
    if not state.json:
        more_hint(next_cursor)
    return ExitCode.OK


def _split(values: tuple[str, ...]) -> list[str]:
    return [part.strip() for value in values for part in value.split(",") if part.strip()]


def _task_table(page: dict[str, Any]) -> str:
    rows = page.get("results") or []
    if not rows:
        return "No tasks."
    return table(
        ["ID", "STATE", "PRIORITY", "PROGRESS", "WORKER", "CREATED", "TITLE"],
        [
            [
                t.get("id"),
                t.get("state"),
                t.get("priority"),
                bar((t.get("progress") or {}).get("percent", 0), width=10),
                t.get("worker") or "-",
                when(t.get("created_at")),
                truncate(t.get("title"), 50),
            ]
            for t in rows
        ],
    )


@click.command()
@click.argument("task_id", type=TASK_ID)
@click.option(
    "--events",
    "event_count",
    type=click.IntRange(0, 20),
    default=10,
    show_default=True,
    help="Latest timeline entries to show.",
)
@json_option
@pass_state
def status(state: State, task_id: str, event_count: int) -> int:
    """Show a task in full.

    State, progress, attempt, worker, verdict, cancel request, error, violations and the
    latest timeline entries.
    """
    task = state.client().get(f"/api/v1/tasks/{task_id}")
    state.output(task, lambda t: task_details(t, events=event_count))
    return ExitCode.OK


@click.command()
@click.argument("task_id", type=TASK_ID)
@reconnect_option
@json_option
@pass_state
def watch(state: State, task_id: str, reconnect_timeout: float) -> int:
    """Follow a task live until it ends.

    Exit code 0 if it completed, 1 if it failed or was canceled. Shows a progress bar and
    the phase (redrawn on a terminal, one line per entry otherwise); with --json prints
    every timeline entry as one JSON object per line, the last one being the transition
    that ended the task. A dropped connection is resumed where it broke (Last-Event-ID),
    retrying for --reconnect-timeout seconds; after that, exit code 5. Ctrl-C stops
    watching (exit 130), not the task.
    """
    return watch_task(state, task_id, reconnect_timeout)


@click.command()
@click.argument("task_id", type=TASK_ID)
@click.option(
    "--after", type=click.IntRange(min=0), default=0, show_default=True, help="Only entries after this sequence number."
)
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="Entries per page.")
@click.option("--all", "all_pages", is_flag=True, help="Read every page to the end.")
@json_option
@pass_state
def events(state: State, task_id: str, after: int, limit: int, all_pages: bool) -> int:
    """Print a task's timeline.

    Oldest first, after a sequence number (--after), a page at a time; --all reads to the end.
    """
    client = state.client()
    results: list[dict[str, Any]] = []
    last_seq = after
    while True:
        page = client.get(f"/api/v1/tasks/{task_id}/events", after=last_seq, limit=limit)
        results += page.get("results") or []
        more = len(page.get("results") or []) >= limit
        last_seq = page.get("last_seq", last_seq)
        if not all_pages or not more:
            break
    data = {"results": results, "last_seq": last_seq}
    state.output(
        data, lambda d: "\n".join(f"{e.get('seq', ''):>4}  {entry_line(e)}" for e in d["results"]) or "No events."
    )
    if not state.json and not all_pages and more:
        click.echo(f"(more: repeat with --after {last_seq}, or use --all)", err=True)
    return ExitCode.OK


def _action_command(action: str, summary: str) -> click.Command:
    @click.command(action, help=summary)
    @click.argument("task_id", type=TASK_ID)
    @click.option("--reason", default="", help="Why (kept in the audit trail).")
    @json_option
    @pass_state
    def command(state: State, task_id: str, reason: str) -> int:
        task = state.client().post(f"/api/v1/tasks/{task_id}/actions", {"action": action, "reason": reason})
        state.output(task, lambda t: f"Task {t['id']} is {t['state']}.")
        return ExitCode.OK

    return command


pause = _action_command(
    "pause",
    "Pause a queued or running task.\n\nA running attempt is stopped at its worker; it does not count as an attempt.",
)
resume = _action_command("resume", "Resume a paused task.\n\nIt goes back to the queue.")
retry = _action_command(
    "retry", "Retry a failed or canceled task.\n\nIt is queued for a new attempt, with a fresh attempt budget."
)


@click.command()
@click.argument("task_id", type=TASK_ID)
@click.option("--reason", default="", help="Why (kept with the task and in the audit trail).")
@click.option("--watch", "then_watch", is_flag=True, help="Then follow the task until the cancel is confirmed.")
@reconnect_option
@json_option
@pass_state
def cancel(state: State, task_id: str, reason: str, then_watch: bool, reconnect_timeout: float) -> int:
    """Cancel a task (alias: abort).

    A running task goes to canceling while its worker is stopped, then to canceled; any
    other unfinished task is canceled at once.

    Exit code 4 when the task has ended already. With --watch, the exit code is the
    watch's: 1 once it is canceled (a canceled task ended badly), 0 if it completed first.
    """
    task = state.client().post(f"/api/v1/tasks/{task_id}/cancel", {"reason": reason})
    if state.json:
        print_json(task, compact=then_watch)
    elif task.get("state") == "canceling":
        click.echo(f"Cancel requested: task {task['id']} is canceling while its worker stops.")
    else:
        click.echo(f"Task {task['id']} is {task['state']}.")
    if then_watch:
        return watch_task(state, task_id, reconnect_timeout, since=task)
    return ExitCode.OK


COMMANDS = [submit, list_tasks, status, watch, events, pause, resume, cancel, retry]
