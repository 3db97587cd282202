"""Chat benchmark: many WebSocket sessions on one ASGI process (``manage.py serve``, the embedded default).

``--sessions`` (500) sessions, each on its own connection, each sends ``--messages`` (20)
messages, one at a time: the next is sent once the reply to the previous one arrived, after
``--pause`` seconds (default 0: as fast as the server answers; with a pause, each session
starts at a random moment within the first pause, so the load is spread). Printed (never asserted; see
docs/performance.md for what was measured):

- the round trip of each message: send → its ``ack`` (stored), and send → the assistant's
  reply (stored and sent), p50/p95/p99/max over every message of every session;
- messages missing from the database afterwards (every session must hold exactly
  2 x ``--messages``: each user message and its reply, numbered 1..n without a gap);
- the server's resident memory with every connection open, and per connection.

Everything listens on 127.0.0.1; the server runs without dispatcher and worker (the text
sent is no command, so the reply is the echo with its hint: the path of every message).

    python bench/chat.py [--sessions 500] [--messages 20] [--pause 0]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import requests
from _common import LOCAL_PRODUCTION
from sse import manage, pct, rss_kib, start_server
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

COUNT = """
from chat.models import ChatMessage, ChatSession
from django.db.models import Count, Max
rows = ChatSession.objects.annotate(n=Count("messages"), top=Max("messages__seq")).values_list("n", "top")
print("COUNTS", ";".join(f"{n},{top or 0}" for n, top in rows))
"""


def stats(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"n={len(ms)} p50={pct(ms, 50):.1f} ms p95={pct(ms, 95):.1f} ms p99={pct(ms, 99):.1f} ms max={max(ms):.1f} ms"
    )


async def one_session(port: int, token: str, session_id: str, messages: int, pause: float, ready, go, out) -> None:
    url = f"ws://127.0.0.1:{port}/api/v1/chat/ws/{session_id}"
    async with connect(
        url, additional_headers={"Authorization": f"Token {token}"}, open_timeout=60, max_queue=None
    ) as ws:
        json.loads(await ws.recv())  # history
        ready()
        await go.wait()
        if pause:
            # Sessions start spread over one pause, as people do, not all in the same instant.
            await asyncio.sleep(random.uniform(0, pause))
        for i in range(messages):
            sent = time.perf_counter()
            await ws.send(json.dumps({"type": "message", "content": f"note {i} of {session_id[:8]}"}))
            acked = replied = None
            while replied is None:
                frame = json.loads(await asyncio.wait_for(ws.recv(), timeout=120))
                now = time.perf_counter()
                if frame["type"] == "ack":
                    acked = now
                elif frame["type"] == "message" and frame["message"]["role"] == "assistant":
                    replied = now
                elif frame["type"] == "error":
                    raise RuntimeError(f"error frame: {frame}")
            out["ack"].append(acked - sent)
            out["reply"].append(replied - sent)
            if pause:
                await asyncio.sleep(pause)


async def run_sessions(port: int, token: str, sessions: list[str], messages: int, pause: float, pid: int) -> None:
    out: dict[str, list[float]] = {"ack": [], "reply": []}
    go = asyncio.Event()
    connected = 0
    all_ready = asyncio.Event()

    def ready() -> None:
        nonlocal connected
        connected += 1
        if connected == len(sessions):
            all_ready.set()

    before = rss_kib(pid)
    started = time.monotonic()
    tasks = [asyncio.ensure_future(one_session(port, token, s, messages, pause, ready, go, out)) for s in sessions]
    await asyncio.wait_for(all_ready.wait(), timeout=300)
    connect_s = time.monotonic() - started
    during = rss_kib(pid)
    print(f"connections: {len(sessions)} open in {connect_s:.2f} s")
    print(
        f"memory: server RSS {before / 1024:.1f} MiB -> {during / 1024:.1f} MiB: "
        f"{(during - before) / len(sessions):.1f} KiB per connection"
    )
    started = time.monotonic()
    go.set()
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    total = len(sessions) * messages
    print(f"messages: {total} sent in {elapsed:.1f} s ({total / elapsed:.0f} a second, each answered)")
    print(f"round trip send -> ack: {stats(out['ack'])}")
    print(f"round trip send -> reply: {stats(out['reply'])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=500)
    parser.add_argument("--messages", type=int, default=20)
    parser.add_argument("--pause", type=float, default=0.0, help="Seconds between a reply and the next message.")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="bench-chat-"))
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SQLITE_PATH"}}
    env |= {
        "DATA_DIR": str(data_dir),
        "DEBUG": "false",
        **LOCAL_PRODUCTION,
        "SECRET_KEY": "bench-chat-" + "k" * 50,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "LOG_LEVEL": "WARNING",
        # One message at a time per session, never faster than the server answers: no limit hit.
        "CHAT_RATE_BURST": str(max(20, args.messages)),
    }

    server, token, port = start_server(env, "--no-dispatcher", "--no-worker")
    base = f"http://127.0.0.1:{port}"
    try:
        api = requests.Session()
        api.headers["Authorization"] = f"Token {token}"
        sessions = [
            api.post(f"{base}/api/v1/chat/session", json={"title": f"bench {i}"}, timeout=30).json()["session_id"]
            for i in range(args.sessions)
        ]
        print(f"server: manage.py serve (daphne, one process, SQLite), pid {server.pid}; {len(sessions)} sessions")
        asyncio.run(run_sessions(port, token, sessions, args.messages, args.pause, server.pid))
        counts = next(
            line for line in manage(env, "shell", "--no-imports", "-c", COUNT).splitlines() if line.startswith("COUNTS")
        )
        pairs = [tuple(map(int, p.split(","))) for p in counts.split()[1].split(";")]
        expected = 2 * args.messages
        missing = sum(max(0, expected - n) for n, _ in pairs)
        gaps = sum(1 for n, top in pairs if n != top)
        stored = sum(n for n, _ in pairs)
        print(f"database: {stored} messages stored; {missing} missing; {gaps} sessions with a gap in seq")
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
