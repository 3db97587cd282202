"""The permission matrix: every route of the URLconf and of the ASGI routers, who may use it, and how.

One :class:`Row` per URL pattern (its route string exactly as Django joins it, the one
``resolve(path).route`` gives) for each router: ``urls`` (config/urls.py and its includes,
the admin site's among them), ``asgi.http`` and ``asgi.websocket`` (config/asgi.py). Each row
names the methods the route accepts and, for each, who is let through: ``anonymous``,
``viewer``, ``operator``, ``admin`` (the roles are cumulative). A cell is what that principal
gets: the status that shows the door opened, or the refusal of the row's :class:`Door`.

``tests/security/test_permission_matrix.py`` walks the routers against :data:`ROWS` (a route
without a row fails, so does a row whose route is gone) and makes every cell's request as its
principal; docs/security.md holds the table this module prints::

    python -m tests.security.permission_matrix --markdown   # print it
    python -m tests.security.permission_matrix --update     # write it into docs/security.md

This module is data: it imports nothing of Django, so that the table prints without settings.
Request bodies and URL values name objects of the test's world as ``"{name}"``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

# ``nobody`` is signed in but holds no role: the column that tells "the viewer role" from
# "signed in", which the four roles alone never would.
ANONYMOUS, NOBODY, VIEWER, OPERATOR, ADMIN = "anonymous", "nobody", "viewer", "operator", "admin"
PRINCIPALS = (ANONYMOUS, NOBODY, VIEWER, OPERATOR, ADMIN)

EVERYONE = frozenset(PRINCIPALS)
NO_ONE: frozenset[str] = frozenset()
SIGNED_IN = EVERYONE - {ANONYMOUS}


def from_(role: str) -> frozenset[str]:
    """``role`` and every role above it."""
    return frozenset(PRINCIPALS[PRINCIPALS.index(role) :])


VIEWERS, OPERATORS, ADMINS = from_(VIEWER), from_(OPERATOR), from_(ADMIN)

URLS, ASGI_HTTP, ASGI_WEBSOCKET = "urls", "asgi.http", "asgi.websocket"

# What a WebSocket cell gets: the socket stays open (its first frame is the history), or the
# consumer's close code (docs/chat-protocol.md), or the handshake is refused (an HTTP 403).
WS_OPEN = 101
WS_CLOSED_UNAUTHENTICATED = 4401
WS_CLOSED_FORBIDDEN = 4403


class Door(StrEnum):
    """How a principal knocks, and what a refusal looks like."""

    OPEN = "open"  # no credential needed; nobody is refused
    API = "api"  # DRF token; 401 anonymous, 403 without the role
    STREAM = "stream"  # SSE, token; refused like the API, before any byte of the stream
    PAGE = "page"  # session cookie; anonymous to /login/, 403 without the role (security/pages.py)
    CONSOLE = "console"  # the Django admin, session of a staff user; anonymous to /admin/login/, 403
    WEBSOCKET = "websocket"  # token header; closed 4401 anonymous, 4403 not allowed
    DJANGO = "django"  # an ASGI route that hands the request to Django's URLconf (walked itself)


_KWARG = re.compile(r"<(?:\w+:)?(\w+)>")

REDIRECT_TO_LOGIN = {Door.PAGE: "/login/", Door.CONSOLE: "/admin/login/"}


@dataclass(frozen=True)
class Cell:
    status: int
    allowed: bool

    @property
    def to_login(self) -> bool:
        return not self.allowed and self.status == 302


@dataclass(frozen=True)
class Access:
    """One method of a route: who is let through, and what they get."""

    method: str
    allowed: frozenset[str]
    ok: int | Mapping[str, int]  # the status of an allowed principal (per principal if it differs)
    body: Mapping[str, Any] | None = None  # JSON for the API, a form for pages and the console
    refused: Mapping[str, int] = field(default_factory=dict)  # a refusal other than the door's
    note: str = ""

    def ok_for(self, principal: str) -> int:
        return self.ok[principal] if isinstance(self.ok, Mapping) else self.ok


@dataclass(frozen=True)
class Row:
    router: str
    route: str
    door: Door
    methods: tuple[Access, ...]
    values: Mapping[str, str] = field(default_factory=dict)  # URL kwarg -> "{object}" of the world
    path: str = ""  # the path to request, for a regex route that no kwarg substitution can fill
    note: str = ""

    @property
    def key(self) -> tuple[str, str]:
        return (self.router, self.route)

    def path_for(self, values: Mapping[str, str]) -> str:
        """The path to request: the route with each kwarg filled from the world's ``values``."""
        if self.path:
            return "/" + self.path
        return "/" + _KWARG.sub(lambda m: filled(self.values[m[1]], values), self.route)

    def cell(self, access: Access, principal: str) -> Cell:
        if principal in access.allowed:
            return Cell(access.ok_for(principal), allowed=True)
        if principal in access.refused:
            return Cell(access.refused[principal], allowed=False)
        return Cell(refusal(self.door, principal), allowed=False)


