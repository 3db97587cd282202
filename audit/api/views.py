"""Audit API: search the log. Read-only: records are written only by audit.services."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from audit import selectors
from audit.api.serializers import ORDERING, AuditPageSerializer, AuditQuerySerializer, AuditRecordSerializer
from config.pagination import keyset_page
from security.permissions import IsViewer


def _query(request: Request) -> dict[str, Any]:
    data = {k: (v if len(v := request.query_params.getlist(k)) > 1 else v[0]) for k in request.query_params}
    serializer = AuditQuerySerializer(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


class AuditListView(APIView):
    permission_classes = [IsViewer]

    @extend_schema(
        parameters=[AuditQuerySerializer],
        responses=AuditPageSerializer,
        summary="Search the audit log (action, actor, resource, time range; keyset cursor pagination)",
    )
    def get(self, request: Request) -> Response:
        params = _query(request)
        qs = selectors.audit_matching(params)
        page = keyset_page(qs, ordering=ORDERING, cursor=params.get("cursor"), page_size=params["page_size"])
        next_url = None
        if page.next_cursor:
            query = request.query_params.copy()
            query["cursor"] = page.next_cursor
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response({"results": AuditRecordSerializer(page.items, many=True).data, "next": next_url})
