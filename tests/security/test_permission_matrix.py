"""The permission matrix (tests/security/permission_matrix.py), walked and tried for real.

1. Every route of Django's URLconf (config/urls.py, its includes and the admin site) and of
   the ASGI routers of config/asgi.py has a row, and every row a route: a new endpoint
   without one fails here, naming it.
2. Every cell is a request made as its principal (a token for the API and the streams, the
   session cookie for pages and the console, a token header for the WebSocket) to a URL
   filled from real objects, and gets the status of its cell. A refusal writes nothing: every
   table is the same after it. A method a row does not name is a 405.
3. docs/security.md holds the table the matrix prints.

The HTTP cells share one world, made once (class scope) and rolled back to after each cell.
The WebSocket and ASGI stream cells are served from other threads (their own database
connections), which only see committed rows: they are transactional tests of their own.
"""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from channels.routing import URLRouter
from channels.testing import ApplicationCommunicator, WebsocketCommunicator
from django.apps import apps
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.contrib.contenttypes.models import ContentType
from django.db import transaction
from django.test import Client
from django.urls import URLResolver, include, path, re_path, resolve
from django.urls.resolvers import RegexPattern
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditRecord
from chat import services as chat_services
from metrics.models import QueryRun
from metrics.queries import services as query_services
from security.models import ApiToken
from tasks import services
from tasks.models import Task, Verdict, Worker
from tasks.review import waivers
from tests.conftest import _user as role_user
from tests.conftest import api_key_for
from tests.security import permission_matrix as matrix
from tests.security.permission_matrix import (
    ADMIN,
    ANONYMOUS,
    ASGI_HTTP,
    ASGI_WEBSOCKET,
    NOBODY,
    OPERATOR,
    PRINCIPALS,
    ROWS,
    URLS,
    VIEWER,
    Access,
    Door,
    Row,
)
from tests.security.routes import all_routes, asgi_routes, unaccounted, urlconf_routes

# The ASGI cells bound each wait themselves; this bounds the rest (a stream read by mistake).
pytestmark = pytest.mark.timeout(120)

ROLE_OF = {NOBODY: None, VIEWER: "viewer", OPERATOR: "operator", ADMIN: "admin"}
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
ASGI_TIMEOUT_S = 5.0

# --- every route has a row ---------------------------------------------------------------------


def test_every_route_has_a_row_and_every_row_a_route() -> None:
    problems = unaccounted(all_routes(), ROWS)
    assert not problems, "\n".join(problems)


def _view(request: Any) -> None:
    raise AssertionError("never called")


def test_a_route_without_a_row_fails_naming_it() -> None:
    fake = URLResolver(
        RegexPattern(r"^/"),
        [path("healthz", _view), path("api/", include([path("v1/fresh/<int:pk>", _view)]))],
    )
    rows = (matrix.url("healthz", Door.OPEN, matrix.get(matrix.EVERYONE)),)
    found = [(URLS, r) for r in urlconf_routes(fake)]
    assert found == [(URLS, "healthz"), (URLS, "api/v1/fresh/<int:pk>")]
    assert unaccounted(found, rows) == [
        "urls 'api/v1/fresh/<int:pk>' has no row in tests/security/permission_matrix.py"
    ]


def test_a_row_whose_route_is_gone_fails_naming_it() -> None:
    rows = (
        matrix.url("healthz", Door.OPEN, matrix.get(matrix.EVERYONE)),
        matrix.url("api/v1/gone", Door.API, matrix.get(matrix.VIEWERS)),
    )
    found = [(URLS, "healthz")]
    assert unaccounted(found, rows) == ["the row urls 'api/v1/gone' names a route that no longer exists"]


def test_regex_routes_are_joined_as_django_resolves_them() -> None:
    fake = URLResolver(RegexPattern(r"^/"), [path("admin/", include([re_path(r"^(?P<x>a|b)/$", _view)]))])
    assert list(urlconf_routes(fake)) == ["admin/(?P<x>a|b)/$"]
    assert resolve("/admin/tasks/").route in {row.route for row in ROWS}