def filled(value: Any, values: Mapping[str, str]) -> Any:
    """``value`` with every ``"{name}"`` in it replaced by the world's value of that name."""
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return values[value[1:-1]]
    if isinstance(value, Mapping):
        return {k: filled(v, values) for k, v in value.items()}
    if isinstance(value, list):
        return [filled(v, values) for v in value]
    return value


def refusal(door: Door, principal: str) -> int:
    anonymous = principal == ANONYMOUS
    if door in (Door.API, Door.STREAM):
        return 401 if anonymous else 403
    if door in (Door.PAGE, Door.CONSOLE):
        return 302 if anonymous else 403
    if door is Door.WEBSOCKET:
        return WS_CLOSED_UNAUTHENTICATED if anonymous else WS_CLOSED_FORBIDDEN
    raise ValueError(f"a {door} door refuses nobody")


def get(allowed: frozenset[str], ok: int | Mapping[str, int] = 200, **kwargs: Any) -> Access:
    return Access("GET", allowed, ok, **kwargs)


def post(
    allowed: frozenset[str], ok: int | Mapping[str, int], body: Mapping[str, Any] | None = None, **kwargs: Any
) -> Access:
    return Access("POST", allowed, ok, body=body or {}, **kwargs)


def url(route: str, door: Door, *methods: Access, **kwargs: Any) -> Row:
    return Row(URLS, route, door, methods, **kwargs)


SPEC = {
    "title": "Matrix task",
    "risk_tier": 3,
    "scope": {"in": ["src/"]},
    "acceptance": [{"id": "A1", "given": "g", "when": "w", "then": "t"}],
}
WAIVER = {
    "title": "Vendored SDK markers",
    "reason": "third_party_constraint",
    "gates": ["placeholders"],
    "justification": "The vendored SDK ships its own TODO markers; we do not edit vendored code.",
    "expires_at": "{in_a_week}",
}
TASK = {"task_id": "{task}"}
REVIEWED = {"task_id": "{reviewed_task}"}
PENDING = {"waiver_id": "{pending_waiver}"}
APPROVED = {"waiver_id": "{approved_waiver}"}
WORKER = {"name": "{worker}"}
CHAT = {"session_id": "{chat_session}"}
QUERY = {"query_id": "{saved_query}"}
OWNER_OR_ADMIN = frozenset({OPERATOR, ADMIN})
SIGNED_IN_ONWARDS = {ANONYMOUS: 200, **dict.fromkeys(SIGNED_IN, 302)}

# --- the API, the streams, the pages -------------------------------------------------------

