from django.contrib import admin

from audit.models import AuditRecord
from security import roles


@admin.register(AuditRecord)
class AuditRecordAdmin(admin.ModelAdmin):
    """Read-only for everyone, superusers included."""

    list_display = ("created_at", "actor", "action", "resource_type", "resource_id", "reason")
    list_filter = ("action", "resource_type")
    search_fields = ("=resource_id", "=actor", "action")
    show_full_result_count = False
    readonly_fields = [f.name for f in AuditRecord._meta.fields]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_module_permission(self, request) -> bool:
        return roles.can_view(request.user)

    def has_view_permission(self, request, obj=None) -> bool:
        return roles.can_view(request.user)