def test_a_websocket_route_without_a_row_fails_naming_it() -> None:
    from channels.routing import ProtocolTypeRouter

    class Middleware:
        def __init__(self, inner: Any) -> None:
            self.inner = inner

    inner = URLRouter([path("ws/<str:room>", _view)])
    application = ProtocolTypeRouter({"websocket": Middleware(URLRouter([path("chat/", inner), re_path(r"", _view)]))})
    found = list(asgi_routes(application))
    assert found == [(ASGI_WEBSOCKET, "chat/ws/<str:room>"), (ASGI_WEBSOCKET, "")]
    problems = unaccounted(found, (Row(ASGI_WEBSOCKET, "", Door.WEBSOCKET, ()),))
    assert problems == ["asgi.websocket 'chat/ws/<str:room>' has no row in tests/security/permission_matrix.py"]


def test_two_rows_for_one_route_are_refused() -> None:
    row = matrix.url("healthz", Door.OPEN, matrix.get(matrix.EVERYONE))
    with pytest.raises(ValueError, match="two rows"):
        matrix.rows_by_key((row, row))


# --- the world the cells act on ----------------------------------------------------------------

TASK_SPEC = {"title": "The matrix's task", "risk_tier": 3}


def build_world() -> dict[str, Any]:
    users = {who: role_user(f"matrix-{who}", role) for who, role in ROLE_OF.items()}
    # The console lets in staff users only; the roles decide what they may do there (and
    # being staff grants nothing anywhere else, as every cell below shows).
    User.objects.filter(pk__in=[u.pk for u in users.values()]).update(is_staff=True)
    viewer, operator, admin = users[VIEWER], users[OPERATOR], users[ADMIN]
    task = services.task_create(spec=TASK_SPEC, actor=operator)
    reviewed = services.task_create(spec={**TASK_SPEC, "title": "Reviewed", "risk_tier": 1}, actor=operator)
    Task.objects.filter(pk=reviewed.pk).update(state="awaiting_review", attempt=1)
    Verdict.objects.create(task=reviewed, attempt=1, decision="approved", automatic=True, score=1.0, threshold=0.9)
    worker = Worker.objects.create(name="matrix-worker", base_url="http://127.0.0.1:9")
    expires = timezone.now() + timedelta(days=7)
    waiver = {
        "title": "Vendored markers",
        "reason": "third_party_constraint",
        "gates": ["placeholders"],
        "justification": "The vendored SDK ships its own markers; we do not edit vendored code.",
        "expires_at": expires,
    }
    pending = waivers.waiver_request(actor=operator, **waiver)
    approved = waivers.waiver_request(actor=operator, **waiver)
    waivers.waiver_approve(waiver_id=approved.pk, actor=admin)
    session = chat_services.session_create(actor=operator, title="ops")
    message = chat_services.message_post(actor=operator, session=session, content="hello")
    saved = services.saved_view_create(actor=viewer, name="mine", query="state=queued")
    saved_query = query_services.query_create(
        actor=admin, name="matrix", sql="SELECT title FROM tasks_task", shared=True
    )
    values = {
        "task": str(task.pk),
        "reviewed_task": str(reviewed.pk),
        "worker": worker.name,
        "worker_pk": str(worker.pk),
        "missing_worker": "no-such-worker",
        "pending_waiver": str(pending.pk),
        "approved_waiver": str(approved.pk),
        "chat_session": str(session.pk),
        "chat_message": str(message.pk),
        "saved_view": str(saved.pk),
        "saved_query": str(saved_query.pk),
        "query_run": str(QueryRun.objects.create(query=saved_query, user=admin, outcome="ok").pk),
        "api_token": str(ApiToken.objects.create(user=viewer, prefix="agy_matrix", digest="0" * 64).pk),
        "audit_record": str(AuditRecord.objects.order_by("seq").first().pk),
        "group": str(Group.objects.get(name="viewer").pk),
        "viewer_user": str(viewer.pk),
        "task_content_type": str(ContentType.objects.get_for_model(Task).pk),
        "in_a_week": expires.isoformat(),
    }
    tokens = {who: api_key_for(user) for who, user in users.items()}
    sessions = {}
    for who, user in users.items():
        client = Client()
        client.force_login(user)
        sessions[who] = client.cookies[settings.SESSION_COOKIE_NAME].value
    return {"values": values, "tokens": tokens, "sessions": sessions}