APP_ROWS = (
    url("healthz", Door.OPEN, get(EVERYONE), note="liveness; the one route open to anonymous callers"),
    url("api/health", Door.API, get(VIEWERS)),
    url("", Door.PAGE, get(VIEWERS), note="overview"),
    url("health/", Door.PAGE, get(VIEWERS)),
    url("api/v1/metrics", Door.API, get(VIEWERS)),
    url("api/v1/metrics/stream", Door.STREAM, get(VIEWERS), note="Django's door to the stream (WSGI, URL name)"),
    url("api/v1/tasks/stream", Door.STREAM, get(VIEWERS), note="Django's door to the stream (WSGI, URL name)"),
    url("metrics", Door.API, get(VIEWERS), note="Prometheus; also a Bearer token"),
    url(
        "api/v1/tasks",
        Door.API,
        get(VIEWERS),
        post(OPERATORS, 201, SPEC),
    ),
    url("api/v1/tasks/<uuid:task_id>", Door.API, get(VIEWERS), values=TASK),
    url("api/v1/tasks/<uuid:task_id>/events", Door.API, get(VIEWERS), values=TASK),
    url(
        "api/v1/tasks/<uuid:task_id>/actions",
        Door.API,
        post(OPERATORS, 200, {"action": "pause", "reason": "matrix"}),
        values=TASK,
    ),
    url("api/v1/tasks/<uuid:task_id>/cancel", Door.API, post(OPERATORS, 200, {"reason": "matrix"}), values=TASK),
    url("api/v1/tasks/<uuid:task_id>/provenance", Door.API, get(VIEWERS), values=REVIEWED),
    url("api/v1/waivers", Door.API, get(VIEWERS), post(OPERATORS, 201, WAIVER)),
    url("api/v1/waivers/<uuid:waiver_id>", Door.API, get(VIEWERS), values=PENDING),
    url(
        "api/v1/waivers/<uuid:waiver_id>/approve",
        Door.API,
        post(ADMINS, 200),
        values=PENDING,
        note="and not by its requester",
    ),
    url(
        "api/v1/waivers/<uuid:waiver_id>/reject",
        Door.API,
        post(ADMINS, 200),
        values=PENDING,
        note="and not by its requester",
    ),
    url(
        "api/v1/waivers/<uuid:waiver_id>/revoke",
        Door.API,
        post(ADMINS, 200, {"reason": "The vendor shipped a fix."}),
        values=APPROVED,
    ),
    url(
        "api/v1/workers",
        Door.API,
        get(VIEWERS),
        post(ADMINS, 400, note="an empty body: 400 shows the door opened; registering is tested in tests/tasks"),
    ),
    url(
        "api/v1/workers/<slug:name>",
        Door.API,
        get(VIEWERS),
        Access("PATCH", ADMINS, 200, body={"max_concurrency": 3}),
        Access("DELETE", ADMINS, 204),
        values=WORKER,
    ),
    url("api/v1/workers/<slug:name>/enable", Door.API, post(ADMINS, 200), values=WORKER),
    url("api/v1/workers/<slug:name>/disable", Door.API, post(ADMINS, 200, {"reason": "matrix"}), values=WORKER),
    url("api/v1/audit", Door.API, get(VIEWERS)),
    url(
        "api/v1/queries",
        Door.API,
        get(VIEWERS),
        post(ADMINS, 400, note="an empty body: 400 shows the door opened; saving is tested in tests/metrics"),
    ),
    url(
        "api/v1/queries/<uuid:query_id>",
        Door.API,
        get(VIEWERS),
        Access("PATCH", ADMINS, 200, body={"description": "matrix"}),
        Access("DELETE", ADMINS, 204),
        values=QUERY,
        note="a shared query",
    ),
    url(
        "api/v1/queries/<uuid:query_id>/run",
        Door.API,
        post(VIEWERS, 400, {"params": "not an object"}, note="bad parameters: 400 shows the door opened"),
        values=QUERY,
    ),
    url("api/v1/queries/<uuid:query_id>/runs", Door.API, get(VIEWERS), values=QUERY),
    url("api/v1/chat/session", Door.API, post(VIEWERS, 201, {"title": "mine"}), note="a session of one's own"),
    url("api/v1/chat/sessions", Door.API, get(VIEWERS), note="one's own sessions"),
    url(
        "api/v1/chat/session/<str:session_id>",
        Door.API,
        get(OWNER_OR_ADMIN),
        values=CHAT,
        note="its owner (the operator here) or an admin",
    ),
    url(
        "api/v1/chat/session/<str:session_id>/close",
        Door.API,
        post(OWNER_OR_ADMIN, 200),
        values=CHAT,
        note="its owner (the operator here) or an admin",
    ),
    url(
        "api/proxy/workers/<slug:name>/<path:path>",
        Door.API,
        get(ADMINS, 404),
        values={"name": "{missing_worker}", "path": "health"},
        note="admin: 404 for an unknown worker shows the door opened (proxying is tested in tests/tasks)",
    ),
    url("api/schema/", Door.API, get(VIEWERS)),
    url("api/docs/", Door.API, get(VIEWERS)),
    url(
        "login/",
        Door.OPEN,
        get(EVERYONE, SIGNED_IN_ONWARDS),
        post(EVERYONE, SIGNED_IN_ONWARDS, {"username": "nobody", "password": "wrong"}),
        note="signed in: on to the overview; a wrong password: the form again",
    ),
    url("logout/", Door.OPEN, post(EVERYONE, 302), note="to /login/"),
    url("tasks/", Door.PAGE, get(VIEWERS)),
    url(
        "tasks/new/",
        Door.PAGE,
        get(OPERATORS),
        post(OPERATORS, 302, {"title": "Matrix page task", "mode": "feature", "priority": "medium", "risk_tier": "2"}),
    ),
    url(
        "tasks/bulk/",
        Door.PAGE,
        post(OPERATORS, 302, {"action": "cancel", "scope": "selected", "task_ids": ["{task}"], "reason": "matrix"}),
    ),
    url("tasks/views/", Door.PAGE, post(VIEWERS, 302, {"name": "matrix", "query": "state=queued"})),
    url("tasks/views/<uuid:view_id>/", Door.PAGE, get(VIEWERS, 302), values={"view_id": "{saved_view}"}),
    url(
        "tasks/views/<uuid:view_id>/delete/",
        Door.PAGE,
        post(frozenset({VIEWER}), 302),
        values={"view_id": "{saved_view}"},
        note="its owner only (the viewer here), whatever the role",
    ),
    url("tasks/<uuid:task_id>/", Door.PAGE, get(VIEWERS), values=TASK),
    url(
        "tasks/<uuid:task_id>/actions/",
        Door.PAGE,
        post(OPERATORS, 302, {"action": "pause", "reason": "matrix"}),
        values=TASK,
    ),
    url("workers/", Door.PAGE, get(VIEWERS)),
    url("workers/register/", Door.PAGE, post(ADMINS, 400, note="an empty form: 400 shows the door opened")),
    url("workers/<slug:name>/enable/", Door.PAGE, post(ADMINS, 302), values=WORKER),
    url("workers/<slug:name>/disable/", Door.PAGE, post(ADMINS, 302), values=WORKER),
    url("audit/", Door.PAGE, get(VIEWERS)),
    url("chat/", Door.PAGE, get(VIEWERS), note="one's own sessions"),
    url("chat/new/", Door.PAGE, post(VIEWERS, 302, {"title": "mine"})),
    url(
        "chat/<uuid:session_id>/",
        Door.PAGE,
        get(OWNER_OR_ADMIN),
        values=CHAT,
        note="its owner (the operator here) or an admin",
    ),
    url(
        "chat/<uuid:session_id>/send/",
        Door.PAGE,
        post(OWNER_OR_ADMIN, 302, {"content": "help"}),
        values=CHAT,
        note="its owner (the operator here) or an admin",
    ),
    url(
        "queries/",
        Door.PAGE,
        get(VIEWERS),
        post(ADMINS, 400, note="an empty form: 400 shows the door opened; saving is tested in tests/metrics"),
    ),
    url(
        "queries/<uuid:query_id>/",
        Door.PAGE,
        get(VIEWERS),
        post(ADMINS, 400, note="an empty form: 400 shows the door opened"),
        values=QUERY,
        note="a shared query",
    ),
    url(
        "queries/<uuid:query_id>/run/",
        Door.PAGE,
        post(VIEWERS, 400, {"limit": "7"}, note="a page size not offered: 400 shows the door opened"),
        values=QUERY,
    ),
    url(
        "queries/<uuid:query_id>/export.csv",
        Door.PAGE,
        post(VIEWERS, 400, {"limit": "7"}, note="a CSV download; a bad form: 400 shows the door opened"),
        values=QUERY,
    ),
    url("queries/<uuid:query_id>/delete/", Door.PAGE, post(ADMINS, 302), values=QUERY),
)

