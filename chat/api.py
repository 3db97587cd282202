"""Chat REST API: start a session, read it with its history (paged by sequence), list yours, close one."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from chat import services
from chat.models import ChatSession
from chat.protocol import HISTORY_LIMIT, message_data
from config.openapi import CONFLICT
from config.strict import StrictCharField, StrictSerializer
from security.permissions import IsViewer


class SessionCreateSerializer(StrictSerializer):
    title = StrictCharField(max_length=services.TITLE_MAX, required=False, allow_blank=True, default="")


class HistoryQuerySerializer(StrictSerializer):
    after = serializers.IntegerField(
        min_value=0, required=False, help_text="The first messages after this sequence number, oldest first."
    )
    before = serializers.IntegerField(
        min_value=1,
        required=False,
        help_text="Only messages before this sequence number (alone: the newest of them, for paging backwards).",
    )
    limit = serializers.IntegerField(min_value=1, max_value=HISTORY_LIMIT, default=100)
    format = serializers.CharField(required=False)


class MessageSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    role = serializers.ChoiceField(choices=["user", "assistant", "system"])
    content = serializers.CharField()
    metadata = serializers.DictField()
    created_at = serializers.DateTimeField()


class SessionSerializer(serializers.ModelSerializer):
    session_id = serializers.UUIDField(source="pk", read_only=True)
    owner = serializers.CharField(source="owner.get_username", read_only=True)
    websocket_url = serializers.SerializerMethodField()

    class Meta:
        model = ChatSession
        fields = [
            "session_id",
            "title",
            "owner",
            "status",
            "created_at",
            "last_message_at",
            "expires_at",
            "message_seq",
            "websocket_url",
        ]

    def get_websocket_url(self, session: ChatSession) -> str:
        request = self.context["request"]
        scheme = "wss" if request.is_secure() else "ws"
        return f"{scheme}://{request.get_host()}/api/v1/chat/ws/{session.pk}"


class SessionDetailSerializer(SessionSerializer):
    """A session with one page of its history (``GET /api/v1/chat/session/{id}``)."""

    messages = MessageSerializer(many=True, read_only=True, source="page")

    class Meta(SessionSerializer.Meta):
        fields = [*SessionSerializer.Meta.fields, "messages"]


class SessionCreatedSerializer(serializers.Serializer):
    session_id = serializers.UUIDField()
    created_at = serializers.DateTimeField()
    websocket_url = serializers.CharField()


class SessionListView(APIView):
    permission_classes = [IsViewer]

    @extend_schema(responses=SessionSerializer(many=True), summary="Your chat sessions, newest first")
    def get(self, request: Request) -> Response:
        sessions = services.session_list(actor=request.user)
        return Response(SessionSerializer(sessions, many=True, context={"request": request}).data)


class SessionCreateView(APIView):
    permission_classes = [IsViewer]

    @extend_schema(
        request=SessionCreateSerializer, responses={201: SessionCreatedSerializer}, summary="Start a chat session"
    )
    def post(self, request: Request) -> Response:
        body = SessionCreateSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        session = services.session_create(actor=request.user, title=body.validated_data["title"])
        data = SessionSerializer(session, context={"request": request}).data
        created = {
            "session_id": data["session_id"],
            "created_at": data["created_at"],
            "websocket_url": data["websocket_url"],
        }
        return Response(created, status=status.HTTP_201_CREATED)


class SessionDetailView(APIView):
    permission_classes = [IsViewer]

    @extend_schema(
        parameters=[HistoryQuerySerializer],
        responses=SessionDetailSerializer,
        summary="A chat session with its history, paged by sequence (after/before)",
    )
    def get(self, request: Request, session_id: str) -> Response:
        query = HistoryQuerySerializer(data=request.query_params.dict())
        query.is_valid(raise_exception=True)
        params = query.validated_data
        session = services.session_get(actor=request.user, session_id=session_id)
        session.page = [
            message_data(m)
            for m in services.history(
                session=session, after=params.get("after"), before=params.get("before"), limit=params["limit"]
            )
        ]
        return Response(SessionDetailSerializer(session, context={"request": request}).data)


class SessionCloseView(APIView):
    permission_classes = [IsViewer]

    @extend_schema(request=None, responses={200: SessionSerializer, 409: CONFLICT}, summary="Close a chat session")
    def post(self, request: Request, session_id: str) -> Response:
        session = services.session_close(actor=request.user, session_id=session_id)
        return Response(SessionSerializer(session, context={"request": request}).data)
