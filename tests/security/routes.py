"""Which routes exist: Django's URLconf and the ASGI routers, walked as the permission matrix names them.

A route is ``(router, route)``: ``urls`` and the route string as ``resolve(path).route`` joins
it (``admin/tasks/task/<path:object_id>/change/``), or ``asgi.<protocol>`` and the route of a
Channels ``URLRouter`` in config/asgi.py, found inside its middleware.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from channels.routing import URLRouter
from django.urls import URLResolver, get_resolver

from tests.security.permission_matrix import URLS, Row, rows_by_key


def join(prefix: str, route: str) -> str:
    # As Django joins the routes of a match (ResolverMatch.route): a regex's ^ goes.
    return prefix + route.removeprefix("^")


def urlconf_routes(resolver: URLResolver, prefix: str = "") -> Iterator[str]:
    """Every route of ``resolver``'s patterns and its includes, joined as ``resolve()`` names them."""
    for pattern in resolver.url_patterns:
        route = join(prefix, str(pattern.pattern))
        if isinstance(pattern, URLResolver):
            yield from urlconf_routes(pattern, route)
        else:
            yield route


def router_of(app: Any) -> URLRouter:
    """The URLRouter inside ``app``'s middleware (channels' ``inner``, ChatAuth's ``app``)."""
    seen = app
    while not isinstance(seen, URLRouter):
        seen = getattr(seen, "inner", None) or getattr(seen, "app", None)
        if seen is None:
            raise TypeError(f"no URLRouter inside {app!r}")
    return seen


def router_routes(router: URLRouter, prefix: str = "") -> Iterator[str]:
    for route in router.routes:
        joined = join(prefix, str(route.pattern))
        inner = getattr(route, "callback", None)
        if isinstance(inner, URLRouter):
            yield from router_routes(inner, joined)
        else:
            yield joined


def asgi_routes(application: Any) -> Iterator[tuple[str, str]]:
    for protocol, app in application.application_mapping.items():
        for route in router_routes(router_of(app)):
            yield (f"asgi.{protocol}", route)


def all_routes(resolver: URLResolver | None = None, application: Any = None) -> list[tuple[str, str]]:
    if application is None:
        from config.asgi import application
    found = [(URLS, route) for route in urlconf_routes(resolver or get_resolver())]
    return found + list(asgi_routes(application))


def unaccounted(found: list[tuple[str, str]], rows: tuple[Row, ...]) -> list[str]:
    """What is wrong between the routes and the rows, one sentence each."""
    keys = rows_by_key(rows)
    problems = []
    seen: set[tuple[str, str]] = set()
    for key in found:
        if key in seen:
            problems.append(f"{key[0]} {key[1]!r} is routed twice: one row cannot tell them apart")
        seen.add(key)
        if key not in keys:
            problems.append(f"{key[0]} {key[1]!r} has no row in tests/security/permission_matrix.py")
    for key in keys:
        if key not in seen:
            problems.append(f"the row {key[0]} {key[1]!r} names a route that no longer exists")
    return problems
