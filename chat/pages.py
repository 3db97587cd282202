"""The chat pages: your sessions and a new one (``/chat/``), a session (``/chat/<id>/``).

The session page is server-rendered (its history, a form that posts a message and shows the
reply after a reload, so it works without JavaScript); ``agency/chat.js`` then takes over the
form and talks over the WebSocket, reconnecting with ``after=<the last sequence number it
has>`` so that a dropped socket catches up.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST, require_safe

from chat import commands, services
from chat.protocol import CLIENT_ID_MAX, storable
from config.errors import InvalidInput
from security.pages import page

PAGE = 100


@page()
@require_safe
def chat_list(request: HttpRequest) -> HttpResponse:
    return render(request, "chat/list.html", {"sessions": services.session_list(actor=request.user)})


@page()
@require_POST
def chat_new(request: HttpRequest) -> HttpResponse:
    try:
        session = services.session_create(actor=request.user, title=request.POST.get("title", ""))
    except InvalidInput as error:
        context = {"sessions": services.session_list(actor=request.user), "errors": error.fields}
        return render(request, "chat/list.html", context, status=400)
    return redirect("chat-session", session_id=session.pk)


@page()
@require_safe
def chat_session(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    session = services.session_get(actor=request.user, session_id=session_id)
    history = services.history(session=session, limit=PAGE)
    context = {
        "session": session,
        "history": history,
        "last_seq": history[-1].seq if history else 0,
        "older": bool(history) and history[0].seq > 1,
        "client_id_max": CLIENT_ID_MAX,
    }
    return render(request, "chat/session.html", context)


@page()
@require_POST
def chat_send(request: HttpRequest, session_id: uuid.UUID) -> HttpResponse:
    """The form's post without JavaScript: the message, then the reply, then the page again."""
    content = request.POST.get("content", "")
    if not content.strip():
        messages.error(request, "Type a message first.")
        return redirect("chat-session", session_id=session_id)
    from django.conf import settings

    if len(content) > settings.CHAT_MAX_CONTENT:
        raise InvalidInput(fields={"content": [f"At most {settings.CHAT_MAX_CONTENT} characters."]})
    if not storable(content):
        raise InvalidInput(fields={"content": ["A NUL character cannot be stored."]})
    session = services.session_get(actor=request.user, session_id=session_id)
    posted = services.message_post(actor=request.user, session=session, content=content)
    commands.reply_to(actor=request.user, session=session, posted=posted)
    return redirect(f"/chat/{session_id}/#message-{posted.seq}")
