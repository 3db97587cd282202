"""Who may open a stream, and what a bad request to one gets (JSON naming the fault)."""

from __future__ import annotations

import uuid

import pytest
import requests

from tests.metrics.stream.conftest import open_stream

pytestmark = pytest.mark.timeout(120)

PATHS = ["/api/v1/tasks/stream", "/api/v1/metrics/stream"]


@pytest.mark.parametrize("path", PATHS)
def test_anonymous_gets_401_with_a_challenge(quiet_server, path) -> None:
    response = requests.get(f"{quiet_server.base}{path}", timeout=5)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"
    assert response.json()["code"] == "not_authenticated"


@pytest.mark.parametrize("path", PATHS)
def test_a_bad_token_gets_401(quiet_server, path) -> None:
    response = requests.get(f"{quiet_server.base}{path}", headers={"Authorization": "Token nope"}, timeout=5)
    assert response.status_code == 401


@pytest.mark.parametrize("path", PATHS)
def test_a_user_without_a_role_gets_403(quiet_server, path) -> None:
    response = quiet_server.api("nobody").get(f"{quiet_server.base}{path}", timeout=5)
    assert response.status_code == 403
    assert response.json()["code"] == "permission_denied"


@pytest.mark.parametrize("path", PATHS)
def test_other_methods_get_405(quiet_server, path) -> None:
    response = quiet_server.api("viewer").post(f"{quiet_server.base}{path}", json={}, timeout=5)
    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"


def test_a_task_that_is_not_a_uuid_is_named(quiet_server) -> None:
    response = quiet_server.api("viewer").get(f"{quiet_server.base}/api/v1/tasks/stream?task=12", timeout=5)
    assert response.status_code == 400
    assert "task" in response.json()


def test_an_unknown_task_is_404(quiet_server) -> None:
    response = quiet_server.api("viewer").get(f"{quiet_server.base}/api/v1/tasks/stream?task={uuid.uuid4()}", timeout=5)
    assert response.status_code == 404


@pytest.mark.parametrize("param", ["channel", "es-meta", "link", "recover"])
def test_unknown_parameters_are_refused_by_name(quiet_server, param) -> None:
    # django-eventstream reads these (channels, signed metadata, GRIP recovery); our views do not.
    response = quiet_server.api("viewer").get(f"{quiet_server.base}/api/v1/tasks/stream?{param}=x", timeout=5)
    assert response.status_code == 400
    assert response.json() == {param: ["Unknown parameter."]}


@pytest.mark.parametrize("value", ["garbage", "tasks:", "tasks:-1", "tasks:1x", "tasks:" + "9" * 30])
def test_a_malformed_last_event_id_is_named(quiet_server, value) -> None:
    response = quiet_server.api("viewer").get(
        f"{quiet_server.base}/api/v1/tasks/stream", headers={"Last-Event-ID": value}, timeout=5
    )
    assert response.status_code == 400
    assert "Last-Event-ID" in response.json()


def test_a_malformed_last_event_id_parameter_is_named(quiet_server) -> None:
    response = quiet_server.api("viewer").get(f"{quiet_server.base}/api/v1/tasks/stream?lastEventId=x", timeout=5)
    assert response.status_code == 400
    assert "lastEventId" in response.json()


@pytest.mark.parametrize("path", PATHS)
def test_a_viewer_gets_an_event_stream(quiet_server, path) -> None:
    stream = open_stream(quiet_server, path)
    try:
        assert stream.response.headers["Content-Type"].startswith("text/event-stream")
        assert stream.response.headers["Cache-Control"] == "no-cache"
    finally:
        stream.close()
