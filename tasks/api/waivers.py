"""Waiver API: request, list, read, approve, reject and revoke waivers.

Thin views: each validates its input, calls one service or selector of
:mod:`tasks.review.waivers` and serializes the result. The services check the roles
and the four-eyes rule again, so the permission classes here only give the
early, uniform 401/403 that every API view gives.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.openapi import error
from config.pagination import keyset_page
from config.strict import CommaListField, StrictSerializer
from security.permissions import IsAdminRole, IsOperatorOrReadOnly
from tasks.models import Gate, Waiver, WaiverStatus
from tasks.review import waiver_selectors, waivers

# Newest first, on the (created_at, id) index.
ORDERING = ["-created_at", "-id"]

FORBIDDEN = error("No role, the wrong role, or the requester deciding their own waiver.")
NOT_FOUND = error("No waiver with this id.")
CONFLICT = error("Not allowed from the waiver's current status (or it has expired).")


class WaiverListQuerySerializer(StrictSerializer):
    status = CommaListField(child=serializers.ChoiceField(choices=WaiverStatus.choices), required=False)
    task = serializers.UUIDField(required=False)
    gate = serializers.ChoiceField(choices=Gate.choices, required=False)
    cursor = serializers.CharField(max_length=500, required=False)
    page_size = serializers.IntegerField(min_value=1, max_value=500, required=False, default=50)
    format = serializers.CharField(required=False)  # DRF's ?format=json|api


class WaiverSerializer(serializers.ModelSerializer):
    gates = serializers.ListField(child=serializers.ChoiceField(choices=Gate.choices), read_only=True)
    task = serializers.UUIDField(source="task_id", allow_null=True, read_only=True, help_text="Null: every task.")
    active = serializers.BooleanField(
        source="is_active", read_only=True, help_text="Approved and not yet expired: it waives its gates now."
    )
    # Null until decided or revoked, and once the user is deleted (SET_NULL).
    requested_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    decided_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)
    revoked_by = serializers.SlugRelatedField(slug_field="username", read_only=True, allow_null=True)

    class Meta:
        model = Waiver
        fields = [
            "id",
            "title",
            "reason",
            "gates",
            "justification",
            "expires_at",
            "task",
            "status",
            "active",
            "requested_by",
            "created_at",
            "decided_by",
            "decided_at",
            "decision_note",
            "revoked_by",
            "revoked_at",
            "revoke_reason",
        ]
        read_only_fields = fields


class WaiverPageSerializer(serializers.Serializer):
    """The list response: one page and the URL of the next (null on the last)."""

    results = WaiverSerializer(many=True)
    next = serializers.URLField(allow_null=True)


def _query(serializer_class: type[StrictSerializer], request: Request) -> dict[str, Any]:
    data = {k: (v if len(v := request.query_params.getlist(k)) > 1 else v[0]) for k in request.query_params}
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _body(serializer_class: type[StrictSerializer], request: Request) -> dict[str, Any]:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _detail(waiver: Waiver, *, status_code: int = status.HTTP_200_OK) -> Response:
    # Re-read with the related users, whatever the service returned.
    fresh = waiver_selectors.waiver_get(waiver_id=waiver.pk)
    return Response(WaiverSerializer(fresh).data, status=status_code)


class WaiverListView(APIView):
    permission_classes = [IsOperatorOrReadOnly]

    @extend_schema(
        operation_id="waivers_list",
        parameters=[WaiverListQuerySerializer],
        responses=WaiverPageSerializer,
        summary="List waivers, newest first (filters, keyset cursor pagination)",
    )
    def get(self, request: Request) -> Response:
        params = _query(WaiverListQuerySerializer, request)
        qs = waiver_selectors.waiver_list(
            statuses=params.get("status"), task_id=params.get("task"), gate=params.get("gate")
        )
        page = keyset_page(qs, ordering=ORDERING, cursor=params.get("cursor"), page_size=params["page_size"])
        next_url = None
        if page.next_cursor:
            query = request.query_params.copy()
            query["cursor"] = page.next_cursor
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response({"results": WaiverSerializer(page.items, many=True).data, "next": next_url})

    @extend_schema(
        operation_id="waivers_request",
        request=waivers.WaiverRequestSerializer,
        responses={201: WaiverSerializer, 403: FORBIDDEN},
        summary="Request a waiver (pending until an admin other than you approves it)",
    )
    def post(self, request: Request) -> Response:
        data = _body(waivers.WaiverRequestSerializer, request)
        waiver = waivers.waiver_request(
            actor=request.user,
            title=data["title"],
            reason=data["reason"],
            gates=data["gates"],
            justification=data["justification"],
            expires_at=data["expires_at"],
            task_id=data["task"],
        )
        return _detail(waiver, status_code=status.HTTP_201_CREATED)


class WaiverDetailView(APIView):
    @extend_schema(
        operation_id="waivers_retrieve",
        responses={200: WaiverSerializer, 404: NOT_FOUND},
        summary="A waiver",
    )
    def get(self, request: Request, waiver_id: str) -> Response:
        return Response(WaiverSerializer(waiver_selectors.waiver_get(waiver_id=waiver_id)).data)


class WaiverApproveView(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(
        operation_id="waivers_approve",
        request=waivers.WaiverDecisionSerializer,
        responses={200: WaiverSerializer, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT},
        summary="Approve a pending waiver (admin; not its requester)",
    )
    def post(self, request: Request, waiver_id: str) -> Response:
        data = _body(waivers.WaiverDecisionSerializer, request)
        return _detail(waivers.waiver_approve(waiver_id=waiver_id, actor=request.user, note=data["note"]))


class WaiverRejectView(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(
        operation_id="waivers_reject",
        request=waivers.WaiverDecisionSerializer,
        responses={200: WaiverSerializer, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT},
        summary="Reject a pending waiver (admin; not its requester)",
    )
    def post(self, request: Request, waiver_id: str) -> Response:
        data = _body(waivers.WaiverDecisionSerializer, request)
        return _detail(waivers.waiver_reject(waiver_id=waiver_id, actor=request.user, note=data["note"]))


class WaiverRevokeView(APIView):
    permission_classes = [IsAdminRole]

    @extend_schema(
        operation_id="waivers_revoke",
        request=waivers.WaiverRevokeSerializer,
        responses={200: WaiverSerializer, 403: FORBIDDEN, 404: NOT_FOUND, 409: CONFLICT},
        summary="Revoke a pending or approved waiver (admin; reason of at least 10 characters)",
    )
    def post(self, request: Request, waiver_id: str) -> Response:
        data = _body(waivers.WaiverRevokeSerializer, request)
        return _detail(waivers.waiver_revoke(waiver_id=waiver_id, actor=request.user, reason=data["reason"]))
