"""SSE benchmark: many clients on one ASGI process (``manage.py serve``, the embedded default).

Three figures, printed (never asserted; see docs/performance.md for what was measured):

1. **Fan-out.** ``--clients`` (1,000) concurrent clients on ``/api/v1/metrics/stream``; the
   server's stream keeper publishes a KPI snapshot every second. Delivery latency of each
   snapshot to each client = the time the client read it minus the snapshot's
   ``generated_at`` (one machine, one clock; it includes computing the snapshot), p50/p99/max
   over every client and snapshot; and the server's resident memory per open connection.
2. **Replay.** ``--replay-clients`` (500) clients connect at once, each ``--behind`` (50)
   events behind (``Last-Event-ID``), and read until they are caught up: p50/p99/max of the
   time from opening the connection to the last replayed event.
3. **A long timeline.** A task with ``--events`` (100,000) timeline entries: the detail page's
   time to first byte and to the full response (signed in), and, when Debian's Chromium is
   there, the browser's time to DOMContentLoaded and to first contentful paint.

Everything listens on 127.0.0.1; the clients are raw asyncio sockets speaking HTTP/1.0 so
that the stream is close-delimited (no chunk framing to strip).

    python bench/sse.py [--clients 1000] [--replay-clients 500] [--behind 50] [--events 100000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from _common import LOCAL_PRODUCTION  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
USERS = """
from django.contrib.auth.models import User
from security.tokens import token_issue
user = User.objects.create_superuser("bench", password="bench-password-1")
print("TOKEN", token_issue(user=user, actor="system", name="bench")[1])
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def manage(env: dict[str, str], *args: str) -> str:
    """``manage.py <args>`` in ``env``; its standard output."""
    return subprocess.run(
        [PYTHON, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout


def start_server(env: dict[str, str], *serve_args: str) -> tuple[subprocess.Popen, str, int]:
    """Migrate, make the bench superuser, start ``manage.py serve`` on a free port, wait for /healthz.

    Returns (the server process, the user's token, the port). Also used by bench/chat.py.
    """
    import requests

    manage(env, "migrate", "--noinput")
    out = manage(env, "shell", "--no-imports", "-c", USERS)
    token = next(line.split()[1] for line in out.splitlines() if line.startswith("TOKEN"))
    port = free_port()
    server = subprocess.Popen(
        [PYTHON, "manage.py", "serve", "--port", str(port), *serve_args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return server, token, port
        except requests.ConnectionError:
            pass
        if time.monotonic() > deadline or server.poll() is not None:
            server.terminate()
            raise RuntimeError("server did not start")
        time.sleep(0.2)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"n={len(ms)} p50={pct(ms, 50):.1f} ms p99={pct(ms, 99):.1f} ms max={max(ms):.1f} ms"


class Client:
    """One SSE connection: records when each event was read."""

    def __init__(self, port: int, path: str, token: str, last_id: str | None = None) -> None:
        self.port, self.path, self.token, self.last_id = port, path, token, last_id
        self.opened = asyncio.Event()
        self.events: list[tuple[float, str, str, str]] = []  # (read at, type, id, data)
        self.started = 0.0
        self.writer: asyncio.StreamWriter | None = None
        self.wanted: tuple[str, asyncio.Event] | None = None

    async def run(self) -> None:
        self.started = time.monotonic()
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port, limit=2**20)
        self.writer = writer
        extra = f"Last-Event-ID: {self.last_id}\r\n" if self.last_id else ""
        writer.write(
            f"GET {self.path} HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: Token {self.token}\r\n"
            f"Accept: text/event-stream\r\n{extra}\r\n".encode()
        )
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        if b" 200 " not in head.split(b"\r\n", 1)[0]:
            raise RuntimeError(head.decode(errors="replace"))
        buffer = b""
        while True:
            data = await reader.read(65536)
            if not data:
                return
            now = time.monotonic()
            buffer += data
            *blocks, buffer = buffer.split(b"\n\n")
            for block in blocks:
                fields = dict(re.findall(r"^(event|id|data): ?(.*)$", block.decode(), flags=re.M))
                kind = fields.get("event", "")
                if kind == "stream-open":
                    self.opened.set()
                elif kind:
                    self.events.append((now, kind, fields.get("id", ""), fields.get("data", "")))
                    if self.wanted and fields.get("id") == self.wanted[0]:
                        self.wanted[1].set()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


async def fan_out(port: int, token: str, clients: int, snapshots: int, pid: int) -> None:
    before = rss_kib(pid)
    crowd = [Client(port, "/api/v1/metrics/stream", token) for _ in range(clients)]
    tasks = [asyncio.create_task(c.run()) for c in crowd]
    t0 = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*(c.opened.wait() for c in crowd)), timeout=120)
    connected_s = time.monotonic() - t0
    await asyncio.sleep(2)
    after = rss_kib(pid)
    wall_at_open = time.time()
    mono_at_open = time.monotonic()
    await asyncio.sleep(snapshots + 1.5)
    latencies: list[float] = []
    per_client: list[int] = []
    for c in crowd:
        n = 0
        for read_at, kind, _id, data in c.events:
            if kind != "snapshot":
                continue
            generated = datetime.fromisoformat(json.loads(data)["generated_at"]).timestamp()
            read_wall = wall_at_open + (read_at - mono_at_open)
            if generated < wall_at_open:
                continue  # the latest snapshot replayed at connect, published before the clients came
            latencies.append(read_wall - generated)
            n += 1
        per_client.append(n)
    for c in crowd:
        c.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(f"fan-out: {clients} clients connected in {connected_s:.2f} s")
    print(
        f"fan-out: server RSS {before / 1024:.1f} MiB -> {after / 1024:.1f} MiB: "
        f"{(after - before) / clients:.1f} KiB per connection"
    )
    print(f"fan-out: snapshots per client min={min(per_client)} max={max(per_client)}")
    print(f"fan-out: delivery latency (publish to read) {summary(latencies)}")


async def replay(port: int, token: str, clients: int, behind: int, current: int) -> None:
    target = f"metrics:{current}"
    crowd = [
        Client(port, "/api/v1/metrics/stream", token, last_id=f"metrics:{current - behind}") for _ in range(clients)
    ]
    done = [asyncio.Event() for _ in crowd]
    for c, e in zip(crowd, done, strict=True):
        c.wanted = (target, e)
    tasks = [asyncio.create_task(c.run()) for c in crowd]
    await asyncio.wait_for(asyncio.gather(*(e.wait() for e in done)), timeout=120)
    times = []
    counts = []
    for c in crowd:
        at = next(read_at for read_at, _k, id_, _d in c.events if id_ == target)
        times.append(at - c.started)
        counts.append(sum(1 for _r, k, id_, _d in c.events if k == "snapshot" and int(id_.split(":")[1]) <= current))
    for c in crowd:
        c.close()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(
        f"replay: {clients} clients {behind} events behind; "
        f"events replayed per client min={min(counts)} max={max(counts)}"
    )
    print(f"replay: connect to caught up {summary(times)}")


def long_timeline(base: str, env: dict[str, str], events: int) -> None:
    import requests

    script = f"""
from django.utils import timezone
from tasks.models import Task, TaskEvent
from tasks import services
from django.contrib.auth.models import User
spec = {{"title": "a long timeline", "risk_tier": 3, "scope": {{"in": ["src/"]}},
        "acceptance": [{{"id": "A1", "given": "g", "when": "w", "then": "t"}}]}}
task = services.task_create(spec=spec, actor=User.objects.get(username="bench"))
services.task_pause(task_id=task.pk, actor=User.objects.get(username="bench"), reason="bench: hold it still")
task.refresh_from_db()
start = task.event_seq
def payload(i):
    return {{"payload": {{"percent": i % 100, "phase": "step", "message": f"event {{i}}"}}}}
rows = [TaskEvent(task=task, seq=start + i, type="worker.progress", data=payload(i)) for i in range(1, {events} + 1)]
TaskEvent.objects.bulk_create(rows, batch_size=5000)
Task.objects.filter(pk=task.pk).update(event_seq=start + {events})
print("TASK", task.pk)
"""
    t0 = time.monotonic()
    out = subprocess.run(
        [PYTHON, "manage.py", "shell", "--no-imports", "-c", script],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    task_id = next(line.split()[1] for line in out.splitlines() if line.startswith("TASK"))
    print(f"timeline: {events} events written in {time.monotonic() - t0:.1f} s")
    session = requests.Session()
    login = session.get(f"{base}/login/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    session.post(
        f"{base}/login/",
        data={"username": "bench", "password": "bench-password-1", "csrfmiddlewaretoken": csrf},
        timeout=10,
    )
    url = f"{base}/tasks/{task_id}/"
    ttfb, total = [], []
    for _ in range(5):
        t0 = time.monotonic()
        with session.get(url, stream=True, timeout=30) as r:
            assert r.status_code == 200, r.status_code
            next(r.iter_content(1))
            ttfb.append(time.monotonic() - t0)
            size = 1 + sum(len(chunk) for chunk in r.iter_content(65536))
            total.append(time.monotonic() - t0)
    print(
        f"timeline: detail page ({size / 1024:.0f} KiB) time to first byte {summary(ttfb)}; "
        f"full response {summary(total)}"
    )
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        print("timeline: no Chromium here; browser render time not measured")
        return
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        context = browser.new_context()
        context.add_cookies([{"name": c.name, "value": c.value, "url": base} for c in session.cookies])
        page = context.new_page()
        dcl, fcp = [], []
        for _ in range(5):
            page.goto(url, wait_until="load")
            timing = page.evaluate(
                "() => { const n = performance.getEntriesByType('navigation')[0];"
                " const p = performance.getEntriesByName('first-contentful-paint')[0];"
                " return [n.domContentLoadedEventEnd, p ? p.startTime : null]; }"
            )
            dcl.append(timing[0] / 1000)
            if timing[1] is not None:
                fcp.append(timing[1] / 1000)
        browser.close()
    print(
        f"timeline: Chromium DOMContentLoaded {summary(dcl)}"
        + (f"; first contentful paint {summary(fcp)}" if fcp else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--snapshots", type=int, default=10, help="Seconds of snapshots to measure (one a second).")
    parser.add_argument("--replay-clients", type=int, default=500)
    parser.add_argument("--behind", type=int, default=50)
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-sse-"))
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SQLITE_PATH"}}
    env |= {
        "DATA_DIR": str(data_dir),
        "DEBUG": "false",
        **LOCAL_PRODUCTION,
        "SECRET_KEY": "bench-sse-" + "k" * 50,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        "AGENCY_KPI_INTERVAL_S": "1",
    }

    def run(*a: str) -> str:
        return manage(env, *a)

    server, token, port = start_server(env)
    base = f"http://127.0.0.1:{port}"
    try:
        print(f"server: manage.py serve (daphne, one process, SQLite), pid {server.pid}; KPI snapshot every 1 s")
        asyncio.run(fan_out(port, token, args.clients, args.snapshots, server.pid))
        # Enough stored snapshots to be --behind: wait for the keeper (one a second).
        current = 0
        deadline = time.monotonic() + args.behind * 2 + 30
        while current <= args.behind + 1 and time.monotonic() < deadline:
            time.sleep(1)
            out = run(
                "shell",
                "--no-imports",
                "-c",
                "from django_eventstream.models import EventCounter as C; "
                "print('CUR', (C.objects.filter(name='metrics').values_list('value', flat=True).first() or 0))",
            )
            current = int(next(line.split()[1] for line in out.splitlines() if line.startswith("CUR")))
        asyncio.run(replay(port, token, args.replay_clients, args.behind, current))
        long_timeline(base, env, args.events)
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