# --- the ASGI routers (config/asgi.py) -----------------------------------------------------

ASGI_ROWS = (
    Row(ASGI_HTTP, "api/v1/tasks/stream", Door.STREAM, (get(VIEWERS),), note="StreamApp, under daphne"),
    Row(ASGI_HTTP, "api/v1/metrics/stream", Door.STREAM, (get(VIEWERS),), note="StreamApp, under daphne"),
    Row(ASGI_HTTP, "", Door.DJANGO, (), note="everything else: Django's URLconf, each route a row above"),
    Row(
        ASGI_WEBSOCKET,
        "api/v1/chat/ws/<str:session_id>",
        Door.WEBSOCKET,
        (Access("CONNECT", OWNER_OR_ADMIN, WS_OPEN),),
        values=CHAT,
        note="its owner (the operator here) or an admin",
    ),
    Row(
        ASGI_WEBSOCKET,
        "",
        Door.WEBSOCKET,
        (Access("CONNECT", NO_ONE, WS_OPEN, refused=dict.fromkeys(PRINCIPALS, 403)),),
        path="api/v1/nothing/here",
        note="any other path: the handshake is refused",
    ),
)

# --- the console (the Django admin) ---------------------------------------------------------

# Who is let into the console at all: a staff user. The signed-in principals of these rows are
# all staff (a role without is_staff is sent to the login like anonymous,
# tests/tasks/test_admin.py); what they may do there comes from their role. Users, groups,
# and chat keep Django's per-model permissions, which the roles do not grant: only
# superusers manage them there.
CONSOLE_APPS = ("auth", "security", "audit", "tasks", "metrics", "chat")
STAFF = SIGNED_IN


