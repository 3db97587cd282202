"""The reference worker, as a real process on loopback, against docs/worker-protocol.md.

Each test names the promise of the protocol it checks. Task ids are unique per test
(``_task_id()``) so tests can share one worker process without seeing each other.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.tasks.conftest import WORKER_TOKEN, RunningWorker, reference_worker_process, stop_process

pytestmark = pytest.mark.timeout(30)

TIMEOUT = (2, 10)  # (connect, read) seconds: no request in this file may wait for ever
NDJSON = "application/x-ndjson"


def _task_id() -> str:
    return str(uuid.uuid4())


def _deadline(seconds: float = 300) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


def _body(task_id: str, input: dict[str, Any], *, attempt: int = 1, deadline_s: float = 300) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "attempt": attempt,
        "spec": {"title": "t", "input": input},
        "deadline": _deadline(deadline_s),
    }


def _execute(
    worker: RunningWorker,
    input: dict[str, Any],
    *,
    task_id: str | None = None,
    attempt: int = 1,
    accept: str = f"{NDJSON}, application/json",
    stream: bool = False,
    deadline_s: float = 300,
    timeout: Any = TIMEOUT,
) -> requests.Response:
    task_id = task_id or _task_id()
    return requests.post(
        f"{worker.url}/execute",
        json=_body(task_id, input, attempt=attempt, deadline_s=deadline_s),
        headers=worker.headers(**{"Idempotency-Key": f"{task_id}:{attempt}", "Accept": accept}),
        stream=stream,
        timeout=timeout,
    )


def _cancel(worker: RunningWorker, task_id: str, attempt: int = 1) -> requests.Response:
    return requests.post(
        f"{worker.url}/cancel", json={"task_id": task_id, "attempt": attempt}, headers=worker.headers(), timeout=TIMEOUT
    )


def _events(lines: Any) -> list[dict[str, Any]]:
    """Parse NDJSON lines; takes a response or the one ``iter_lines()`` generator already in use.

    A second ``iter_lines()`` on the same response would lose what the first one buffered.
    """
    if isinstance(lines, requests.Response):
        lines = lines.iter_lines()
    return [json.loads(line) for line in lines if line]


def _executions(worker: RunningWorker, task_id: str) -> list[dict[str, Any]]:
    return [e for e in worker.log(task_id=task_id) if e["path"] == "/execute" and e["outcome"] == "executed"]


def _wait_for(predicate: Any, timeout: float = 5.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


# --- execute: the kinds ------------------------------------------------------------------------------


def test_echo_answers_one_json_result(reference_worker: RunningWorker) -> None:
    files = [{"path": "src/app.py", "operation": "create", "content": "# TODO: write me\n"}]
    response = _execute(reference_worker, {"kind": "echo", "message": "hi", "files_modified": files})

    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Agency-Protocol"] == "1"
    result = response.json()
    assert result["type"] == "result"
    assert result["status"] == "completed"
    assert result["output"] == {"echo": {"kind": "echo", "message": "hi", "files_modified": files}}
    assert result["files_modified"] == files
    assert result["rationale"]
    assert 0 <= result["self_assessment"]["confidence"] <= 1
    assert "error" not in result


def test_fail_answers_a_failed_result_not_an_http_error(reference_worker: RunningWorker) -> None:
    response = _execute(reference_worker, {"kind": "fail", "error": "model refused"})

    assert response.status_code == 200
    result = response.json()
    assert result["status"] == "failed"
    assert result["error"] == "model refused"
    assert result["error_code"] == "task_failed"
    assert result["retryable"] is True


def test_fail_can_say_another_attempt_would_not_help(reference_worker: RunningWorker) -> None:
    result = _execute(reference_worker, {"kind": "fail", "retryable": False}).json()

    assert result["status"] == "failed"
    assert result["retryable"] is False


def test_sleep_streams_progress_lines_ending_in_exactly_one_result(reference_worker: RunningWorker) -> None:
    with _execute(reference_worker, {"kind": "sleep", "seconds": 0.3, "interval_s": 0.05}, stream=True) as response:
        assert response.status_code == 200
        assert response.headers["Content-Type"] == NDJSON
        assert response.headers["Transfer-Encoding"] == "chunked"
        events = _events(response)

    progress = [e for e in events if e["type"] == "progress"]
    assert len(progress) >= 4
    percents = [e["percent"] for e in progress]
    assert percents == sorted(percents)
    assert percents[-1] == 100
    assert all(isinstance(e["phase"], str) and isinstance(e["message"], str) for e in progress)
    assert events[0]["type"] == "log"
    assert [e["type"] for e in events].count("result") == 1
    assert events[-1]["type"] == "result"
    assert events[-1]["status"] == "completed"
    assert events[-1]["output"] == {"slept_s": 0.3}


def test_chat_streams_its_deterministic_reply_in_pieces(reference_worker: RunningWorker) -> None:
    from tasks.reference_worker.kinds import chat_reply

    history = [{"role": "user", "content": "earlier"}]
    with _execute(reference_worker, {"kind": "chat", "message": "how are you", "history": history}, stream=True) as r:
        assert r.headers["Content-Type"] == NDJSON
        events = _events(r)
    pieces = [e["message"] for e in events if e["type"] == "progress"]
    assert len(pieces) > 3
    assert events[-1]["status"] == "completed"
    assert "".join(pieces) == events[-1]["output"] == chat_reply("how are you", history)
    assert "You said: how are you (3 words, 1 earlier message)" in events[-1]["output"]


def test_sleep_emits_artifacts_it_is_given(reference_worker: RunningWorker) -> None:
    artifact = {"path": "report.html", "media_type": "text/html", "size_bytes": 10}
    with _execute(reference_worker, {"kind": "sleep", "seconds": 0.1, "artifacts": [artifact]}, stream=True) as r:
        events = _events(r)

    assert {"type": "artifact", **artifact} in events


def test_sleep_answers_json_when_the_client_accepts_only_json(reference_worker: RunningWorker) -> None:
    response = _execute(reference_worker, {"kind": "sleep", "seconds": 0.1}, accept="application/json")

    assert response.headers["Content-Type"] == "application/json"
    assert response.json()["status"] == "completed"


def test_a_passed_deadline_fails_without_running(reference_worker: RunningWorker) -> None:
    response = _execute(reference_worker, {"kind": "sleep", "seconds": 5}, deadline_s=-1)

    assert response.json()["error_code"] == "deadline_exceeded"


def test_the_deadline_stops_a_running_sleep(reference_worker: RunningWorker) -> None:
    started = time.monotonic()
    with _execute(reference_worker, {"kind": "sleep", "seconds": 20}, deadline_s=0.4, stream=True) as response:
        events = _events(response)

    assert events[-1]["status"] == "failed"
    assert events[-1]["error_code"] == "deadline_exceeded"
    assert time.monotonic() - started < 3


# --- cancel ------------------------------------------------------------------------------------------


def test_cancel_during_sleep_ends_the_stream_promptly_and_is_logged(reference_worker: RunningWorker) -> None:
    task_id = _task_id()
    input = {"kind": "sleep", "seconds": 20, "interval_s": 0.05}
    with _execute(reference_worker, input, task_id=task_id, stream=True) as response:
        lines = response.iter_lines()
        while json.loads(next(lines))["type"] != "progress":
            pass
        canceled_at = time.monotonic()
        cancel = _cancel(reference_worker, task_id)
        rest = _events(lines)

    assert time.monotonic() - canceled_at < 1.0
    assert cancel.status_code == 200
    assert cancel.json() == {"task_id": task_id, "attempt": 1, "state": "canceling", "result_status": None}
    assert rest[-1]["type"] == "result"
    assert rest[-1]["status"] == "failed"
    assert rest[-1]["error_code"] == "canceled"
    # The worker logs a request before the last bytes of its answer: no waiting needed.
    by_path = {e["path"]: e for e in reference_worker.log(task_id=task_id)}
    assert by_path["/cancel"]["outcome"] == "canceling"
    assert by_path["/cancel"]["idempotency_key"] == f"{task_id}:1"
    assert by_path["/execute"]["error_code"] == "canceled"


def test_a_cancel_that_overtakes_its_execute_keeps_the_work_from_starting(reference_worker: RunningWorker) -> None:
    task_id = _task_id()

    cancel = _cancel(reference_worker, task_id)
    response = _execute(reference_worker, {"kind": "sleep", "seconds": 5}, task_id=task_id)

    assert cancel.json()["state"] == "canceled"
    assert response.status_code == 200
    assert response.headers["Idempotency-Replayed"] == "true"
    assert response.json()["error_code"] == "canceled"
    assert _executions(reference_worker, task_id) == []


def test_cancel_after_the_result_reports_finished(reference_worker: RunningWorker) -> None:
    task_id = _task_id()
    _execute(reference_worker, {"kind": "echo"}, task_id=task_id)

    cancel = _cancel(reference_worker, task_id)

    assert cancel.status_code == 200
    assert cancel.json()["state"] == "finished"
    assert cancel.json()["result_status"] == "completed"


def test_a_hanging_execute_answers_only_when_canceled(reference_worker: RunningWorker) -> None:
    task_id = _task_id()
    answers: list[requests.Response] = []
    caller = threading.Thread(
        target=lambda: answers.append(
            _execute(reference_worker, {"kind": "echo", "faults": {"hang": True}}, task_id=task_id)
        )
    )
    caller.start()
    _wait_for(lambda: requests.get(f"{reference_worker.url}/health", timeout=TIMEOUT).json()["active_tasks"] >= 1)
    time.sleep(0.2)
    assert answers == []  # still hanging: no status line, no headers

    _cancel(reference_worker, task_id)
    caller.join(5)

    assert answers[0].status_code == 200
    assert answers[0].json()["error_code"] == "canceled"


# --- authentication and validation -------------------------------------------------------------------


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token", f"Token {WORKER_TOKEN}", "Bearer"])
def test_a_missing_or_wrong_token_gets_401(reference_worker: RunningWorker, authorization: str | None) -> None:
    task_id = _task_id()
    headers = {"Idempotency-Key": f"{task_id}:1"}
    if authorization:
        headers["Authorization"] = authorization

    execute = requests.post(
        f"{reference_worker.url}/execute", json=_body(task_id, {}), headers=headers, timeout=TIMEOUT
    )
    cancel = requests.post(
        f"{reference_worker.url}/cancel", json={"task_id": task_id, "attempt": 1}, headers=headers, timeout=TIMEOUT
    )
    log = requests.get(f"{reference_worker.url}/_log", headers=headers, timeout=TIMEOUT)

    assert [execute.status_code, cancel.status_code, log.status_code] == [401, 401, 401]
    assert execute.headers["WWW-Authenticate"].startswith("Bearer")
    assert execute.json()["code"] == "unauthorized"
    assert _executions(reference_worker, task_id) == []


def test_without_a_configured_token_no_auth_is_needed(start_reference_worker: Any) -> None:
    worker = start_reference_worker(token=None)

    assert _execute(worker, {"kind": "echo"}).json()["status"] == "completed"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"task_id": None}, "task_id"),
        ({"task_id": ""}, "task_id"),
        ({"attempt": 0}, "attempt"),
        ({"attempt": "1"}, "attempt"),
        ({"attempt": True}, "attempt"),
        ({"spec": []}, "spec"),
        ({"deadline": "2030-01-01T00:00:00"}, "deadline"),
        ({"deadline": "tomorrow"}, "deadline"),
        ({"deadline": None}, "deadline"),
        ({"spec": {"input": {"kind": "dance"}}}, "spec.input.kind"),
        ({"spec": {"input": []}}, "spec.input"),
        ({"spec": {"input": {"kind": "sleep"}}}, "spec.input.seconds"),
        ({"spec": {"input": {"kind": "sleep", "seconds": -1}}}, "spec.input.seconds"),
        ({"spec": {"input": {"kind": "sleep", "seconds": 1, "secs": 2}}}, "spec.input.secs"),
        ({"spec": {"input": {"kind": "sleep", "seconds": 1, "artifacts": [{}]}}}, "spec.input.artifacts[0].path"),
        ({"spec": {"input": {"kind": "fail", "retryable": "no"}}}, "spec.input.retryable"),
        ({"spec": {"input": {"kind": "chat"}}}, "spec.input.message"),
        ({"spec": {"input": {"kind": "chat", "message": "  "}}}, "spec.input.message"),
        ({"spec": {"input": {"kind": "chat", "message": "hi", "history": {}}}}, "spec.input.history"),
        ({"spec": {"input": {"kind": "chat", "message": "hi", "tone": "warm"}}}, "spec.input.tone"),
        ({"spec": {"input": {"faults": {"latency": 5}}}}, "spec.input.faults.latency"),
        ({"spec": {"input": {"faults": {"hang": 1}}}}, "spec.input.faults.hang"),
        ({"spec": {"input": {"faults": {"status_503_times": -1}}}}, "spec.input.faults.status_503_times"),
        (
            {"spec": {"input": {"files_modified": [{"path": "a.py", "operation": "rename"}]}}},
            "spec.input.files_modified[0].operation",
        ),
        (
            {"spec": {"input": {"files_modified": [{"path": "../etc/passwd", "operation": "delete"}]}}},
            "spec.input.files_modified[0].path",
        ),
    ],
)
def test_a_bad_body_gets_400_naming_the_field(
    reference_worker: RunningWorker, change: dict[str, Any], field: str
) -> None:
    task_id = _task_id()
    body = {**_body(task_id, {"kind": "echo"}), **change}

    response = requests.post(
        f"{reference_worker.url}/execute",
        json=body,
        headers=reference_worker.headers(**{"Idempotency-Key": f"{task_id}:1"}),
        timeout=TIMEOUT,
    )

    assert response.status_code == 400
    assert response.json()["field"] == field
    assert response.json()["code"] == "invalid_request"
    assert field in response.json()["error"]


@pytest.mark.parametrize(
    ("headers", "data", "status", "field"),
    [
        ({"Idempotency-Key": "someone-else:1"}, None, 400, "Idempotency-Key"),
        ({"Idempotency-Key": ""}, None, 400, "Idempotency-Key"),
        ({"Agency-Protocol": "2"}, None, 400, "Agency-Protocol"),
        ({"Content-Type": "application/json"}, b"{not json", 400, "body"),
        ({"Content-Type": "application/json"}, b"[1, 2]", 400, "body"),
        ({"Content-Type": "text/plain"}, b"{}", 415, "body"),
    ],
)
def test_bad_headers_and_bodies_are_refused_with_the_field(
    reference_worker: RunningWorker, headers: dict[str, str], data: bytes | None, status: int, field: str
) -> None:
    task_id = _task_id()
    all_headers = reference_worker.headers(**{"Idempotency-Key": f"{task_id}:1", **headers})
    payload = data if data is not None else json.dumps(_body(task_id, {})).encode()
    all_headers.setdefault("Content-Type", "application/json")

    response = requests.post(f"{reference_worker.url}/execute", data=payload, headers=all_headers, timeout=TIMEOUT)

    assert response.status_code == status
    assert response.json()["field"] == field


def test_unknown_paths_and_wrong_methods(reference_worker: RunningWorker) -> None:
    missing = requests.get(f"{reference_worker.url}/nope", timeout=TIMEOUT)
    wrong = requests.get(f"{reference_worker.url}/execute", headers=reference_worker.headers(), timeout=TIMEOUT)

    assert missing.status_code == 404
    assert wrong.status_code == 405
    assert wrong.headers["Allow"] == "POST"


# --- idempotency -------------------------------------------------------------------------------------


def test_a_repeated_key_replays_the_result_without_running_again(reference_worker: RunningWorker) -> None:
    task_id = _task_id()

    first = _execute(reference_worker, {"kind": "echo", "n": 1}, task_id=task_id)
    second = _execute(reference_worker, {"kind": "echo", "n": 1}, task_id=task_id)

    assert second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["Idempotency-Replayed"] == "true"
    assert "Idempotency-Replayed" not in first.headers
    assert len(_executions(reference_worker, task_id)) == 1
    assert [e["outcome"] for e in reference_worker.log(task_id=task_id)] == ["executed", "replayed"]


def test_a_repeated_key_while_running_gets_409_in_progress(reference_worker: RunningWorker) -> None:
    task_id = _task_id()
    input = {"kind": "sleep", "seconds": 0.5}
    with _execute(reference_worker, input, task_id=task_id, stream=True) as first:
        lines = first.iter_lines()
        next(lines)
        again = _execute(reference_worker, input, task_id=task_id)
        assert again.status_code == 409
        assert again.json()["code"] == "in_progress"
        assert again.headers["Retry-After"] == "1"
        events = _events(lines)

    assert events[-1]["status"] == "completed"
    assert _execute(reference_worker, input, task_id=task_id).json() == events[-1]
    assert len(_executions(reference_worker, task_id)) == 1


def test_concurrent_deliveries_of_one_key_start_the_work_once(reference_worker: RunningWorker) -> None:
    task_id = _task_id()
    input = {"kind": "sleep", "seconds": 0.5}
    statuses: list[int] = []
    lock = threading.Lock()

    def deliver() -> None:
        response = _execute(reference_worker, input, task_id=task_id, accept="application/json")
        with lock:
            statuses.append(response.status_code)

    callers = [threading.Thread(target=deliver) for _ in range(8)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(10)

    outcomes = sorted(e["outcome"] for e in reference_worker.log(task_id=task_id))
    assert outcomes.count("executed") == 1
    assert set(outcomes) <= {"executed", "in_progress", "replayed"}
    assert "in_progress" in outcomes
    assert 409 in statuses


def test_a_reused_key_with_a_different_spec_is_refused(reference_worker: RunningWorker) -> None:
    task_id = _task_id()
    _execute(reference_worker, {"kind": "echo", "n": 1}, task_id=task_id)

    response = _execute(reference_worker, {"kind": "echo", "n": 2}, task_id=task_id)

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"


def test_a_new_attempt_is_a_new_key_and_runs(reference_worker: RunningWorker) -> None:
    task_id = _task_id()

    _execute(reference_worker, {"kind": "echo"}, task_id=task_id, attempt=1)
    _execute(reference_worker, {"kind": "echo"}, task_id=task_id, attempt=2)

    assert [e["attempt"] for e in _executions(reference_worker, task_id)] == [1, 2]


# --- fault injection ---------------------------------------------------------------------------------


def test_status_503_times_refuses_that_many_calls_then_runs(reference_worker: RunningWorker) -> None:
    task_id = _task_id()
    input = {"kind": "echo", "faults": {"status_503_times": 2}}

    statuses = [_execute(reference_worker, input, task_id=task_id) for _ in range(3)]

    assert [r.status_code for r in statuses] == [503, 503, 200]
    assert statuses[0].headers["Retry-After"] == "0"
    assert statuses[0].json()["code"] == "injected_fault"
    assert statuses[2].json()["status"] == "completed"
    assert [(e["call"], e["status"]) for e in reference_worker.log(task_id=task_id)] == [(1, 503), (2, 503), (3, 200)]


def test_status_faults_apply_in_the_order_given(reference_worker: RunningWorker) -> None:
    task_id = _task_id()
    input = {"kind": "echo", "faults": {"status_429_times": 1, "status_500_times": 1, "retry_after_s": 2}}

    statuses = [_execute(reference_worker, input, task_id=task_id) for _ in range(3)]

    assert [r.status_code for r in statuses] == [429, 500, 200]
    assert statuses[0].headers["Retry-After"] == "2"


def test_latency_ms_delays_the_answer(reference_worker: RunningWorker) -> None:
    started = time.monotonic()

    response = _execute(reference_worker, {"kind": "echo", "faults": {"latency_ms": 300}})

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_drop_mid_stream_cuts_the_connection_and_the_retry_gets_the_result(reference_worker: RunningWorker) -> None:
    task_id = _task_id()
    input = {"kind": "sleep", "seconds": 0.3, "interval_s": 0.05, "faults": {"drop_mid_stream": 2}}
    seen: list[dict[str, Any]] = []

    with (
        _execute(reference_worker, input, task_id=task_id, stream=True) as response,
        pytest.raises(requests.exceptions.ChunkedEncodingError),
    ):
        seen.extend(json.loads(line) for line in response.iter_lines() if line)

    assert [e["type"] for e in seen] == ["log", "progress", "progress"]
    # The work went on without the connection; a retry of the same key never starts it again.
    retry = _wait_for(lambda: (r := _execute(reference_worker, input, task_id=task_id)).status_code == 200 and r)
    assert retry.json()["status"] == "completed"
    assert retry.headers["Idempotency-Replayed"] == "true"
    executions = _executions(reference_worker, task_id)
    assert len(executions) == 1
    assert executions[0]["delivered"] is False


def test_drop_on_a_json_answer_closes_without_a_response(reference_worker: RunningWorker) -> None:
    task_id = _task_id()
    input = {"kind": "echo", "faults": {"drop_mid_stream": 0}}

    with pytest.raises(requests.exceptions.ConnectionError):
        _execute(reference_worker, input, task_id=task_id)

    assert _execute(reference_worker, input, task_id=task_id).json()["status"] == "completed"


def test_always_fail_answers_every_execute_with_503(start_reference_worker: Any) -> None:
    worker = start_reference_worker("--always-fail", "--retry-after", "3")

    responses = [_execute(worker, {"kind": "echo"}) for _ in range(3)]

    assert {r.status_code for r in responses} == {503}
    assert responses[0].headers["Retry-After"] == "3"
    assert requests.get(f"{worker.url}/health", timeout=TIMEOUT).status_code == 200


def test_fail_rate_is_random_but_reproducible_with_a_seed(start_reference_worker: Any) -> None:
    patterns = []
    for _ in range(2):
        worker = start_reference_worker("--fail-rate", "0.5", "--seed", "7")
        patterns.append([_execute(worker, {"kind": "echo"}).status_code for _ in range(20)])

    assert patterns[0] == patterns[1]
    assert set(patterns[0]) == {200, 503}


def test_server_wide_latency_applies_to_every_execute(start_reference_worker: Any) -> None:
    worker = start_reference_worker("--latency-ms", "200")
    started = time.monotonic()

    _execute(worker, {"kind": "echo"})

    assert time.monotonic() - started >= 0.2


# --- capacity, health, request log, process --------------------------------------------------------------


def test_capacity_refuses_the_extra_execution_with_429(start_reference_worker: Any) -> None:
    worker = start_reference_worker("--capacity", "1")
    busy = _task_id()
    with _execute(worker, {"kind": "sleep", "seconds": 10, "interval_s": 0.05}, task_id=busy, stream=True) as first:
        lines = first.iter_lines()
        next(lines)
        health = requests.get(f"{worker.url}/health", timeout=TIMEOUT).json()
        refused = _execute(worker, {"kind": "echo"})
        _cancel(worker, busy)
        assert _events(lines)[-1]["error_code"] == "canceled"

    assert health == {
        "status": "ok",
        "active_tasks": 1,
        "capacity": 1,
        "protocol": 1,
        "kinds": ["echo", "sleep", "fail", "chat"],
    }
    assert refused.status_code == 429
    assert refused.json()["code"] == "at_capacity"
    assert refused.headers["Retry-After"] == "1"
    assert _execute(worker, {"kind": "echo"}).status_code == 200


def test_health_needs_no_token(reference_worker: RunningWorker) -> None:
    response = requests.get(f"{reference_worker.url}/health", timeout=TIMEOUT)

    assert response.status_code == 200
    assert response.json()["status"] == "ok"
    assert response.headers["Agency-Protocol"] == "1"


def test_the_request_log_file_gets_one_json_line_per_request(start_reference_worker: Any, tmp_path: Path) -> None:
    path = tmp_path / "requests.jsonl"
    worker = start_reference_worker("--request-log", str(path))
    task_id = _task_id()

    _execute(worker, {"kind": "echo"}, task_id=task_id)
    _cancel(worker, task_id)

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [(e["path"], e["outcome"]) for e in lines] == [("/execute", "executed"), ("/cancel", "finished")]
    first = lines[0]
    assert first["idempotency_key"] == f"{task_id}:1"
    assert first["status"] == 200
    assert first["attempt"] == 1
    assert datetime.fromisoformat(first["time"]).tzinfo is not None
    assert worker.log() == lines


def test_sigterm_stops_the_worker_cleanly(start_reference_worker: Any) -> None:
    worker = start_reference_worker()
    running = _execute(worker, {"kind": "sleep", "seconds": 30}, stream=True)
    next(running.iter_lines())

    started = time.monotonic()
    returncode = stop_process(worker.process)
    running.close()

    assert returncode == 0
    assert time.monotonic() - started < 3


def test_the_management_command_runs_the_same_server() -> None:
    command = [sys.executable, "manage.py", "reference_worker"]
    with reference_worker_process("--capacity", "3", command=command) as worker:
        health = requests.get(f"{worker.url}/health", timeout=TIMEOUT).json()
        result = _execute(worker, {"kind": "echo"}).json()

    assert health["capacity"] == 3
    assert result["status"] == "completed"


def test_the_module_entry_point_reports_bad_flags() -> None:
    process = subprocess.run(
        [sys.executable, "-m", "tasks.reference_worker", "--fail-rate", "2"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
        cwd=Path(__file__).resolve().parents[2],
    )

    assert process.returncode == 2
    assert "--fail-rate" in process.stderr
