"""Every /api/ response is JSON ({"detail", "code"}), errors included, DEBUG or not.

Django answers errors that never reach a DRF view (the resolver's 404, a 405 from
``require_http_methods``, an oversized body, an uncaught exception) with HTML, and with DEBUG on
with technical pages that list settings, URL patterns and tracebacks. This module is also the
URLconf of its tests: the project's URLs plus two views that only these tests need (one that
raises, one with Django's own method check).
"""

from __future__ import annotations

import json
import uuid

import pytest
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.urls import path
from django.views.decorators.http import require_GET

from config.urls import urlpatterns as project_urlpatterns
from tasks.models import Task


class Boom(Exception):
    pass


def boom(request: HttpRequest) -> HttpResponse:
    raise Boom("SECRET-DETAIL-IN-THE-TRACEBACK")


@require_GET
def only_get(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


urlpatterns = [
    path("api/test/boom", boom),
    path("api/test/only-get", only_get),
    path("not-api/boom", boom),
    *project_urlpatterns,
]

pytestmark = [pytest.mark.urls(__name__), pytest.mark.django_db]

LEAKS = ("SECRET_KEY", "urlpatterns", "Traceback", "SECRET-DETAIL", "DEBUG", "<html", "<!DOCTYPE")


@pytest.fixture(params=[True, False], ids=["debug", "no-debug"])
def debug(request, settings) -> bool:
    settings.DEBUG = request.param
    return request.param


def assert_json_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == "application/json", response["Content-Type"]
    text = response.content.decode()
    for leak in LEAKS:
        assert leak not in text, leak
    body = json.loads(text)
    assert body["code"] == code
    assert isinstance(body["detail"], str)
    assert body["detail"]
    return body


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/tasks/",  # the trailing-slash variant
        "/api/v1/tasks/not-a-uuid",
        "/api/v1/tasks/6f1c1f3e-9d2a-4c8e-9b7a-2f0d5c3e1a44/nonsense",
        "/api/nothing-here",
        "/api/",
    ],
)
def test_an_unmatched_api_path_is_a_json_404(debug, admin_client_api, url):
    assert_json_error(admin_client_api.get(url), 404, "not_found")


def test_an_unmatched_api_path_is_a_json_404_for_an_anonymous_caller_too(debug, anon_client):
    assert_json_error(anon_client.get("/api/v1/tasks/not-a-uuid"), 404, "not_found")


def test_a_post_to_an_api_path_missing_its_slash_is_a_404_not_debugs_runtime_error(debug, admin_client_api):
    # CommonMiddleware raises in DEBUG for a POST it would have to redirect (and redirects a POST
    # to a GET otherwise); the API says what is true: nothing is there.
    r = admin_client_api.post("/api/schema", {}, format="json")
    assert_json_error(r, 404, "not_found")


def test_a_get_to_an_api_page_missing_its_slash_still_redirects(admin_client_api):
    r = admin_client_api.get("/api/docs")
    assert (r.status_code, r["Location"]) == (301, "/api/docs/")


def test_djangos_own_405_on_an_api_path_is_json_and_keeps_allow(debug, admin_client_api):
    r = admin_client_api.post("/api/test/only-get")
    assert_json_error(r, 405, "method_not_allowed")
    assert r["Allow"] == "GET"


@pytest.mark.parametrize("method", ["put", "patch", "delete"])
def test_a_drf_405_carries_its_code(debug, admin_client_api, method):
    r = getattr(admin_client_api, method)("/api/v1/tasks")
    assert_json_error(r, 405, "method_not_allowed")


def test_a_wrong_method_from_an_anonymous_caller_is_a_json_401(debug, anon_client):
    r = anon_client.delete("/api/v1/tasks")
    assert_json_error(r, 401, "not_authenticated")


def test_a_wrong_method_from_a_user_without_a_role_is_a_json_403(debug, nobody_client):
    r = nobody_client.delete("/api/v1/tasks")
    assert_json_error(r, 403, "permission_denied")


def test_an_uncaught_exception_on_an_api_path_is_a_json_500_without_the_traceback(debug, admin_client_api):
    admin_client_api.raise_request_exception = False
    body = assert_json_error(admin_client_api.get("/api/test/boom"), 500, "server_error")
    assert body == {"detail": "Server error.", "code": "server_error"}


def test_outside_the_api_errors_stay_djangos_pages(settings):
    settings.DEBUG = False
    client = Client(raise_request_exception=False)
    assert client.get("/not-api/boom")["Content-Type"].startswith("text/html")
    assert client.get("/no-such-page")["Content-Type"].startswith("text/html")


def test_a_body_over_the_upload_limit_is_a_json_413_and_creates_nothing(debug, settings, operator_client):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    spec = {"title": "Too big", "description": "x" * 2000}
    r = operator_client.post("/api/v1/tasks", spec, format="json")
    body = assert_json_error(r, 413, "request_too_large")
    assert "1000 bytes" in body["detail"]
    assert not Task.objects.exists()


def test_a_body_over_the_upload_limit_is_a_413_before_authentication(settings, anon_client):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    r = anon_client.post("/api/v1/tasks", {"title": "x" * 2000}, format="json")
    assert_json_error(r, 413, "request_too_large")


def test_a_form_body_over_the_limit_from_a_session_is_a_json_413(settings, operator):
    # SessionAuthentication's CSRF check reads request.POST, where Django enforces the limit.
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    client = Client()
    client.force_login(operator)
    r = client.post("/api/v1/tasks", {"title": "x" * 2000})
    assert_json_error(r, 413, "request_too_large")


def test_a_malformed_content_length_is_a_json_400(anon_client):
    r = anon_client.generic("POST", "/api/v1/tasks", b"{}", content_type="application/json", CONTENT_LENGTH="abc")
    assert_json_error(r, 400, "bad_request")


def test_a_form_encoded_body_is_a_json_415(debug, operator_client):
    r = operator_client.post("/api/v1/tasks", "title=Form", content_type="application/x-www-form-urlencoded")
    assert_json_error(r, 415, "unsupported_media_type")
    assert not Task.objects.exists()


def test_the_browsable_api_still_renders_its_own_html_errors(admin_client_api):
    # Asked for HTML by a browser, DRF's own page (no settings, no traceback) is the answer.
    r = admin_client_api.get(f"/api/v1/tasks/{uuid.uuid4()}", HTTP_ACCEPT="text/html")
    assert r.status_code == 404
    assert r["Content-Type"].startswith("text/html")
    assert "SECRET_KEY" not in r.content.decode()
