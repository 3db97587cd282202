"""``/api/v1/queries``: saved queries (list, create, read, update, delete), runs, and run history.

Thin views over metrics.queries.services, which check the roles (viewers read and run their
own and shared queries, admins change them) and record and audit every run.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.openapi import error
from config.strict import StrictBooleanField, StrictCharField, StrictIntegerField, StrictRegexField, StrictSerializer
from metrics.models import ParameterType, QueryRun, SavedQuery
from metrics.queries import services
from security.permissions import IsAdminOrReadOnly

NOT_FOUND = error("No saved query with this id that you may see.")
FORBIDDEN = error("No role, or changing a query without the admin role.")
DUPLICATE = error("The owner already has a query with this name.")
UNAVAILABLE = error("PostgreSQL without a reachable read-only connection (DATABASE_READONLY_URL).")
HISTORY = 100


class ParameterSerializer(StrictSerializer):
    name = StrictRegexField(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
    type = serializers.ChoiceField(choices=ParameterType.choices, default=ParameterType.TEXT)
    default = serializers.JSONField(required=False)


class QueryWriteSerializer(StrictSerializer):
    name = StrictCharField(max_length=200)
    description = StrictCharField(max_length=5000, required=False, allow_blank=True, default="")
    sql = StrictCharField(max_length=20_000, trim_whitespace=False)
    parameters = ParameterSerializer(many=True, required=False, default=list)
    shared = StrictBooleanField(required=False, default=False)


class QueryUpdateSerializer(QueryWriteSerializer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, partial=True, **kwargs)


class QuerySerializer(serializers.ModelSerializer):
    owner = serializers.SlugRelatedField(slug_field="username", read_only=True)
    parameters = ParameterSerializer(many=True, read_only=True)

    class Meta:
        model = SavedQuery
        fields = ["id", "name", "description", "sql", "parameters", "owner", "shared", "created_at", "updated_at"]


class RunRequestSerializer(StrictSerializer):
    params = serializers.JSONField(
        required=False, default=dict, allow_null=True, help_text="Values of the query's parameters (null: none)."
    )
    limit = StrictIntegerField(min_value=1, max_value=services.MAX_PAGE, required=False, default=100)
    offset = StrictIntegerField(min_value=0, max_value=100_000, required=False, default=0)


class RunResultSerializer(serializers.Serializer):
    columns = serializers.ListField(child=serializers.CharField())
    rows = serializers.ListField(child=serializers.ListField(child=serializers.JSONField(allow_null=True)))
    more = serializers.BooleanField(help_text="Rows exist beyond this page (run again with offset).")
    duration_ms = serializers.FloatField()


class RunSerializer(serializers.ModelSerializer):
    user = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = QueryRun
        fields = ["id", "user", "parameters", "started_at", "duration_ms", "rows", "outcome", "error", "kind"]


def _write_fields(data: dict[str, Any]) -> dict[str, Any]:
    if "parameters" in data:
        data["parameters"] = [dict(p) for p in data["parameters"]]
    return data


class QueryListView(APIView):
    permission_classes = [IsAdminOrReadOnly]  # the early 403; the services check again

    @extend_schema(responses={200: QuerySerializer(many=True)}, summary="Saved queries you may see")
    def get(self, request: Request) -> Response:
        queries = services.queries_visible(actor=request.user)[:500]
        return Response(QuerySerializer(queries, many=True).data)

    @extend_schema(
        request=QueryWriteSerializer,
        responses={201: QuerySerializer, 403: FORBIDDEN, 409: DUPLICATE},
        summary="Save a query (admin role)",
    )
    def post(self, request: Request) -> Response:
        body = QueryWriteSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        query = services.query_create(actor=request.user, **_write_fields(dict(body.validated_data)))
        return Response(QuerySerializer(query).data, status=status.HTTP_201_CREATED)


class QueryDetailView(APIView):
    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(responses={200: QuerySerializer, 404: NOT_FOUND}, summary="A saved query")
    def get(self, request: Request, query_id: Any) -> Response:
        return Response(QuerySerializer(services.query_get(actor=request.user, query_id=query_id)).data)

    @extend_schema(
        request=QueryUpdateSerializer,
        responses={200: QuerySerializer, 403: FORBIDDEN, 404: NOT_FOUND, 409: DUPLICATE},
        summary="Change a saved query (admin role)",
    )
    def patch(self, request: Request, query_id: Any) -> Response:
        body = QueryUpdateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = _write_fields({k: v for k, v in body.validated_data.items() if k in request.data})
        query = services.query_update(actor=request.user, query_id=query_id, **fields)
        return Response(QuerySerializer(query).data)

    @extend_schema(responses={204: None, 403: FORBIDDEN, 404: NOT_FOUND}, summary="Delete a saved query (admin role)")
    def delete(self, request: Request, query_id: Any) -> Response:
        services.query_delete(actor=request.user, query_id=query_id)
        return Response(status=status.HTTP_204_NO_CONTENT)


class QueryRunView(APIView):
    @extend_schema(
        request=RunRequestSerializer,
        responses={200: RunResultSerializer, 404: NOT_FOUND, 503: UNAVAILABLE},
        summary="Run a saved query, read-only (recorded and audited)",
    )
    def post(self, request: Request, query_id: Any) -> Response:
        body = RunRequestSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        fields = dict(body.validated_data)
        if fields.get("params") is None:
            fields["params"] = {}
        page = services.query_run(actor=request.user, query_id=query_id, **fields)
        return Response(
            {"columns": page.columns, "rows": page.rows, "more": page.more, "duration_ms": page.duration_ms}
        )


class QueryRunsView(APIView):
    @extend_schema(responses={200: RunSerializer(many=True), 404: NOT_FOUND}, summary="The query's latest runs")
    def get(self, request: Request, query_id: Any) -> Response:
        query = services.query_get(actor=request.user, query_id=query_id)
        runs = QueryRun.objects.filter(query=query).select_related("user")[:HISTORY]
        return Response(RunSerializer(runs, many=True).data)
