"""Task API: thin views that validate input, call one service or selector, serialize."""

from __future__ import annotations

from collections.abc import Callable

from django.db import transaction
from drf_spectacular.utils import PolymorphicProxySerializer, extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from config.openapi import CONFLICT, error
from config.pagination import keyset_page
from security.permissions import IsOperatorOrReadOnly
from tasks import selectors, services
from tasks.api.serializers import (
    ORDERINGS,
    TASK_ACTION_REQUEST,
    CancelSerializer,
    EventsQuerySerializer,
    ProvenanceSerializer,
    TaskDetailSerializer,
    TaskEventPageSerializer,
    TaskEventSerializer,
    TaskListQuerySerializer,
    TaskPageSerializer,
    TaskSerializer,
    task_action_serializer,
)
from tasks.models import Task
from tasks.review import verdicts
from tasks.spec import WorkingSpecSerializer


def _query(serializer_class: type, request: Request) -> dict:
    data = {k: (v if len(v := request.query_params.getlist(k)) > 1 else v[0]) for k in request.query_params}
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def _detail(task) -> Response:
    context = {"latest_events": selectors.task_latest_events(task=task), "verdict": verdicts.latest_verdict(task)}
    return Response(TaskDetailSerializer(task, context=context).data)


def _answer(act: Callable[[], Task], *, status_code: int = status.HTTP_200_OK) -> Response:
    """Run a service and read its task's detail in the same transaction, so the answer is the task
    as the request left it. Read after the commit, it could already show what a dispatcher did
    next: a created task answered ``running``, a requested change answered with the rerun's verdict."""
    with transaction.atomic():
        task = act()
        response = _detail(selectors.task_get(task_id=task.pk))
    response.status_code = status_code
    return response


class TaskListView(APIView):
    permission_classes = [IsOperatorOrReadOnly]

    @extend_schema(
        parameters=[TaskListQuerySerializer],
        responses=TaskPageSerializer,
        operation_id="tasks_list",
        summary="List tasks (filters, keyset cursor pagination)",
    )
    def get(self, request: Request) -> Response:
        params = _query(TaskListQuerySerializer, request)
        qs = selectors.task_list_matching(params)
        page = keyset_page(
            qs, ordering=ORDERINGS[params["ordering"]], cursor=params.get("cursor"), page_size=params["page_size"]
        )
        next_url = None
        if page.next_cursor:
            query = request.query_params.copy()
            query["cursor"] = page.next_cursor
            next_url = request.build_absolute_uri(f"{request.path}?{query.urlencode()}")
        return Response({"results": TaskSerializer(page.items, many=True).data, "next": next_url})

    @extend_schema(
        request=PolymorphicProxySerializer(
            component_name="TaskCreate",
            serializers=[
                WorkingSpecSerializer,
                WorkingSpecSerializer(many=True),
            ],
            resource_type_field_name=None,
            many=False,
        ),
        responses={
            201: PolymorphicProxySerializer(
                component_name="TaskCreated",
                serializers=[TaskDetailSerializer, TaskSerializer(many=True)],
                resource_type_field_name=None,
                many=False,
            )
        },
        summary="Create a task, or many at once (a list: all or none)",
        description=(
            "A working spec creates one task and answers with its detail. A list of 1 to "
            f"{services.MAX_BULK_CREATE} specs creates them all in one transaction, or none: the "
            "errors name each bad item by its index. The answer is then the list of created tasks."
        ),
    )
    def post(self, request: Request) -> Response:
        if isinstance(request.data, list):
            tasks = services.tasks_create(specs=request.data, actor=request.user)
            return Response(TaskSerializer(tasks, many=True).data, status=status.HTTP_201_CREATED)
        return _answer(lambda: services.task_create(spec=request.data, actor=request.user), status_code=201)


class TaskDetailView(APIView):
    @extend_schema(responses=TaskDetailSerializer, summary="A task with its latest events")
    def get(self, request: Request, task_id: str) -> Response:
        return _detail(selectors.task_get(task_id=task_id))


class TaskEventsView(APIView):
    @extend_schema(
        parameters=[EventsQuerySerializer],
        responses=TaskEventPageSerializer,
        summary="A task's timeline, after a sequence number",
    )
    def get(self, request: Request, task_id: str) -> Response:
        params = _query(EventsQuerySerializer, request)
        task = selectors.task_get(task_id=task_id)
        events = selectors.task_events(task=task, after=params["after"], limit=params["limit"])
        data = TaskEventSerializer(events, many=True).data
        return Response({"results": data, "last_seq": events[-1].seq if events else params["after"]})


class TaskActionView(APIView):
    permission_classes = [IsOperatorOrReadOnly]

    @extend_schema(
        request=TASK_ACTION_REQUEST,
        responses={200: TaskDetailSerializer, 409: CONFLICT},
        summary="Pause, resume, cancel, retry or override a task (409 when illegal from its state)",
    )
    def post(self, request: Request, task_id: str) -> Response:
        body = task_action_serializer(request.data)(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        if data["action"] == "override":
            return _answer(
                lambda: verdicts.task_override(
                    task_id=task_id,
                    actor=request.user,
                    decision=data["decision"],
                    reason=data["reason"],
                    guidance=data["guidance"],
                )
            )
        act = services.ACTION_SERVICES[data["action"]]
        return _answer(lambda: act(task_id=task_id, actor=request.user, reason=data["reason"]))


class TaskCancelView(APIView):
    permission_classes = [IsOperatorOrReadOnly]

    @extend_schema(
        request=CancelSerializer, responses={200: TaskDetailSerializer, 409: CONFLICT}, summary="Cancel a task"
    )
    def post(self, request: Request, task_id: str) -> Response:
        body = CancelSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data["reason"]
        return _answer(lambda: services.task_cancel(task_id=task_id, actor=request.user, reason=reason))


class TaskProvenanceView(APIView):
    @extend_schema(
        responses={200: ProvenanceSerializer, 404: error("No such task, or it has no verdict yet (code no_verdict).")},
        summary="The task's verdict provenance and commit trailer lines",
    )
    def get(self, request: Request, task_id: str) -> Response:
        record = verdicts.provenance(selectors.task_get(task_id=task_id))
        if record is None:
            return Response({"detail": "This task has no verdict yet.", "code": "no_verdict"}, status=404)
        return Response(ProvenanceSerializer(record).data)
