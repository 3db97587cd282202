"""Overrides, waivers and provenance through the CLI, against a real server."""

from __future__ import annotations

import json
import uuid

import pytest

pytestmark = pytest.mark.timeout(120)

ACCEPTANCE = [{"id": "A1", "given": "an echo", "when": "it runs", "then": "it answers"}]


def awaiting_review(server) -> str:
    """A risk tier 1 task: its result always waits for a human."""
    task = server.create_task(title="Needs a human", risk_tier=1, acceptance=ACCEPTANCE, input={"kind": "echo"})
    server.wait_for_state(task["id"], "awaiting_review")
    return task["id"]


def test_approve_then_the_trailers_verify(cli, agency_server, tmp_path):
    task_id = awaiting_review(agency_server)
    assert cli("provenance", "trailer", str(uuid.uuid4())).returncode == 3
    # The gates' automatic approval of a tier 1 task names nothing a commit may claim yet.
    automatic = cli("provenance", "trailer", task_id)
    early = cli("provenance", "verify", "-", stdin="Too soon\n\n" + automatic.stdout)
    assert early.returncode == 1
    assert "is awaiting_review, not completed" in early.stderr

    approved = cli("override", "approve", task_id, "--reason", "Read the output; it is right.")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.startswith(f"Task {task_id} is completed: verdict approved CAWS-VERDICT-")

    trailer = cli("provenance", "trailer", task_id)
    assert trailer.returncode == 0
    lines = trailer.stdout.splitlines()
    assert lines[0] == f"Agency-Task: {task_id}"
    assert lines[1].startswith("Agency-Verdict: CAWS-VERDICT-")
    message = tmp_path / "COMMIT_EDITMSG"
    message.write_text("Land the echo\n\n" + trailer.stdout)
    verified = cli("provenance", "verify", str(message), role="viewer")
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("ok: CAWS-VERDICT-")

    no_trailers = cli("provenance", "verify", "-", stdin="Just a commit\n")
    assert no_trailers.returncode == 1
    assert "needs exactly one Agency-Task: and one Agency-Verdict: trailer" in no_trailers.stderr


def test_request_changes_requeues_with_guidance_and_its_verdict_does_not_verify(cli, agency_server):
    task_id = awaiting_review(agency_server)

    requested = cli(
        "override", "request-changes", task_id, "--reason", "Needs a second look.", "--guidance", "Say hello", "--json"
    )

    assert requested.returncode == 0, requested.stderr
    task = json.loads(requested.stdout)
    assert task["verdict"]["decision"] == "changes_requested"
    assert task["spec"]["guidance"][-1]["text"] == "Say hello"
    # Its trailers: refused while that verdict is current, and once the rerun's verdict supersedes it.
    trailers = f"Agency-Task: {task_id}\nAgency-Verdict: {task['verdict']['id']}\n"
    verified = cli("provenance", "verify", "-", stdin="Try\n\n" + trailers)
    assert verified.returncode == 1
    assert "is changes_requested, not approved" in verified.stderr or "is not the current verdict" in verified.stderr
    agency_server.wait_for_state(task_id, "awaiting_review")  # it ran again, and waits again
    assert cli("override", "reject", task_id, "--reason", "Not what we wanted.").returncode == 0
    assert agency_server.task(task_id)["state"] == "failed"


def test_a_waiver_is_requested_approved_by_another_admin_and_revoked(cli):
    requested = cli(
        "waiver", "request",
        "--title", "Vendored parser",
        "--reason", "legacy_integration",
        "--gate", "placeholders,scope",
        "--justification", "Upstream code, reviewed on its own.",
        "--expires-in", "7d",
        "--json",
    )  # fmt: skip
    assert requested.returncode == 0, requested.stderr
    waiver = json.loads(requested.stdout)
    assert waiver["status"] == "pending"
    assert waiver["gates"] == ["placeholders", "scope"]
    waiver_id = waiver["id"]

    pending = json.loads(cli("waiver", "list", "--status", "pending", "--json").stdout)
    assert waiver_id in [w["id"] for w in pending["results"]]
    refused = cli("waiver", "approve", waiver_id)
    assert refused.returncode == 77
    assert "You need the admin role." in refused.stderr

    approved = cli("waiver", "approve", waiver_id, "--note", "Fine for a week.", role="admin")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == f"Waiver {waiver_id} is approved."
    shown = cli("waiver", "show", waiver_id, role="viewer")
    assert "Status         approved (active: waiving its gates now)" in shown.stdout

    revoked = cli("waiver", "revoke", waiver_id, "--reason", "The parser was replaced.", role="admin")
    assert revoked.returncode == 0
    again = cli("waiver", "revoke", waiver_id, "--reason", "The parser was replaced.", role="admin")
    assert again.returncode == 4
    table = cli("waiver", "list", "--status", "revoked")
    assert waiver_id in table.stdout
    assert table.stdout.startswith("ID")


def test_waiver_input_errors_are_shown_per_field(cli):
    result = cli(
        "waiver", "request", "--title", "x", "--reason", "because", "--gate", "speed", "--justification", "short",
        "--expires-in", "7d",
    )  # fmt: skip

    assert result.returncode == 2
    fields = {line.split(":")[0].strip() for line in result.stderr.splitlines()[1:]}
    assert {"reason", "gates[0]", "justification"} <= fields

    assert cli("waiver", "request", "--title", "x", "--reason", "other", "--gate", "scope", "--justification",
               "long enough justification", "--expires-in", "soon").returncode == 2  # fmt: skip
    assert cli("waiver", "show", str(uuid.uuid4())).returncode == 3
