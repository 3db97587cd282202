from django.urls import path

from chat import api

urlpatterns = [
    path("chat/session", api.SessionCreateView.as_view(), name="chat-session-create"),
    path("chat/sessions", api.SessionListView.as_view(), name="chat-session-list"),
    path("chat/session/<str:session_id>", api.SessionDetailView.as_view(), name="chat-session-detail"),
    path("chat/session/<str:session_id>/close", api.SessionCloseView.as_view(), name="chat-session-close"),
]
