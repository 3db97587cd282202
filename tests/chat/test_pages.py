"""The chat pages: /chat/ (your conversations, a new one) and /chat/<id>/ (history, send without JavaScript)."""

from __future__ import annotations

import pytest
from django.test import Client

from chat import services
from chat.models import ChatSession

pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_anonymous_visitors_are_sent_to_log_in_and_no_role_is_a_403(client, nobody, operator):
    session = services.session_create(actor=operator)
    for url in ("/chat/", f"/chat/{session.pk}/"):
        r = client.get(url)
        assert r.status_code == 302
        assert r["Location"].startswith("/login/?next=")
    assert client.post("/chat/new/").status_code == 302
    assert not ChatSession.objects.exclude(pk=session.pk).exists()
    r = signed_in(nobody).get("/chat/")
    assert r.status_code == 403
    assert "the viewer role" in r.content.decode()


def test_a_viewer_starts_a_conversation_and_lands_on_it(viewer):
    page = signed_in(viewer)
    r = page.post("/chat/new/", {"title": "Questions"})
    session = ChatSession.objects.get(owner=viewer)
    assert r.status_code == 302
    assert r["Location"] == f"/chat/{session.pk}/"
    body = page.get(r["Location"]).content.decode()
    assert 'id="chat-messages"' in body
    assert f'data-session="{session.pk}"' in body
    assert 'data-last-seq="0"' in body
    assert "agency/chat.js" in body
    listing = page.get("/chat/").content.decode()
    assert f'href="/chat/{session.pk}/"' in listing
    assert "Questions" in listing


def test_a_bad_title_is_a_400_next_to_its_field(viewer):
    r = signed_in(viewer).post("/chat/new/", {"title": "x" * 201})
    assert r.status_code == 400
    assert 'id="chat-title-errors"' in r.content.decode()
    assert not ChatSession.objects.exists()


def test_without_javascript_the_form_posts_and_the_reply_shows_after_the_redirect(operator):
    session = services.session_create(actor=operator)
    page = signed_in(operator)
    r = page.post(f"/chat/{session.pk}/send/", {"content": "help"})
    assert r.status_code == 302
    assert r["Location"] == f"/chat/{session.pk}/#message-1"
    body = page.get(f"/chat/{session.pk}/").content.decode()
    assert 'id="message-1" class="chat-message user"' in body
    assert 'id="message-2" class="chat-message assistant"' in body
    assert "Commands:" in body
    assert 'data-last-seq="2"' in body


def test_blank_and_oversized_messages_are_refused_and_nothing_is_stored(operator, settings):
    settings.CHAT_MAX_CONTENT = 10
    session = services.session_create(actor=operator)
    page = signed_in(operator)
    assert page.post(f"/chat/{session.pk}/send/", {"content": "   "}).status_code == 302
    r = page.post(f"/chat/{session.pk}/send/", {"content": "x" * 11})
    assert r.status_code == 400
    assert session.messages.count() == 0


def test_another_users_conversation_is_a_403_and_an_unknown_one_a_404(viewer, operator):
    session = services.session_create(actor=operator)
    page = signed_in(viewer)
    assert page.get(f"/chat/{session.pk}/").status_code == 403
    assert page.post(f"/chat/{session.pk}/send/", {"content": "cancel all"}).status_code == 403
    assert session.messages.count() == 0
    assert page.get("/chat/00000000-0000-4000-8000-000000000000/").status_code == 404


def test_a_closed_conversation_shows_no_form_and_refuses_a_post(operator):
    session = services.session_create(actor=operator)
    services.session_close(actor=operator, session_id=session.pk)
    page = signed_in(operator)
    body = page.get(f"/chat/{session.pk}/").content.decode()
    assert 'id="chat-form"' not in body
    assert "This conversation is closed." in body
    assert page.post(f"/chat/{session.pk}/send/", {"content": "help"}).status_code == 409


def test_a_nul_character_is_refused_with_a_400_and_nothing_is_stored(operator):
    session = services.session_create(actor=operator)
    r = signed_in(operator).post(f"/chat/{session.pk}/send/", {"content": "a\x00b"})
    assert r.status_code == 400
    assert session.messages.count() == 0


def test_a_title_with_a_nul_character_is_a_400(viewer):
    r = signed_in(viewer).post("/chat/new/", {"title": "a\x00b"})
    assert r.status_code == 400
    assert not ChatSession.objects.exists()
