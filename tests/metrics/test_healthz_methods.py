"""/healthz answers GET and HEAD, and 405 to any other method, even with CSRF checks enforced.

Django's test client skips CSRF checks by default, so a POST there got the 405 while a real
client (a browser with a session cookie, curl) got CsrfViewMiddleware's 403 first.
"""

from __future__ import annotations

import pytest
from django.test import Client

URL = "/healthz"


@pytest.fixture
def strict_client() -> Client:
    return Client(enforce_csrf_checks=True)


@pytest.mark.parametrize("method", ["get", "head"])
def test_it_answers_get_and_head(strict_client, method):
    assert getattr(strict_client, method)(URL).status_code == 200


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete", "options"])
def test_it_refuses_other_methods_with_405_not_a_csrf_403(strict_client, method):
    r = getattr(strict_client, method)(URL)
    assert r.status_code == 405
    assert r["Allow"] == "GET, HEAD"


@pytest.mark.django_db
def test_a_logged_in_browser_posting_without_a_token_gets_405_too(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    r = client.post(URL, {"anything": "1"})
    assert r.status_code == 405


@pytest.mark.django_db
def test_a_user_without_a_role_gets_the_same_answers(nobody):
    client = Client(enforce_csrf_checks=True)
    client.force_login(nobody)
    assert client.get(URL).status_code == 200
    assert client.post(URL).status_code == 405
