"""Saved views: POST /tasks/views/, GET /tasks/views/<id>/ (the shareable link), POST .../delete/."""

from __future__ import annotations

import uuid

import pytest
from django.contrib.auth.models import Group, User

from audit.models import AuditRecord
from tasks.models import SavedView
from tests.tasks.pages.conftest import logged_in

pytestmark = pytest.mark.django_db

SAVE = "/tasks/views/"


@pytest.fixture
def other_viewer(db) -> User:
    user = User.objects.create_user(username="vic", password="pw")
    user.groups.add(Group.objects.get_or_create(name="viewer")[0])
    return user


@pytest.fixture
def saved(viewer) -> SavedView:
    return SavedView.objects.create(owner=viewer, name="Stuck work", query="state=running&priority=high")


def test_anonymous_visitors_are_sent_to_log_in_and_nothing_is_saved(client):
    r = client.post(SAVE, {"name": "mine", "query": "state=running"})
    assert r.status_code == 302
    assert r["Location"].startswith("/login/")
    assert not SavedView.objects.exists()


def test_a_user_without_a_role_may_not_save_a_view(nobody_page):
    r = nobody_page.post(SAVE, {"name": "mine", "query": "state=running"})
    assert r.status_code == 403
    assert not SavedView.objects.exists()


def test_a_viewer_saves_the_filter_normalised_and_lands_on_it(viewer_page, viewer, make_task):
    make_task(title="one")
    r = viewer_page.post(SAVE, {"name": "  Running or paused  ", "query": "priority=high&state=paused,running&q="})
    view = SavedView.objects.get()
    assert (view.owner, view.name) == (viewer, "Running or paused")
    # States in the lifecycle's order, comma-joined; blank search dropped; keys in one order.
    assert view.query == "state=running%2Cpaused&priority=high"
    assert r.status_code == 302
    assert r["Location"] == f"/tasks/?state=running%2Cpaused&priority=high&view={view.pk}"
    page = viewer_page.get(r["Location"]).content.decode()
    assert "<h1>Tasks: Running or paused</h1>" in page
    assert f'href="/tasks/views/{view.pk}/"' in page
    # Saving a view is no decision about a task: no audit record.
    assert not AuditRecord.objects.filter(action__startswith="saved").exists()


def test_the_same_filter_typed_differently_is_stored_the_same(viewer_page):
    viewer_page.post(SAVE, {"name": "a", "query": "state=failed&state=queued&ordering=-created_at&page_size=50"})
    viewer_page.post(SAVE, {"name": "b", "query": "state=queued,failed,queued"})
    assert set(SavedView.objects.values_list("query", flat=True)) == {"state=queued%2Cfailed"}


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"name": "x", "query": "state=bogus"}, "query", "state"),
        ({"name": "x", "query": "stat=failed"}, "query", "Unknown field."),
        ({"name": "   ", "query": "state=failed"}, "name", "Give the view a name."),
        ({"name": "n" * 101, "query": ""}, "name", "no more than 100 characters"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_nothing_is_saved(viewer_page, data, field, message):
    r = viewer_page.post(SAVE, data)
    body = r.content.decode()
    assert r.status_code == 400
    assert 'id="view-name-errors"' in body
    assert message in body
    assert not SavedView.objects.exists()


def test_a_second_view_of_the_same_name_is_refused(viewer_page, saved):
    r = viewer_page.post(SAVE, {"name": "Stuck work", "query": "state=failed"})
    assert r.status_code == 400
    assert "You already have a view named" in r.content.decode()
    assert SavedView.objects.get().query == "state=running&priority=high"


def test_the_page_lists_only_the_users_own_views(viewer_page, other_viewer, saved):
    SavedView.objects.create(owner=other_viewer, name="Vic's view", query="")
    body = viewer_page.get("/tasks/").content.decode()
    assert "Stuck work" in body
    assert "Vic&#x27;s view" not in body


def test_any_viewer_opens_a_view_from_its_link(other_viewer, saved):
    r = logged_in(other_viewer).get(f"/tasks/views/{saved.pk}/")
    assert r.status_code == 302
    assert r["Location"] == f"/tasks/?state=running&priority=high&view={saved.pk}"
    page = logged_in(other_viewer).get(r["Location"]).content.decode()
    assert "<h1>Tasks: Stuck work</h1>" in page
    assert "Saved view by vera" in page
    assert 'name="state" value="running" checked' in page


def test_the_link_needs_a_login_and_a_role(client, nobody_page, saved):
    r = client.get(f"/tasks/views/{saved.pk}/")
    assert r.status_code == 302
    assert r["Location"] == f"/login/?next=/tasks/views/{saved.pk}/"
    assert nobody_page.get(f"/tasks/views/{saved.pk}/").status_code == 403


def test_an_unknown_view_is_a_404(viewer_page):
    assert viewer_page.get(f"/tasks/views/{uuid.uuid4()}/").status_code == 404


def test_the_owner_deletes_a_view(viewer_page, saved):
    r = viewer_page.post(f"/tasks/views/{saved.pk}/delete/")
    assert r.status_code == 302
    assert not SavedView.objects.exists()


def test_only_the_owner_may_delete_a_view(other_viewer, operator_page, saved):
    assert logged_in(other_viewer).post(f"/tasks/views/{saved.pk}/delete/").status_code == 403
    assert operator_page.post(f"/tasks/views/{saved.pk}/delete/").status_code == 403
    assert SavedView.objects.filter(pk=saved.pk).exists()


def test_deleting_needs_a_post(viewer_page, saved):
    assert viewer_page.get(f"/tasks/views/{saved.pk}/delete/").status_code == 405
    assert SavedView.objects.filter(pk=saved.pk).exists()
