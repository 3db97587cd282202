"""ASGI entry point: the SSE streams on their own app, everything else through Django.

The two stream paths go to :class:`metrics.stream.views.StreamApp`, which streams from the
event loop without holding one of Django's request threads per client (see its module).
WebSockets: the chat consumer, behind its token/cookie and origin rules (chat/auth.py).
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402  (needs apps loaded)
from channels.security.websocket import WebsocketDenier  # noqa: E402
from django.urls import path, re_path  # noqa: E402

from chat.auth import ChatAuth  # noqa: E402
from chat.consumers import ChatConsumer  # noqa: E402
from metrics.stream.views import KINDS, StreamApp  # noqa: E402

streams = StreamApp()

application = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                *(path(route.lstrip("/"), streams) for route in KINDS),
                # Everything else, any path (a newline in it included), goes to Django.
                re_path(r"", django_asgi_app),
            ]
        ),
        "websocket": ChatAuth(
            URLRouter(
                [
                    # Any id: a malformed one is closed with 4404 like an unknown one.
                    path("api/v1/chat/ws/<str:session_id>", ChatConsumer.as_asgi()),
                    # Anything else: the handshake is refused (403), not a routing error.
                    re_path(r"", WebsocketDenier.as_asgi()),
                ]
            )
        ),
    }
)
