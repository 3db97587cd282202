"""The chat REST API: anonymous, wrong role, other users, bad input, paging."""

from __future__ import annotations

import pytest

from chat import services
from chat.models import MessageRole

pytestmark = pytest.mark.django_db

CREATE = "/api/v1/chat/session"


def detail(session_id, query: str = "") -> str:
    return f"/api/v1/chat/session/{session_id}" + (f"?{query}" if query else "")


def test_anonymous_gets_401_and_a_user_without_a_role_403(anon_client, nobody_client):
    assert anon_client.post(CREATE, {}, format="json").status_code == 401
    assert anon_client.get("/api/v1/chat/sessions").status_code == 401
    r = nobody_client.post(CREATE, {}, format="json")
    assert r.status_code == 403
    assert r.json()["code"] == "permission_denied"


def test_a_viewer_starts_a_session_and_gets_its_websocket_url(viewer_client, viewer):
    r = viewer_client.post(CREATE, {"title": "  questions  "}, format="json")
    assert r.status_code == 201, r.content
    body = r.json()
    assert set(body) == {"session_id", "created_at", "websocket_url"}
    assert body["websocket_url"] == f"ws://testserver/api/v1/chat/ws/{body['session_id']}"
    listed = viewer_client.get("/api/v1/chat/sessions").json()
    assert [s["session_id"] for s in listed] == [body["session_id"]]
    assert listed[0]["title"] == "questions"
    assert listed[0]["owner"] == viewer.username


@pytest.mark.parametrize(
    ("body", "field"),
    [({"title": 5}, "title"), ({"title": "x" * 201}, "title"), ({"topic": "x"}, "topic")],
)
def test_bad_input_names_the_field_and_creates_nothing(viewer_client, body, field):
    r = viewer_client.post(CREATE, body, format="json")
    assert r.status_code == 400
    assert field in r.json()
    assert viewer_client.get("/api/v1/chat/sessions").json() == []


def test_history_is_paged_by_sequence(operator_client, operator):
    session = services.session_create(actor=operator)
    for i in range(7):
        services.message_append(session_id=session.pk, role=MessageRole.USER, content=f"m{i}")
    seqs = lambda r: [m["seq"] for m in r.json()["messages"]]  # noqa: E731
    assert seqs(operator_client.get(detail(session.pk))) == [1, 2, 3, 4, 5, 6, 7]
    assert seqs(operator_client.get(detail(session.pk, "after=3&limit=2"))) == [4, 5]
    assert seqs(operator_client.get(detail(session.pk, "before=4&limit=2"))) == [2, 3]
    assert seqs(operator_client.get(detail(session.pk, "after=1&before=5"))) == [2, 3, 4]
    r = operator_client.get(detail(session.pk, "limit=0"))
    assert r.status_code == 400
    assert "limit" in r.json()
    r = operator_client.get(detail(session.pk, "page=2"))
    assert r.status_code == 400
    assert "page" in r.json()


def test_another_users_session_is_403_an_admins_200_an_unknown_404(viewer_client, admin_client_api, operator):
    session = services.session_create(actor=operator)
    r = viewer_client.get(detail(session.pk))
    assert r.status_code == 403
    assert "another user" in r.json()["detail"]
    assert admin_client_api.get(detail(session.pk)).status_code == 200
    assert viewer_client.get(detail("00000000-0000-4000-8000-000000000000")).status_code == 404
    assert viewer_client.get(detail("not-a-uuid")).status_code == 404


def test_close_then_close_again_is_a_409(operator_client, viewer_client, operator):
    session = services.session_create(actor=operator)
    assert viewer_client.post(detail(session.pk) + "/close").status_code == 403
    r = operator_client.post(detail(session.pk) + "/close")
    assert r.status_code == 200
    assert r.json()["status"] == "closed"
    again = operator_client.post(detail(session.pk) + "/close")
    assert again.status_code == 409
    assert again.json()["code"] == "session_not_active"
