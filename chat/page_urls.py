"""The chat pages (chat.pages)."""

from django.urls import path

from chat import pages

urlpatterns = [
    path("chat/", pages.chat_list, name="chat-list"),
    path("chat/new/", pages.chat_new, name="chat-new"),
    path("chat/<uuid:session_id>/", pages.chat_session, name="chat-session"),
    path("chat/<uuid:session_id>/send/", pages.chat_send, name="chat-send"),
]