def console(route: str, *methods: Access, **kwargs: Any) -> Row:
    return Row(URLS, "admin/" + route, Door.CONSOLE, methods, **kwargs)


@dataclass(frozen=True)
class Console:
    """One model registered in the admin site, and who may do what to it there."""

    model: str  # "<app_label>/<model_name>"
    object: str  # the world object whose pk fills <object_id>
    view: frozenset[str]
    add: frozenset[str]
    change: frozenset[str]
    delete: frozenset[str]
    actions: tuple[str, frozenset[str], Mapping[str, Any]] | None = None  # a bulk action, who, its form
    extra: tuple[Row, ...] = ()  # routes of the model's own beyond Django's six
    note: str = ""


CONSOLE_MODELS = (
    Console("auth/group", "{group}", NO_ONE, NO_ONE, NO_ONE, NO_ONE, note="superusers only"),
    Console(
        "auth/user",
        "{viewer_user}",
        NO_ONE,
        NO_ONE,
        NO_ONE,
        NO_ONE,
        extra=(
            console(
                "auth/user/<id>/password/",
                get(NO_ONE),
                post(NO_ONE, 200, {}),
                values={"id": "{viewer_user}"},
                note="setting a user's password",
            ),
        ),
        note="superusers only",
    ),
    Console(
        "security/apitoken", "{api_token}", ADMINS, NO_ONE, NO_ONE, ADMINS, note="revoked here, issued by create_token"
    ),
    Console("audit/auditrecord", "{audit_record}", VIEWERS, NO_ONE, NO_ONE, NO_ONE, note="read-only for everyone"),
    Console(
        "tasks/task",
        "{task}",
        VIEWERS,
        OPERATORS,
        NO_ONE,
        NO_ONE,
        actions=("cancel_tasks", OPERATORS, {"reason": "matrix"}),
        note="added through the create service; changed only by actions and buttons",
    ),
    Console(
        "tasks/waiver",
        "{pending_waiver}",
        VIEWERS,
        OPERATORS,
        NO_ONE,
        NO_ONE,
        actions=("approve_waivers", ADMINS, {"note": "matrix"}),
    ),
    Console("tasks/worker", "{worker_pk}", VIEWERS, ADMINS, ADMINS, ADMINS),
    Console("tasks/savedview", "{saved_view}", VIEWERS, NO_ONE, NO_ONE, NO_ONE, note="owners keep them"),
    Console("metrics/savedquery", "{saved_query}", ADMINS, NO_ONE, NO_ONE, NO_ONE, note="changed through the API"),
    Console("metrics/queryrun", "{query_run}", ADMINS, NO_ONE, NO_ONE, NO_ONE, note="the run history"),
    Console("chat/chatsession", "{chat_session}", NO_ONE, NO_ONE, NO_ONE, NO_ONE, note="superusers only"),
    Console("chat/chatmessage", "{chat_message}", NO_ONE, NO_ONE, NO_ONE, NO_ONE, note="superusers only"),
)


