"""Everything around the tasks: login, audit, workers, health, saved queries."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

import click

from agency import config
from agency.client import Client
from agency.context import ResourceId, State, fetch_pages, json_option, more_hint, paging_options, pass_state
from agency.errors import ExitCode, UsageProblem
from agency.render import print_json, table, truncate, when

LOOPBACK = {"127.0.0.1", "::1", "localhost"}

# --- login / logout ---------------------------------------------------------------


def _read_token() -> str:
    stdin = click.get_text_stream("stdin")
    if stdin.isatty():
        return click.prompt("API token (input hidden)", hide_input=True).strip()
    return stdin.readline().strip()  # piped: echo "$TOKEN" | agency login


@click.command()
@click.option(
    "--url",
    "login_url",
    metavar="URL",
    help="The server (default: --url, AGENCY_URL, the stored one, http://127.0.0.1:8000).",
)
@json_option
@pass_state
def login(state: State, login_url: str | None) -> int:
    """Store an API token for a server.

    The token is checked against the server first. There is no password login: make a
    token on the server with `python manage.py create_token USERNAME` and paste it at the
    prompt (hidden), or pipe it in. It is kept in the config file ($AGENCY_CONFIG, else
    $XDG_CONFIG_HOME/agency/config.json or ~/.config/agency/config.json), created with
    mode 0600, for that URL only; that server becomes the default. AGENCY_URL and
    AGENCY_TOKEN still override the file.
    """
    url = config.normalize_url(login_url or state.url_option or config.resolve(None).url)
    token = _read_token()
    if not token:
        raise UsageProblem("no token given")
    if any(c.isspace() for c in token) or len(token) > 200:
        raise UsageProblem("that does not look like an API token (no spaces; make one with manage.py create_token)")
    parts = urlsplit(url)
    if parts.scheme == "http" and parts.hostname not in LOOPBACK:
        click.echo(f"agency: warning: {url} is plain HTTP: the token crosses the network unencrypted", err=True)
    # Any role may list tasks, so this proves the token and that its user has a role.
    Client(url, token, timeout=state.timeout).get("/api/v1/tasks", page_size=1)
    path = config.store_token(url, token)
    if state.json:
        print_json({"url": url, "config": str(path)})
    else:
        click.echo(f"Logged in to {url}; token stored in {path} (mode 0600).")
    return ExitCode.OK


@click.command()
@click.option("--url", "logout_url", metavar="URL", help="The server whose token to forget (default: the current one).")
@click.option("--all", "forget_all", is_flag=True, help="Forget every stored token (removes the config file).")
@json_option
@pass_state
def logout(state: State, logout_url: str | None, forget_all: bool) -> int:
    """Forget a stored token.

    The token itself stays valid: revoke it on the server (the admin console, API tokens).
    """
    url = None if forget_all else config.normalize_url(logout_url or state.url_option or config.resolve(None).url)
    path, had = config.forget_token(url)
    if state.json:
        print_json({"url": url, "config": str(path), "forgotten": had})
    elif had:
        click.echo(f"Forgot the token of {url or 'every server'} ({path}).")
    else:
        click.echo(f"No token was stored for {url or 'any server'} ({path}).")
    return ExitCode.OK


# --- audit ------------------------------------------------------------------------


@click.group()
def audit() -> None:
    """Search the audit trail.

    Every decision (create, cancel, verdict, waiver, ...), who made it, and why.
    """


@audit.command("search")
@click.option("--action", "actions", multiple=True, metavar="ACTION", help="e.g. task.cancel (repeatable; exact).")
@click.option("--actor", help="Exact, e.g. user:3, system, dispatcher:<name>.")
@click.option("--resource-type", help="e.g. task, waiver, worker.")
@click.option("--resource-id", help="With --resource-type: one resource (a task id, ...).")
@click.option("--since", metavar="TIME", help="At or after, ISO 8601.")
@click.option("--until", metavar="TIME", help="Before, ISO 8601.")
@paging_options(default_size=50)
@json_option
@pass_state
def audit_search(
    state: State,
    actions: tuple[str, ...],
    actor: str | None,
    resource_type: str | None,
    resource_id: str | None,
    since: str | None,
    until: str | None,
    page_size: int,
    cursor: str | None,
    all_pages: bool,
) -> int:
    """Search the audit trail, newest first.

    \b
    Example:
      agency audit search --resource-type task --resource-id 3f2a9c1e-... --all
    """
    params = {
        "action": list(actions),
        "actor": actor,
        "resource_type": resource_type,
        "resource_id": resource_id,
        "since": since,
        "until": until,
        "page_size": page_size,
    }
    page, next_cursor = fetch_pages(state.client(), "/api/v1/audit", params, cursor=cursor, all_pages=all_pages)
    state.output(page, _audit_table)
    if not state.json:
        more_hint(next_cursor)
    return ExitCode.OK


def _audit_table(page: dict[str, Any]) -> str:
    rows = page.get("results") or []
    if not rows:
        return "No audit records."
    return table(
        ["SEQ", "TIME", "ACTOR", "ACTION", "RESOURCE", "REASON"],
        [
            [
                r.get("seq"),
                when(r.get("created_at")),
                r.get("actor"),
                r.get("action"),
                f"{r.get('resource_type')}:{r.get('resource_id')}",
                truncate(r.get("reason"), 40),
            ]
            for r in rows
        ],
    )


# --- workers ----------------------------------------------------------------------


@click.group()
def workers() -> None:
    """List the registered workers.

    Register and change workers in the admin console, or with manage.py register_worker.
    """


@workers.command("list")
@click.option("--enabled/--disabled", "enabled", default=None, help="Only the enabled, or only the disabled, ones.")
@json_option
@pass_state
def workers_list(state: State, enabled: bool | None) -> int:
    """List the registered workers: health, breaker, capacity."""
    data = state.client().get("/api/v1/workers", enabled=enabled)
    state.output(data, _workers_table)
    return ExitCode.OK


def _workers_table(data: dict[str, Any]) -> str:
    rows = data.get("results") or []
    if not rows:
        return "No workers."
    return table(
        ["NAME", "ENABLED", "HEALTH", "BREAKER", "CAPACITY", "CAPABILITIES", "URL"],
        [
            [
                w.get("name"),
                "yes" if w.get("enabled") else "no",
                w.get("health_status") or "-",
                w.get("breaker_state") or "-",
                w.get("max_concurrency"),
                ",".join(w.get("capabilities") or []) or "-",
                w.get("base_url"),
            ]
            for w in rows
        ],
    )


# --- health -----------------------------------------------------------------------


@click.command()
@click.option("--fail-on-degraded", is_flag=True, help="Exit 5 when degraded, not only when unhealthy.")
@json_option
@pass_state
def health(state: State, fail_on_degraded: bool) -> int:
    """Show the server's health.

    Each component (database, channel layer, websocket, dispatcher, workers, keystore)
    with its status. Exit code 0 when healthy or degraded, 5 when unhealthy.
    """
    report = state.client().request("GET", "/api/health", accept=(503,))
    state.output(report, _health_text)
    status = report.get("status")
    if status == "unhealthy" or (fail_on_degraded and status != "healthy"):
        if not state.json:
            click.echo(f"agency: the server at {state.client().base_url} is {status}", err=True)
        return ExitCode.UNREACHABLE
    return ExitCode.OK


def _health_text(report: dict[str, Any]) -> str:
    lines = [f"{report.get('status')}  (version {report.get('version')}, up {report.get('uptime_s')} s)"]
    components = report.get("components") or {}
    width = max((len(name) for name in components), default=0)
    for name, component in components.items():
        if not isinstance(component, dict):
            continue
        extras = [f"{component['latency_ms']} ms"] if component.get("latency_ms") is not None else []
        extras += [
            f"{key} {value}"
            for key, value in component.items()
            if key not in ("status", "latency_ms", "workers", "error") and not isinstance(value, dict | list)
        ]
        if component.get("error"):
            extras.append(f"error: {truncate(component['error'], 120)}")
        lines.append(f"  {name.ljust(width)}  {str(component.get('status')).ljust(9)} {', '.join(extras)}".rstrip())
        for worker_name, worker in (component.get("workers") or {}).items():
            if isinstance(worker, dict):
                detail = ", ".join(
                    f"{k} {v}" for k, v in worker.items() if k != "status" and not isinstance(v, dict | list)
                )
                lines.append(f"    {worker_name}  {worker.get('status')}  {detail}".rstrip())
    return "\n".join(lines)


# --- saved queries ----------------------------------------------------------------

QUERY_ID = ResourceId("saved query")


@click.group()
def queries() -> None:
    """List and run saved SQL queries.

    The ones you may see (yours and the shared ones); runs are read-only and audited.
    """


@queries.command("list")
@json_option
@pass_state
def queries_list(state: State) -> int:
    """List the saved queries you may run (yours and the shared ones)."""
    data = state.client().get("/api/v1/queries")
    state.output(data, _queries_table)
    return ExitCode.OK


def _queries_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "No saved queries."
    return table(
        ["ID", "NAME", "PARAMETERS", "OWNER", "SHARED", "DESCRIPTION"],
        [
            [
                q.get("id"),
                truncate(q.get("name"), 40),
                ", ".join(f"{p.get('name')}:{p.get('type')}" for p in q.get("parameters") or []) or "-",
                q.get("owner"),
                "yes" if q.get("shared") else "no",
                truncate(q.get("description"), 50),
            ]
            for q in rows
        ],
    )


@queries.command("run")
@click.argument("query_id", type=QUERY_ID)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=VALUE",
    help="A parameter's value (repeatable); the server checks its type.",
)
@click.option("--limit", type=click.IntRange(1, 500), default=100, show_default=True, help="Rows per page.")
@click.option("--offset", type=click.IntRange(0, 100_000), default=0, show_default=True, help="Rows to skip.")
@json_option
@pass_state
def queries_run(state: State, query_id: str, params: tuple[str, ...], limit: int, offset: int) -> int:
    """Run a saved query and print its rows.

    Read-only, recorded and audited.

    \b
    Example:
      agency queries run 5b0c...-... --param state=failed --limit 20
    """
    values = {}
    for pair in params:
        name, sep, raw = pair.partition("=")
        if not sep or not name.strip():
            raise UsageProblem(f"--param takes NAME=VALUE, got {pair!r}")
        values[name.strip()] = raw  # text: the server converts it to the parameter's declared type
    result = state.client().post(
        f"/api/v1/queries/{query_id}/run", {"params": values, "limit": limit, "offset": offset}
    )
    state.output(result, _rows_table)
    if not state.json and result.get("more"):
        click.echo(f"(more rows: repeat with --offset {offset + limit})", err=True)
    return ExitCode.OK


def _cell(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, dict | list):
        return truncate(json.dumps(value, ensure_ascii=False), 60)
    return truncate(value, 60)


def _rows_table(result: dict[str, Any]) -> str:
    columns = result.get("columns") or []
    rows = result.get("rows") or []
    text = table(columns, [[_cell(v) for v in row] for row in rows]) if columns else ""
    return f"{text}\n({len(rows)} rows, {result.get('duration_ms')} ms)".lstrip()


COMMANDS = [login, logout, audit, workers, health, queries]
