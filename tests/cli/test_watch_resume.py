"""``agency watch`` across dropped connections, against a scripted server on 127.0.0.1.

The real server's restart is tested in test_restart.py; here a small HTTP server plays
the API's part exactly, so the test can see the ``Last-Event-ID`` each reconnect sends and
cut the stream where it likes: mid-chunk, before the terminal entry, for good.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.browser.support import free_port
from tests.cli import support

pytestmark = pytest.mark.timeout(60)

TASK = str(uuid.uuid4())


def entry(seq: int, type_: str, **data: Any) -> dict[str, Any]:
    return {"task_id": TASK, "seq": seq, "type": type_, "data": data, "created_at": "2026-12-03T10:00:00.000Z"}


def progress(seq: int, percent: int) -> dict[str, Any]:
    return entry(seq, "worker.progress", attempt=1, payload={"percent": percent, "phase": "sleeping"})


TIMELINE = [
    entry(1, "created", **{"from": None, "to": "queued"}),
    entry(2, "attempt_started", **{"from": "queued", "to": "running"}, attempt=1, worker="w"),
    progress(3, 25),
    progress(4, 50),
    progress(5, 75),
    entry(6, "completed", **{"from": "running", "to": "completed"}, attempt=1, decision="approved"),
]


def sse(item: dict[str, Any]) -> bytes:
    return f"event: event\nid: task-{TASK}:{item['seq']}\ndata: {json.dumps(item)}\n\n".encode()


class Script:
    """What the fake server does: the task's state per REST read, and each stream connection's part."""

    def __init__(self, streams: list[Callable[[Any, str], None]], state_after: Callable[[int], str]) -> None:
        self.streams = streams
        self.state_after = state_after
        self.last_event_ids: list[str | None] = []
        self.rest_reads = 0
        self.down = False  # when set, every request is hung up on
        self.chunked = True  # else the stream ends with the connection (HTTP/1.0 style)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    script: Script

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _json(self, body: Any, status: int = 200) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = parse_qs(url.query)
        script = self.script
        if script.down:
            self.close_connection = True  # no answer at all: what a server going away looks like
            return
        if url.path == f"/api/v1/tasks/{TASK}":
            script.rest_reads += 1
            state = script.state_after(script.rest_reads)
            events = [e for e in TIMELINE if e["seq"] <= (2 if state == "running" else 6)]
            percent = 100 if state == "completed" else 0
            self._json(
                {
                    "id": TASK,
                    "title": "Scripted",
                    "state": state,
                    "progress": {"percent": percent, "phase": ""},
                    "events": [{k: v for k, v in e.items() if k != "task_id"} for e in events],
                    "error": "",
                }
            )
        elif url.path == f"/api/v1/tasks/{TASK}/events":
            after = int(query["after"][0])
            results = [{k: v for k, v in e.items() if k != "task_id"} for e in TIMELINE if e["seq"] > after]
            self._json({"results": results, "last_seq": results[-1]["seq"] if results else after})
        elif url.path == "/api/v1/tasks/stream" and query.get("task") == [TASK]:
            script.last_event_ids.append(self.headers.get("Last-Event-ID"))
            if not script.streams:
                self._json({"detail": "no more streams in this script"}, status=503)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            if script.chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            script.streams.pop(0)(self, self.headers.get("Last-Event-ID") or "")
            self.close_connection = True
        else:
            self._json({"detail": "Not found.", "code": "not_found"}, status=404)


def chunk(handler: Handler, data: bytes) -> None:
    handler.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
    handler.wfile.flush()


def replay_after(last_id: str) -> list[dict[str, Any]]:
    after = int(last_id.rpartition(":")[2])
    return [e for e in TIMELINE if e["seq"] > after]


def drop_after(count: int, *, then_down: bool = False) -> Callable[[Handler, str], None]:
    """Send the opening and ``count`` entries, then cut the connection (no final chunk);
    with ``then_down``, the server answers nothing more."""

    def stream(handler: Handler, last_id: str) -> None:
        chunk(handler, f"event: stream-open\nid: {last_id}\ndata: \n\n".encode())
        for item in replay_after(last_id)[:count]:
            chunk(handler, sse(item))
        time.sleep(0.1)
        handler.script.down = then_down
        handler.wfile.write(b"5\r\nevent")  # half a chunk, and the connection goes

    return stream


def to_the_end(handler: Handler, last_id: str) -> None:
    chunk(handler, f"event: stream-open\nid: {last_id}\ndata: \n\n: keep-alive\n\n".encode())
    for item in replay_after(last_id):
        chunk(handler, sse(item))
    handler.wfile.write(b"0\r\n\r\n")


@pytest.fixture
def serve() -> Iterator[Callable[[Script], str]]:
    servers: list[ThreadingHTTPServer] = []

    def start(script: Script) -> str:
        handler = type("ScriptedHandler", (Handler,), {"script": script})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}"

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


def test_a_stream_without_chunks_is_read_as_it_arrives(serve, tmp_path):
    """Behind a proxy that drops the chunking, entries still show as they come, not at the end."""
    shown = threading.Event()

    def slowly(handler: Handler, last_id: str) -> None:
        for item in replay_after(last_id):
            if item["type"] == "completed":
                assert shown.wait(20), "the client did not show the entries before the stream ended"
            handler.wfile.write(sse(item))
            handler.wfile.flush()

    script = Script([slowly], state_after=lambda reads: "running")
    script.chunked = False
    url = serve(script)
    process = support.spawn(["watch", TASK, "--json"], support.cli_env(url, "agy_test", tmp_path / "c.json"))
    try:
        seqs = [json.loads(process.stdout.readline())["seq"] for _ in range(3)]
        shown.set()
        out, err = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert seqs == [3, 4, 5]
    assert process.returncode == 0, err
    assert [e["seq"] for e in support.json_lines(out)] == [6]


def watch(url: str, config: Path, *args: str):
    return support.run(["watch", TASK, *args], support.cli_env(url, "agy_test", config))


def test_a_dropped_stream_is_resumed_with_the_last_event_id_and_nothing_is_missed(serve, tmp_path):
    script = Script([drop_after(2), to_the_end], state_after=lambda reads: "running")
    url = serve(script)

    result = watch(url, tmp_path / "c.json", "--json", "--reconnect-timeout", "10")

    assert result.returncode == 0, result.stdout + result.stderr
    assert script.last_event_ids == [f"task-{TASK}:2", f"task-{TASK}:4"]
    assert [e["seq"] for e in support.json_lines(result.stdout)] == [3, 4, 5, 6]
    assert "connection lost (the connection broke mid-answer)" in result.stderr
    assert "reconnected; resuming after event 4" in result.stderr


def test_a_task_that_ended_while_the_connection_was_down_is_caught_up_over_rest(serve, tmp_path):
    # The first REST read (at start) shows it running; the one after the drop, completed.
    script = Script([drop_after(1)], state_after=lambda reads: "running" if reads == 1 else "completed")
    url = serve(script)

    result = watch(url, tmp_path / "c.json", "--json", "--reconnect-timeout", "10")

    assert result.returncode == 0, result.stdout + result.stderr
    assert len(script.last_event_ids) == 1  # no second stream was needed
    assert [e["seq"] for e in support.json_lines(result.stdout)] == [3, 4, 5, 6]


def test_a_server_that_stays_away_ends_the_watch_with_exit_5(serve, tmp_path):
    script = Script([drop_after(1, then_down=True)], state_after=lambda reads: "running")
    url = serve(script)

    started = time.monotonic()
    result = watch(url, tmp_path / "c.json", "--reconnect-timeout", "1.5")

    assert result.returncode == 5, result.stdout + result.stderr
    assert time.monotonic() - started < 15
    assert f"lost the server at {url}" in result.stderr
    assert f"run `agency watch {TASK}` to resume" in result.stderr
    assert "25% sleeping" in result.stdout  # it showed what it got before


def test_watch_of_an_unreachable_server_exits_5_at_once(tmp_path):
    result = watch(f"http://127.0.0.1:{free_port()}", tmp_path / "c.json")

    assert result.returncode == 5
    assert "cannot reach" in result.stderr
    assert "connection refused" in result.stderr
