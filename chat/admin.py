"""Chat in the operator console: read-only (messages are a record, written only through chat)."""

from django.contrib import admin

from chat.models import ChatMessage, ChatSession
from security.admin_lookups import DeclaredLookupsOnly


class ReadOnly(DeclaredLookupsOnly, admin.ModelAdmin):
    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class MessageInline(admin.TabularInline):
    model = ChatMessage
    fields = ["seq", "role", "content", "metadata", "created_at"]
    readonly_fields = fields
    ordering = ["-seq"]
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = False

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-seq")


@admin.register(ChatSession)
class ChatSessionAdmin(ReadOnly):
    list_display = ["id", "title", "owner", "status", "message_seq", "created_at", "last_message_at"]
    list_filter = ["status"]
    search_fields = ["title", "owner__username"]
    list_select_related = ["owner"]


@admin.register(ChatMessage)
class ChatMessageAdmin(ReadOnly):
    list_display = ["session", "seq", "role", "content", "created_at"]
    list_filter = ["role"]
    list_select_related = ["session"]
    show_full_result_count = False