# Bookkeeping a refused request may rightly write: an API token's last use is recorded when it
# authenticates, before the permission check refuses (at most once a minute a token).
NOT_DECISIONS = {"security.ApiToken": {"last_used_at"}}


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (the test's world is small)."""
    tables = {}
    for model in apps.get_models():
        if not model._meta.managed or model._meta.proxy:
            continue
        skip = NOT_DECISIONS.get(model._meta.label, set())
        columns = [f.attname for f in model._meta.concrete_fields if f.name not in skip]
        tables[model._meta.label] = list(model._base_manager.order_by("pk").values_list(*columns))
    return tables


def client_for(row: Row, principal: str, world: dict[str, Any]) -> Client:
    if row.door in (Door.API, Door.STREAM):
        client = APIClient()
        if principal != ANONYMOUS:
            client.credentials(HTTP_AUTHORIZATION=f"Token {world['tokens'][principal]}")
        return client
    client = Client()
    if principal != ANONYMOUS:
        client.cookies[settings.SESSION_COOKIE_NAME] = world["sessions"][principal]
    return client


def send(client: Client, row: Row, method: str, url: str, body: Any) -> Any:
    call = getattr(client, method.lower())
    if row.door in (Door.API, Door.STREAM):
        return call(url, body, format="json") if body is not None else call(url)
    if method in ("GET", "DELETE"):
        return call(url)
    return call(url, body or {})


def http_cells() -> Iterator[Any]:
    for row in ROWS:
        if row.router != URLS:
            continue
        for access in row.methods:
            for principal in PRINCIPALS:
                yield pytest.param(row, access, principal, id=f"{access.method} /{row.route} as {principal}")


def undeclared_methods() -> Iterator[Any]:
    for row in ROWS:
        # The console's views answer any method as GET and write only on POST.
        if row.router != URLS or row.door is Door.CONSOLE:
            continue
        declared = {a.method for a in row.methods}
        for method in METHODS:
            if method not in declared:
                yield pytest.param(row, method, id=f"{method} /{row.route}")


def csrf_cells() -> Iterator[Any]:
    """Each unsafe method of a door that takes the session, as its highest principal let through."""
    for row in ROWS:
        if row.router != URLS or row.door not in (Door.OPEN, Door.API, Door.PAGE, Door.CONSOLE):
            continue
        for access in row.methods:
            signed_in = [p for p in PRINCIPALS if p in access.allowed and p != ANONYMOUS]
            if access.method != "GET" and signed_in:
                yield pytest.param(row, access, signed_in[-1], id=f"{access.method} /{row.route} as {signed_in[-1]}")


@pytest.fixture(scope="class")
def world(django_db_setup, django_db_blocker) -> Iterator[dict[str, Any]]:
    """Made once for the class's cells, inside a transaction rolled back at the end."""
    with django_db_blocker.unblock(), transaction.atomic():
        yield build_world()
        transaction.set_rollback(True)


@pytest.mark.django_db
class TestHttpCells:
    @pytest.mark.parametrize(("row", "access", "principal"), list(http_cells()))
    def test_the_cell(self, world, row: Row, access: Access, principal: str) -> None:
        expected = row.cell(access, principal)
        url = row.path_for(world["values"])
        assert resolve(url).route == row.route, "the cell's URL is another row's"
        before = None if expected.allowed else snapshot()
        response = send(
            client_for(row, principal, world), row, access.method, url, matrix.filled(access.body, world["values"])
        )
        detail = getattr(response, "content", b"")[:300] if not response.streaming else b"(a stream)"
        assert response.status_code == expected.status, detail
        location = response.get("Location", "")
        if expected.to_login:
            assert location.startswith(matrix.REDIRECT_TO_LOGIN[row.door] + "?next="), location
        elif row.door in matrix.REDIRECT_TO_LOGIN and response.status_code == 302:
            assert "?next=" not in location, f"sent to log in: {location}"
        if row.door in (Door.API, Door.STREAM) and not expected.allowed:
            assert response["Content-Type"] == "application/json", "every /api/ answer is JSON"
        if row.door is Door.STREAM and expected.allowed:
            assert response.streaming
            assert response["Content-Type"] == "text/event-stream"
        if before is not None:
            assert snapshot() == before, "a refused request wrote something"

    @pytest.mark.parametrize(("row", "method"), list(undeclared_methods()))
    def test_a_method_without_a_cell_is_not_allowed(self, world, row: Row, method: str) -> None:
        """The rows name every method a route takes: any other gets 405, even as admin."""
        # The open doors anonymously (/login/ sends a signed-in user on, whatever the method);
        # the others as admin, past every guard.
        who = ANONYMOUS if row.door is Door.OPEN else ADMIN
        before = snapshot()
        response = send(client_for(row, who, world), row, method, row.path_for(world["values"]), {})
        assert response.status_code == 405
        assert snapshot() == before

    @pytest.mark.parametrize(("row", "access", "principal"), list(csrf_cells()))
    def test_a_session_without_its_csrf_token_is_refused(self, world, row: Row, access: Access, principal: str):
        """Browsers send the cookie by themselves: an unsafe request on it needs the CSRF token too."""
        client = Client(enforce_csrf_checks=True)
        client.cookies[settings.SESSION_COOKIE_NAME] = world["sessions"][principal]
        before = snapshot()
        body = matrix.filled(access.body, world["values"]) or {}
        url = row.path_for(world["values"])
        if row.door is Door.API:
            response = getattr(client, access.method.lower())(url, json.dumps(body), content_type="application/json")
        else:
            response = getattr(client, access.method.lower())(url, body)
        assert response.status_code == 403
        assert snapshot() == before


# --- the ASGI routers: the streams under daphne and the WebSocket --------------------------------


def async_test(fn):
    """Run an async test on its own event loop (as tests/chat/test_consumer.py does)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        return asyncio.run(fn(*args, **kwargs))

    return run


def asgi_rows(router: str) -> list[Any]:
    return [
        pytest.param(row, access, principal, id=f"{row.router} /{row.route} as {principal}")
        for row in ROWS
        if row.router == router
        for access in row.methods
        for principal in PRINCIPALS
    ]


@pytest.fixture
def asgi_world(nobody, viewer, operator, admin_user, monkeypatch) -> Iterator[dict[str, Any]]:
    """Committed rows (the ASGI apps read them from their own threads), and clean threads after."""
    from django_eventstream import eventstream

    from tests.chat.test_consumer import close_pool_connections

    # Delivery in this process: each test runs its own event loop (tests/chat/test_consumer.py).
    monkeypatch.setattr(eventstream, "redis_client", None)
    users = {NOBODY: nobody, VIEWER: viewer, OPERATOR: operator, ADMIN: admin_user}
    session = chat_services.session_create(actor=operator, title="ops")
    yield {
        "values": {"chat_session": str(session.pk)},
        "tokens": {who: api_key_for(user) for who, user in users.items()},
    }
    close_pool_connections()


def headers_for(principal: str, world: dict[str, Any]) -> list[tuple[bytes, bytes]]:
    headers = [(b"host", b"testserver")]
    if principal != ANONYMOUS:
        headers.append((b"authorization", f"Token {world['tokens'][principal]}".encode()))
    return headers


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("row", "access", "principal"), asgi_rows(ASGI_WEBSOCKET))
@async_test
async def test_the_websocket_cell(asgi_world, row: Row, access: Access, principal: str) -> None:
    from config.asgi import application

    expected = row.cell(access, principal)
    ws = WebsocketCommunicator(
        application, row.path_for(asgi_world["values"]), headers=headers_for(principal, asgi_world)
    )
    connected, code = await ws.connect(timeout=ASGI_TIMEOUT_S)
    if not connected:
        # Refused at the handshake: daphne answers such a close with HTTP 403.
        assert expected.status == 403, f"handshake refused ({code})"
        return
    first = await ws.receive_json_from(timeout=ASGI_TIMEOUT_S)
    if expected.status == matrix.WS_OPEN:
        assert first["type"] == "history", first
        await ws.disconnect()
        return
    assert first["type"] == "error", first
    assert first["close_code"] == expected.status, first
    close = await ws.receive_output(timeout=ASGI_TIMEOUT_S)
    assert close == {"type": "websocket.close", "code": expected.status}


def http_scope(path_: str, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path_,
        "raw_path": path_.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
    }


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("row", "access", "principal"), asgi_rows(ASGI_HTTP))
@async_test
async def test_the_asgi_stream_cell(asgi_world, row: Row, access: Access, principal: str) -> None:
    """The stream as daphne serves it (StreamApp): the answer's head, then the client leaves."""
    from config.asgi import application

    expected = row.cell(access, principal)
    app = ApplicationCommunicator(application, http_scope(row.path_for({}), headers_for(principal, asgi_world)))
    await app.send_input({"type": "http.request", "body": b""})
    start = await app.receive_output(timeout=ASGI_TIMEOUT_S)
    headers = {k.decode().lower(): v.decode() for k, v in start["headers"]}
    assert start["status"] == expected.status
    if expected.allowed:
        assert headers["content-type"] == "text/event-stream"
        first = await app.receive_output(timeout=ASGI_TIMEOUT_S)
        assert b"event: stream-open" in first["body"]
        await app.send_input({"type": "http.disconnect"})
    else:
        assert headers["content-type"] == "application/json"
        body = await app.receive_output(timeout=ASGI_TIMEOUT_S)
        assert body["body"].startswith(b"{")
    await app.wait(timeout=ASGI_TIMEOUT_S)


@pytest.mark.django_db(transaction=True)
@async_test
async def test_every_other_http_path_goes_to_djangos_urlconf(asgi_world) -> None:
    """The catch-all of the ASGI http router is Django itself, whose routes are the rows above."""
    from config.asgi import application

    app = ApplicationCommunicator(application, http_scope("/api/v1/tasks", headers_for(ANONYMOUS, asgi_world)))
    await app.send_input({"type": "http.request", "body": b""})
    start = await app.receive_output(timeout=ASGI_TIMEOUT_S)
    assert start["status"] == 401
    await app.wait(timeout=ASGI_TIMEOUT_S)


# --- docs/security.md ------------------------------------------------------------------------------


def test_docs_security_holds_the_current_table() -> None:
    doc = matrix.DOC.read_text()
    assert matrix.with_table(doc, matrix.markdown()) == doc, (
        "docs/security.md is behind the matrix: run `python -m tests.security.permission_matrix --update`"
    )


def test_the_table_has_a_line_for_every_method_of_every_row() -> None:
    lines = [line for line in matrix.markdown().splitlines() if line.startswith("| `")]
    assert len(lines) == sum(max(len(row.methods), 1) for row in ROWS)
    assert "| `/api/v1/tasks` | POST | ✗ 401 | ✗ 403 | ✗ 403 | ✓ 201 | ✓ 201 |  |" in lines
    assert "| `/tasks/new/` | GET | ✗ login | ✗ 403 | ✗ 403 | ✓ 200 | ✓ 200 |  |" in lines
