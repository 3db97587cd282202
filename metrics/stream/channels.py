"""The stream channels and who may read them.

Three kinds of channel: ``metrics`` (KPI snapshots), ``tasks`` (every state change of any
task) and ``task-<uuid>`` (every timeline entry of one task). Reading any of them takes the
viewer role, the same predicate the task API uses (:func:`security.roles.can_view`);
django-eventstream asks :class:`AgencyChannelManager` and so does our stream view.
"""

from __future__ import annotations

import uuid
from typing import Any

from django_eventstream.channelmanager import ChannelManagerBase

from security import roles

METRICS = "metrics"
TASKS = "tasks"
TASK_PREFIX = "task-"

# Event types on the channels (the SSE ``event:`` field).
SNAPSHOT = "snapshot"
TASK_CHANGE = "task"
TIMELINE_ENTRY = "event"


def task_channel(task_id: uuid.UUID | str) -> str:
    return f"{TASK_PREFIX}{uuid.UUID(str(task_id))}"


def channel_task_id(channel: str) -> uuid.UUID | None:
    """The task of a ``task-<uuid>`` channel, or None for any other channel."""
    if not channel.startswith(TASK_PREFIX):
        return None
    try:
        return uuid.UUID(channel[len(TASK_PREFIX) :])
    except ValueError:
        return None


def is_known(channel: str) -> bool:
    return channel in (METRICS, TASKS) or channel_task_id(channel) is not None


class AgencyChannelManager(ChannelManagerBase):
    def get_channels_for_request(self, request: Any, view_kwargs: dict[str, Any]) -> set[str]:
        # Our views name the channels; a client cannot add any by query parameters.
        return set(view_kwargs.get("channels", ()))

    def can_read_channel(self, user: Any, channel: str) -> bool:
        return is_known(channel) and roles.can_view(user)

    def is_channel_reliable(self, channel: str) -> bool:
        return True


def resume_id(channel: str, current: int | None = None) -> str:
    """The ``Last-Event-ID`` of ``channel`` as it is now (or at ``current``), for a page to start from.

    A page rendered from the database and then opening its stream would miss what changed in
    between if the stream started "at the present" (when it connects): the page names the id it
    was rendered at instead (``data-last-event-id``), and the stream replays from there.
    """
    from django_eventstream.utils import get_storage, make_id

    return make_id({channel: get_storage().get_current_id(channel) if current is None else current})