_EMPTY_FORM = "an empty form: its errors"


def _console_model_rows(m: Console) -> Iterator[Row]:
    obj = {"object_id": m.object}
    changelist = [get(m.view)]
    if m.actions:
        action, who, form = m.actions
        body = {"action": action, "_selected_action": [m.object], "index": "0", **form}
        # An action one may not use is not offered: the list again, and nothing done.
        refused = dict.fromkeys(VIEWERS - who, 200)
        changelist.append(post(who, 302, body, refused=refused, note=f"the {action} action"))
    yield console(f"{m.model}/", *changelist, note=m.note)
    yield console(f"{m.model}/add/", get(m.add), post(m.add, 200, {}, note=_EMPTY_FORM if m.add else ""))
    yield console(f"{m.model}/<path:object_id>/history/", get(m.view), values=obj)
    yield console(
        f"{m.model}/<path:object_id>/delete/",
        get(m.delete),
        post(m.delete, 302, {"post": "yes"}),
        values=obj,
    )
    # Viewing the change page is a read-only form for those who may view but not change.
    yield console(
        f"{m.model}/<path:object_id>/change/",
        get(m.view | m.change),
        post(m.change, 200, {}, note=_EMPTY_FORM if m.change else ""),
        values=obj,
    )
    yield console(
        f"{m.model}/<path:object_id>/",
        get(STAFF, 302),
        values=obj,
        note="redirects to the change page, which decides",
    )
    yield from m.extra


