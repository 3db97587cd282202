"""The task commands against a real server: submit, watch, list, status, events, and the actions."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.cli.support import json_lines

pytestmark = pytest.mark.timeout(120)


def test_submit_then_watch_follows_the_task_to_completion_and_exits_0(cli, agency_server):
    result = cli("submit", "--title", "Sleep a second", "--kind", "sleep", "--param", "seconds=1", "--watch")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("Submitted ")
    task_id = lines[0].split()[1]
    assert "queued -> running attempt 1 on local-reference" in result.stdout  # from the moment it was created
    assert any("% sleeping" in line for line in lines), result.stdout  # the progress bar and phase
    assert "running -> completed" in result.stdout
    assert lines[-1].startswith(f"Task {task_id} completed")
    assert "verdict approved" in lines[-1]
    assert agency_server.task(task_id)["state"] == "completed"


def test_watch_json_prints_one_entry_per_line_ending_with_the_transition_that_ended_it(cli, agency_server):
    task_id = agency_server.create_task(title="Sleep briefly", input={"kind": "sleep", "seconds": 0.5})["id"]

    result = cli("watch", task_id, "--json")

    assert result.returncode == 0, result.stderr
    entries = json_lines(result.stdout)
    assert entries, "no entries"
    assert all(e["task_id"] == task_id for e in entries)
    seqs = [e["seq"] for e in entries]
    assert seqs == sorted(set(seqs)), "entries out of order or twice"
    assert entries[-1]["type"] == "completed"
    assert entries[-1]["data"]["to"] == "completed"


def test_submit_watch_of_a_task_that_ends_at_once_still_shows_its_whole_timeline(cli):
    result = cli("submit", "--title", "Echo", "--kind", "echo", "--watch", "--json")

    assert result.returncode == 0, result.stderr
    created, *entries = json_lines(result.stdout)
    assert created["state"] == "queued"  # the task as the request left it, however fast a dispatcher is
    assert [e["seq"] for e in entries] == list(range(2, entries[-1]["seq"] + 1))
    assert entries[0]["type"] == "attempt_started"
    assert entries[-1]["type"] == "completed"


def test_a_failing_task_makes_watch_exit_1_with_its_error(cli):
    result = cli(
        "submit",
        "--title",
        "Fail at once",
        "--kind",
        "fail",
        "--param",
        "retryable=false",
        "--max-attempts",
        "1",
        "--watch",
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "failed" in result.stdout.splitlines()[-1]
    assert "The task failed as instructed" in result.stdout


def test_watch_of_a_task_that_has_ended_reports_it_at_once(cli, agency_server):
    task_id = agency_server.create_task(title="Fail", max_attempts=1, input={"kind": "fail", "retryable": False})["id"]
    agency_server.wait_for_state(task_id, "failed")

    again = cli("watch", task_id, "--json")

    assert again.returncode == 1
    (entry,) = json_lines(again.stdout)
    assert entry["type"] == "failed"
    assert entry["task_id"] == task_id


def test_cancel_a_running_sleep_task(cli, agency_server):
    task_id = agency_server.create_task(title="Sleep long", input={"kind": "sleep", "seconds": 30})["id"]
    agency_server.wait_for_state(task_id, "running")

    result = cli("cancel", task_id, "--reason", "not needed after all")

    assert result.returncode == 0, result.stderr
    assert f"Cancel requested: task {task_id} is canceling" in result.stdout
    watched = cli("watch", task_id)
    assert watched.returncode == 1, watched.stdout + watched.stderr  # canceled is not a success
    assert watched.stdout.splitlines()[-1].startswith(f"Task {task_id} canceled")
    assert "not needed after all" in watched.stdout
    task = agency_server.wait_for_state(task_id, "canceled")
    assert task["cancel"]["reason"] == "not needed after all"


def test_abort_is_cancel_and_cancelling_again_is_a_conflict_exit_4(cli, agency_server):
    task_id = agency_server.create_task(title="Sleep", input={"kind": "sleep", "seconds": 30})["id"]

    aborted = cli("abort", task_id, "--json")
    assert aborted.returncode == 0, aborted.stderr
    agency_server.wait_for_state(task_id, "canceling", "canceled")
    agency_server.wait_for_state(task_id, "canceled")

    again = cli("cancel", task_id)
    assert again.returncode == 4
    assert "conflict: Cannot cancel a task that is canceled." in again.stderr


def test_cancel_watch_of_a_queued_task_ends_at_once_with_the_cancel(cli, agency_server):
    # No worker offers this capability: the task stays queued, and a cancel needs no worker.
    task_id = agency_server.create_task(title="Never runs", capabilities=["gpu-cluster"])["id"]

    result = cli("cancel", task_id, "--watch", "--json")

    assert result.returncode == 1, result.stderr
    cancelled, last = json_lines(result.stdout)
    assert cancelled["state"] == "canceled"
    assert last["type"] == "canceled"
    assert last["data"] == last["data"] | {"from": "queued", "to": "canceled"}


def test_override_with_a_short_reason_prints_the_field_error_and_exits_2(cli, agency_server):
    task_id = agency_server.create_task(title="Echo", input={"kind": "echo"})["id"]

    result = cli("override", "approve", task_id, "--reason", "too short")

    assert result.returncode == 2
    assert "  reason: An override needs a reason of at least 10 characters." in result.stderr.splitlines()


def test_a_viewer_cancelling_is_refused_clearly_with_exit_77(cli, agency_server):
    task_id = agency_server.create_task(title="Sleep", input={"kind": "sleep", "seconds": 20})["id"]

    result = cli("cancel", task_id, role="viewer")

    assert result.returncode == 77
    assert "refused (403): You need the operator role for this action." in result.stderr
    assert agency_server.task(task_id)["cancel"] is None  # nothing was done
    assert cli("cancel", task_id).returncode == 0  # the operator may (and cleans up)


def test_submit_validation_errors_are_shown_per_field_with_exit_2(cli):
    result = cli("submit", "--title", "Bad", "--risk-tier", "7", "--priority", "urgent", "--json")

    assert result.returncode == 2
    error = json.loads(result.stderr)["error"]
    assert error["status"] == 400
    assert error["exit_code"] == 2
    assert set(error["body"]) == {"risk_tier", "priority"}

    human = cli("submit", "--title", "Bad", "--risk-tier", "7")
    assert human.returncode == 2
    assert "  risk_tier: Ensure this value is less than or equal to 3." in human.stderr.splitlines()


def test_submit_from_a_yaml_spec_file_with_flags_laid_over_it(cli, agency_server, tmp_path):
    spec = tmp_path / "working-spec.yaml"
    spec.write_text(
        "title: From a file\nrisk_tier: 2\n"
        "acceptance:\n  - {id: A1, given: a spec file, when: submitted, then: it runs}\n"
        "scope: {in: [docs]}\ninput: {kind: echo}\n"
    )

    result = cli("submit", str(spec), "--priority", "high", "--json")

    task = json.loads(result.stdout)
    assert task["title"] == "From a file"
    assert task["priority"] == "high"
    assert task["risk_tier"] == 2
    assert task["spec"]["scope"] == {"in": ["docs"], "out": []}
    assert task["spec"]["acceptance"][0]["id"] == "A1"


def test_submit_of_a_spec_that_does_not_parse_is_a_usage_error(cli, tmp_path):
    spec = tmp_path / "broken.yaml"
    spec.write_text("title: [unclosed\n")

    result = cli("submit", str(spec))

    assert result.returncode == 2
    assert "does not parse" in result.stderr


def test_status_of_an_unknown_task_exits_3_and_a_malformed_id_exits_2(cli):
    missing = cli("status", str(uuid.uuid4()))
    assert missing.returncode == 3
    assert "not found: Task" in missing.stderr

    malformed = cli("status", "3f2a")
    assert malformed.returncode == 2
    assert "is not a task id" in malformed.stderr


def test_resume_of_a_task_that_is_not_paused_is_a_conflict_exit_4(cli, agency_server):
    task_id = agency_server.create_task(title="Echo", input={"kind": "echo"})["id"]
    agency_server.wait_for_state(task_id, "completed")

    result = cli("resume", task_id, "--json")

    assert result.returncode == 4
    error = json.loads(result.stderr)["error"]
    assert error["status"] == 409
    assert error["body"]["state"] == "completed"


def test_pause_resume_and_retry(cli, agency_server):
    task_id = agency_server.create_task(title="Sleep", input={"kind": "sleep", "seconds": 30})["id"]
    agency_server.wait_for_state(task_id, "running")

    paused = cli("pause", task_id, "--reason", "hold on")
    assert paused.returncode == 0, paused.stderr
    assert paused.stdout.strip() == f"Task {task_id} is paused."
    resumed = cli("resume", task_id, "--json")
    assert json.loads(resumed.stdout)["state"] in ("queued", "running")
    agency_server.api("operator").post(f"{agency_server.url}/api/v1/tasks/{task_id}/cancel", json={}, timeout=10)
    agency_server.wait_for_state(task_id, "canceled")

    retried = cli("retry", task_id, "--reason", "needed after all", "--json")
    assert retried.returncode == 0, retried.stderr
    assert json.loads(retried.stdout)["state"] in ("queued", "running")
    agency_server.api("operator").post(f"{agency_server.url}/api/v1/tasks/{task_id}/cancel", json={}, timeout=10)


def test_status_shows_the_task_and_json_is_the_servers(cli, agency_server):
    task_id = agency_server.create_task(title="Show me", input={"kind": "echo"})["id"]
    agency_server.wait_for_state(task_id, "completed")

    human = cli("status", task_id)
    data = json.loads(cli("status", task_id, "--json").stdout)

    assert human.returncode == 0
    assert f"Task      {task_id}" in human.stdout
    assert "State     completed" in human.stdout
    assert "Verdict   approved (automatic" in human.stdout
    assert data["id"] == task_id
    assert data["state"] == "completed"
    assert data["verdict"]["decision"] == "approved"


def test_list_filters_and_pages(cli, agency_server):
    marker = uuid.uuid4().hex[:8]
    ids = [agency_server.create_task(title=f"List {marker} {i}", input={"kind": "echo"})["id"] for i in range(3)]
    for task_id in ids:
        agency_server.wait_for_state(task_id, "completed")

    first = cli("list", "-q", marker, "--page-size", "2", "--json")
    page = json.loads(first.stdout)
    assert [t["id"] for t in page["results"]] == ids[::-1][:2]
    assert page["next"]

    everything = json.loads(cli("list", "-q", marker, "--page-size", "2", "--all", "--json").stdout)
    assert [t["id"] for t in everything["results"]] == ids[::-1]
    assert everything["next"] is None

    human = cli("list", "-q", marker, "--page-size", "2", "--state", "completed,failed")
    assert human.returncode == 0
    assert human.stdout.splitlines()[0].split() == ["ID", "STATE", "PRIORITY", "PROGRESS", "WORKER", "CREATED", "TITLE"]
    assert len(human.stdout.splitlines()) == 3
    assert "--cursor" in human.stderr  # how to read on

    bad = cli("list", "--state", "sleeping")
    assert bad.returncode == 2
    assert 'state[0]: "sleeping" is not a valid choice.' in bad.stderr


def test_events_prints_the_timeline_in_order(cli, agency_server):
    task_id = agency_server.create_task(title="Echo", input={"kind": "echo"})["id"]
    agency_server.wait_for_state(task_id, "completed")

    data = json.loads(cli("events", task_id, "--all", "--limit", "2", "--json").stdout)
    human = cli("events", task_id, "--after", "1")

    assert [e["seq"] for e in data["results"]] == list(range(1, data["last_seq"] + 1))
    assert data["results"][0]["type"] == "created"
    assert human.stdout.splitlines()[0].split()[0] == "2"
    assert "running -> completed" in human.stdout
