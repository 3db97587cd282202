"""The dashboard's door: sign-in and sign-out pages, and the guard every page view wears.

:func:`page` is the htmx transport's one mapping of access and domain errors: an anonymous
visitor is sent to the login page (an htmx request gets ``HX-Redirect`` there instead of a
login form swapped into a fragment), a user without the role the predicate asks for gets a
403 page, and a :class:`config.errors.DomainError` raised by a service becomes its status with
its message (and field errors) rendered in ``errors/page.html`` or, for htmx, the
``errors/fragment.html`` fragment. Views still call the services, which check again.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.contrib.auth import views as auth_views
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from config.errors import DomainError, PermissionDenied
from security import roles

Predicate = Callable[[Any], bool]


def render_error(request: HttpRequest, error: DomainError) -> HttpResponse:
    template = "errors/fragment.html" if getattr(request, "htmx", False) else "errors/page.html"
    context = {"error": error, "status": error.http_status}
    return render(request, template, context, status=error.http_status)


def page(predicate: Predicate = roles.can_view) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """Guard a page view: signed in, holding ``predicate``'s role; domain errors rendered."""

    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.user.is_authenticated:
                if getattr(request, "htmx", False):
                    response = HttpResponse(status=401)
                    response["HX-Redirect"] = redirect_to_login(request.get_full_path())["Location"]
                    return response
                return redirect_to_login(request.get_full_path())
            if not predicate(request.user):
                need = getattr(predicate, "need", "another role")
                return render_error(request, PermissionDenied(f"You need {need} for this page."))
            try:
                return view(request, *args, **kwargs)
            except DomainError as error:
                return render_error(request, error)

        return guarded

    return decorate


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True
    # Not PUT: Django's form views take it as a POST, a second way to sign in that no form uses.
    http_method_names = ["get", "head", "post", "options"]


class LogoutView(auth_views.LogoutView):
    pass
