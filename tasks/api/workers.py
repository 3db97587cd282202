"""Worker registry API: list and read (viewers); register, change, enable, disable and delete (admins).

Thin views: each validates its input with the services' own strict serializer, calls one
service or selector of :mod:`tasks.workers` and serializes the result. The services check
the role again, so the permission class only gives the early, uniform 401/403 of every
API view. The token is write-only: responses carry ``has_token`` and a URL without
credentials.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.openapi import error
from config.strict import StrictSerializer, validated
from security.permissions import IsAdminOrReadOnly
from security.redaction import redact_url
from tasks import workers
from tasks.models import Worker

# 400, 401, 403 and 404 bodies come from config.openapi's hook as well; these say what they mean here.
BAD_INPUT = OpenApiResponse(description="Field errors: an unknown field, a wrong JSON type, a refused URL.")
UNAUTHENTICATED = error("Not logged in.")
FORBIDDEN = error("No role, or not the admin role for a change.")
NOT_FOUND = error("No worker is registered under this name.")
NAME_TAKEN = OpenApiResponse(
    response=OpenApiTypes.OBJECT, description="The name is registered already: `{name: [message]}`."
)
BUSY = error("Tasks are running or canceling at this worker (the body says how many, as `active`).")


class WorkerListQuerySerializer(StrictSerializer):
    enabled = serializers.BooleanField(required=False, help_text="Only the enabled (true) or disabled (false) ones.")
    format = serializers.CharField(required=False)  # DRF's ?format=json|api


class WorkerSerializer(serializers.ModelSerializer):
    base_url = serializers.SerializerMethodField(help_text="Without userinfo, query or fragment.")
    capabilities = serializers.ListField(child=serializers.CharField(), read_only=True)
    has_token = serializers.SerializerMethodField(help_text="Whether a bearer token is stored; it is never returned.")

    class Meta:
        model = Worker
        fields = [
            "name",
            "base_url",
            "capabilities",
            "max_concurrency",
            "enabled",
            "has_token",
            "request_timeout_s",
            "retry_max_attempts",
            "retry_initial_backoff_ms",
            "retry_max_backoff_ms",
            "breaker_fail_max",
            "breaker_reset_timeout_s",
            "health_status",
            "health_checked_at",
            "health_latency_ms",
            "breaker_state",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_base_url(self, obj: Worker) -> str:
        # Rows registered before the URL policy may still hold credentials in the URL.
        return redact_url(obj.base_url)

    def get_has_token(self, obj: Worker) -> bool:
        return bool(obj.token_ciphertext)


class WorkerListSerializer(serializers.Serializer):
    results = WorkerSerializer(many=True)


def _query(request: Request) -> dict[str, Any]:
    data = {k: (v if len(v := request.query_params.getlist(k)) > 1 else v[0]) for k in request.query_params}
    return validated(WorkerListQuerySerializer, data)


def _detail(worker: Worker, *, status_code: int = status.HTTP_200_OK) -> Response:
    return Response(WorkerSerializer(worker).data, status=status_code)


class WorkerListView(APIView):
    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(
        operation_id="workers_list",
        parameters=[WorkerListQuerySerializer],
        responses={200: WorkerListSerializer, 400: BAD_INPUT, 401: UNAUTHENTICATED, 403: FORBIDDEN},
        summary="List the registered workers by name",
    )
    def get(self, request: Request) -> Response:
        params = _query(request)
        rows = workers.worker_list(actor=request.user, enabled=params.get("enabled"))
        return Response({"results": WorkerSerializer(rows, many=True).data})

    @extend_schema(
        operation_id="workers_register",
        request=workers.WorkerRegisterSerializer,
        responses={
            201: WorkerSerializer,
            400: BAD_INPUT,
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            409: NAME_TAKEN,
        },
        summary="Register a worker (admin)",
    )
    def post(self, request: Request) -> Response:
        data = validated(workers.WorkerRegisterSerializer, request.data)
        worker = workers.worker_register(actor=request.user, **data)
        return _detail(worker, status_code=status.HTTP_201_CREATED)


class WorkerDetailView(APIView):
    permission_classes = [IsAdminOrReadOnly]

    @extend_schema(
        operation_id="workers_retrieve",
        responses={200: WorkerSerializer, 401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND},
        summary="A worker",
    )
    def get(self, request: Request, name: str) -> Response:
        return _detail(workers.worker_get(actor=request.user, name=name))

    @extend_schema(
        operation_id="workers_update",
        request=workers.WorkerUpdateSerializer,
        responses={
            200: WorkerSerializer,
            400: BAD_INPUT,
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            404: NOT_FOUND,
        },
        summary='Change some settings of a worker (admin); `"token": ""` removes the token',
    )
    def patch(self, request: Request, name: str) -> Response:
        data = validated(workers.WorkerUpdateSerializer, request.data)
        return _detail(workers.worker_update(actor=request.user, name=name, **data))

    @extend_schema(
        operation_id="workers_delete",
        request=None,
        responses={
            204: OpenApiResponse(description="Deleted."),
            401: UNAUTHENTICATED,
            403: FORBIDDEN,
            404: NOT_FOUND,
            409: BUSY,
        },
        summary="Delete a worker (admin); refused while tasks run at it",
    )
    def delete(self, request: Request, name: str) -> Response:
        workers.worker_delete(actor=request.user, name=name)
        return Response(status=status.HTTP_204_NO_CONTENT)


SWITCH_RESPONSES = {
    200: WorkerSerializer,
    400: BAD_INPUT,
    401: UNAUTHENTICATED,
    403: FORBIDDEN,
    404: NOT_FOUND,
}


class _WorkerSwitchView(APIView):
    """Enable or disable; the subclass says which (an already enabled worker enabled again changes nothing)."""

    permission_classes = [IsAdminOrReadOnly]
    enabled: bool

    def post(self, request: Request, name: str) -> Response:
        data = validated(workers.WorkerReasonSerializer, request.data)
        return _detail(
            workers.worker_set_enabled(actor=request.user, name=name, enabled=self.enabled, reason=data["reason"])
        )


@extend_schema_view(
    post=extend_schema(
        operation_id="workers_enable",
        request=workers.WorkerReasonSerializer,
        responses=SWITCH_RESPONSES,
        summary="Enable a worker (admin): the dispatchers route work to it again",
    )
)
class WorkerEnableView(_WorkerSwitchView):
    enabled = True


@extend_schema_view(
    post=extend_schema(
        operation_id="workers_disable",
        request=workers.WorkerReasonSerializer,
        responses=SWITCH_RESPONSES,
        summary="Disable a worker (admin): no new attempts go to it; those in flight finish",
    )
)
class WorkerDisableView(_WorkerSwitchView):
    enabled = False
