"""Login, configuration, health, workers, audit and saved queries, against a real server."""

from __future__ import annotations

import json
import os
import stat

import pytest

from tests.browser.support import free_port

pytestmark = pytest.mark.timeout(120)


def test_login_checks_the_token_stores_it_0600_and_later_commands_use_it(cli, agency_server, config_file):
    token = agency_server.users["viewer"]["token"]

    logged_in = cli("login", role=None, stdin=token + "\n")

    assert logged_in.returncode == 0, logged_in.stderr
    assert f"Logged in to {agency_server.url}" in logged_in.stdout
    assert stat.S_IMODE(os.stat(config_file).st_mode) == 0o600
    assert json.loads(config_file.read_text())["tokens"] == {agency_server.url: token}
    assert token not in logged_in.stdout + logged_in.stderr

    listed = cli("list", "--page-size", "1", role=None)  # no AGENCY_TOKEN: the file's
    assert listed.returncode == 0, listed.stderr
    refused = cli("cancel", "3f2a9c1e-0000-4000-8000-000000000000", role=None)
    assert refused.returncode == 77  # a viewer's token, from the file

    logged_out = cli("logout", role=None)
    assert logged_out.returncode == 0
    assert not config_file.exists()
    after = cli("list", role=None)
    assert after.returncode == 77
    assert "no API token" in after.stderr


def test_login_with_a_bad_token_is_refused_and_stores_nothing(cli, config_file):
    result = cli("login", role=None, stdin="agy_not-a-real-token\n")

    assert result.returncode == 77
    assert "does not accept this API token" in result.stderr
    assert not config_file.exists()


def test_a_bad_token_is_refused_with_exit_77(cli):
    result = cli("list", token="agy_forged")

    assert result.returncode == 77
    assert "refused (401): the server does not accept this API token (Invalid token.)" in result.stderr


def test_an_unreachable_server_exits_5_with_a_message(cli):
    url = f"http://127.0.0.1:{free_port()}"

    result = cli("list", url=url)
    as_json = cli("--json", "status", "3f2a9c1e-0000-4000-8000-000000000000", url=url)

    assert result.returncode == 5
    assert result.stderr.strip() == f"agency: cannot reach {url}: connection refused (is the server running?)"
    assert as_json.returncode == 5
    assert json.loads(as_json.stderr)["error"]["exit_code"] == 5


def test_health_prints_each_component(cli):
    human = cli("health", role="viewer")
    data = json.loads(cli("health", "--json", role="viewer").stdout)

    assert human.returncode == 0, human.stderr
    assert human.stdout.splitlines()[0].startswith(data["status"])
    for component in data["components"]:
        assert f"  {component}" in human.stdout
    assert "local-reference" in human.stdout


def test_workers_list_shows_the_local_worker(cli):
    human = cli("workers", "list", role="viewer")
    data = json.loads(cli("workers", "list", "--enabled", "--json", role="viewer").stdout)

    assert human.stdout.splitlines()[0].split() == [
        "NAME",
        "ENABLED",
        "HEALTH",
        "BREAKER",
        "CAPACITY",
        "CAPABILITIES",
        "URL",
    ]
    assert "local-reference" in human.stdout
    assert [w["name"] for w in data["results"]] == ["local-reference"]


def test_audit_search_finds_a_tasks_records(cli, agency_server):
    task_id = agency_server.create_task(title="Audited", input={"kind": "echo"})["id"]
    agency_server.wait_for_state(task_id, "completed")

    data = json.loads(cli("audit", "search", "--resource-type", "task", "--resource-id", task_id, "--json").stdout)
    human = cli("audit", "search", "--resource-type", "task", "--resource-id", task_id, "--action", "task.create")

    actions = [r["action"] for r in data["results"]]
    assert "task.create" in actions
    assert len(actions) >= 3
    assert human.returncode == 0
    assert len(human.stdout.splitlines()) == 2
    assert "task.create" in human.stdout
    bad = cli("audit", "search", "--resource-id", task_id)
    assert bad.returncode == 2
    assert "resource_type: Required with resource_id." in bad.stderr


def test_saved_queries_are_listed_and_run(cli, agency_server):
    created = agency_server.api("admin").post(
        f"{agency_server.url}/api/v1/queries",
        json={
            "name": "Tasks by state",
            "sql": "SELECT state, COUNT(*) AS n FROM tasks_task WHERE state = :state GROUP BY state",
            "parameters": [{"name": "state", "type": "text"}],
            "shared": True,
        },
        timeout=10,
    )
    assert created.status_code == 201, created.text
    query_id = created.json()["id"]
    agency_server.wait_for_state(agency_server.create_task(title="Count me", input={"kind": "echo"})["id"], "completed")

    listed = cli("queries", "list", role="viewer")
    ran = cli("queries", "run", query_id, "--param", "state=completed", role="viewer")
    data = json.loads(cli("queries", "run", query_id, "--param", "state=completed", "--json", role="viewer").stdout)
    missing = cli("queries", "run", query_id, role="viewer")

    assert "Tasks by state" in listed.stdout
    assert "state:text" in listed.stdout
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.splitlines()[0].split() == ["state", "n"]
    assert ran.stdout.splitlines()[1].split()[0] == "completed"
    assert data["columns"] == ["state", "n"]
    assert data["rows"][0][0] == "completed"
    assert missing.returncode == 2
    assert "params.state: Required." in missing.stderr