CONSOLE_ROWS = (
    console("", get(STAFF), note="the console's index (with no model in it for nobody)"),
    console(
        "login/",
        get(EVERYONE, SIGNED_IN_ONWARDS),
        post(EVERYONE, 200, {"username": "nobody", "password": "wrong"}),
        note="staff: on to the index",
    ),
    console("logout/", post(EVERYONE, 302), note="to /login/ (anonymous: to the index)"),
    console("password_change/", get(STAFF), post(STAFF, 200, {}, note=_EMPTY_FORM), note="one's own"),
    console("password_change/done/", get(STAFF)),
    console(
        "autocomplete/",
        get(STAFF, 403),
        note="no model of the console has an autocomplete field: 403 for every staff user",
    ),
    console("jsi18n/", get(STAFF)),
    console(
        "r/<path:content_type_id>/<path:object_id>/",
        get(STAFF, 404),
        values={"content_type_id": "{task_content_type}", "object_id": "{task}"},
        note="view on site: 404, no model of the console has get_absolute_url",
    ),
    console(
        "tasks/task/<uuid:object_id>/act/",
        post(OPERATORS, 302, {"action": "pause", "reason": "matrix"}),
        values={"object_id": "{task}"},
        note="the task page's buttons",
    ),
    *(row for m in CONSOLE_MODELS for row in _console_model_rows(m)),
    console(
        f"(?P<app_label>{'|'.join(CONSOLE_APPS)})/$",
        get(VIEWERS, refused={NOBODY: 404}),
        path="admin/tasks/",
        note="an app's index (tasks here): 404 to whom it shows no model",
    ),
    console("(?P<url>.*)$", get(STAFF, 404), path="admin/no/such/page/", note="anything else under admin/"),
)

ROWS: tuple[Row, ...] = (*APP_ROWS, *ASGI_ROWS, *CONSOLE_ROWS)


def rows_by_key(rows: tuple[Row, ...] = ROWS) -> dict[tuple[str, str], Row]:
    found: dict[tuple[str, str], Row] = {}
    for row in rows:
        if row.key in found:
            raise ValueError(f"two rows for {row.router} {row.route!r}")
        found[row.key] = row
    return found


# --- the table in docs/security.md ---------------------------------------------------------

TABLE_START = "<!-- permission-matrix: start (python -m tests.security.permission_matrix --markdown) -->"
TABLE_END = "<!-- permission-matrix: end -->"
_REGEX_GROUP = re.compile(r"\(\?P<(\w+)>[^)]*\)")


def shown_route(row: Row) -> str:
    """The route as a reader writes a path: ``{name}`` for each kwarg and named group."""
    route = _KWARG.sub(r"{\1}", _REGEX_GROUP.sub(r"{\1}", row.route)).removesuffix("$")
    if row.router == URLS:
        return "/" + route
    scheme = "WS" if row.router == ASGI_WEBSOCKET else "ASGI"
    return f"{scheme} /{route or '*'}"


def shown_cell(cell: Cell) -> str:
    if cell.allowed:
        return f"✓ {cell.status}" if cell.status != WS_OPEN else "✓ open"
    if cell.to_login:
        return "✗ login"
    return f"✗ {cell.status}"


def markdown(rows: tuple[Row, ...] = ROWS) -> str:
    """The table: one line per route and method; ✓ let through (with its status), ✗ refused."""
    head = ["Route", "Method", *PRINCIPALS, "Notes"]
    lines = [TABLE_START, "", "| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for row in rows:
        methods = row.methods or (None,)
        for access in methods:
            if access is None:
                cells = ["—"] * len(PRINCIPALS)
                method = "any"
            else:
                cells = [shown_cell(row.cell(access, p)) for p in PRINCIPALS]
                method = access.method
            notes = "; ".join(n for n in (row.note if access is methods[0] else "", access and access.note) if n)
            route = shown_route(row).replace("|", "\\|")
            lines.append(f"| `{route}` | {method} | " + " | ".join(cells) + f" | {notes} |")
    lines += ["", TABLE_END]
    return "\n".join(lines) + "\n"


DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def with_table(doc: str, table: str) -> str:
    """``doc`` with the text between the table's markers replaced by ``table``."""
    start, end = doc.index(TABLE_START), doc.index(TABLE_END) + len(TABLE_END) + 1
    return doc[:start] + table + doc[end:]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--markdown", action="store_true", help="print the table of docs/security.md")
    what.add_argument("--update", action="store_true", help="write the table into docs/security.md")
    args = parser.parse_args(argv)
    if args.update:
        DOC.write_text(with_table(DOC.read_text(), markdown()))
    else:
        print(markdown(), end="")


if __name__ == "__main__":
    main()
