"""The browser tests' parts: the real server in a subprocess, Chromium's launch, axe, small waits.

The server is what a fresh clone runs (``manage.py serve``: daphne, the dispatcher and a local
reference worker in one process, SQLite, the in-memory channel layer), on a private data
directory and a free port. The test process talks to it only over HTTP: through the browser,
and through the REST API with a token for the changes a test causes "from elsewhere".
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"

# Debian's package; Playwright's own browser download is neither wanted nor possible here.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root, where Chromium's sandbox refuses to start
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    # Nothing but the server under test on the network: no update checks, no sync, no pings.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 800}
# Every wait is bounded: a page that never shows what it should fails in seconds, not at the
# suite's timeout.
WAIT_MS = 15_000

# Every browser test module: `-m "not browser"` leaves them out, and without Chromium they
# skip with the reason instead of failing on a launch error; never in CI (CI set), which
# installs it: there a missing browser fails the run rather than passing it unseen.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(
        not CHROMIUM.exists() and not os.environ.get("CI"), reason=f"{CHROMIUM} is absent (apt-get install chromium)"
    ),
    pytest.mark.timeout(120),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class AgencyServer:
    """``manage.py serve`` on 127.0.0.1:<free port>, with a user and a token per role."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    users: dict[str, dict[str, str]] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        # The embedded default whatever the surrounding suite runs on: the PostgreSQL run's
        # DATABASE_URL and REDIS_URL would point this server at the test run's own services.
        env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SQLITE_PATH"}}
        env |= {
            "DATA_DIR": str(self.data_dir),
            "DATABASE_URL": "",
            "REDIS_URL": "",
            "PROMETHEUS_MULTIPROC_DIR": "",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "AGENCY_KPI_INTERVAL_S": "1",  # a KPI snapshot every second: tiles change within the wait
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
        return env

    def _run(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, *args], cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=120
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}):\n{result.stderr[-4000:]}")
        return result.stdout

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._run("manage.py", "migrate", "--noinput", "-v0")
        self.users = json.loads(self._run(str(ROOT / "tests" / "browser" / "seed.py")))
        self.launch()

    def launch(self) -> None:
        """Start ``manage.py serve`` on the data directory as it is: after :meth:`start`'s
        migration and seeding, or again after :meth:`stop` (same port, data and tokens)."""
        self.log_path = self.data_dir / "serve.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                cwd=ROOT,
                env=self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"manage.py serve exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"manage.py serve did not answer /healthz within 30 s:\n{self.log_tail()}")
            time.sleep(0.1)
        self._wait_for_dispatch()

    def _wait_for_dispatch(self) -> None:
        """The dispatcher and the local worker start after daphne listens: wait until they are up."""
        api = self.api("admin")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            response = api.get(f"{self.url}/api/health", timeout=5)
            components = response.json().get("components", {})
            if components.get("dispatcher", {}).get("status") == "healthy":
                return
            time.sleep(0.2)
        raise RuntimeError(f"the dispatcher did not become healthy within 30 s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # daphne stops gracefully, then the dispatcher
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def restart(self) -> None:
        self.stop()
        self.launch()

    def log_tail(self, lines: int = 60) -> str:
        if self.log_path is None or not self.log_path.exists():
            return "(no log)"
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # --- the API, for changes a test causes from outside the page under test -------------
    def api(self, role: str) -> requests.Session:
        session = requests.Session()
        session.headers["Authorization"] = f"Token {self.users[role]['token']}"
        return session

    def create_task(self, role: str = "operator", **spec: Any) -> dict[str, Any]:
        spec.setdefault("title", "A browser test task")
        response = self.api(role).post(f"{self.url}/api/v1/tasks", json=spec, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()

    def task(self, task_id: str, role: str = "operator") -> dict[str, Any]:
        response = self.api(role).get(f"{self.url}/api/v1/tasks/{task_id}", timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for_state(self, task_id: str, *states: str, timeout_s: float = 20) -> dict[str, Any]:
        return wait_until(
            lambda: (task := self.task(task_id))["state"] in states and task,
            timeout_s=timeout_s,
            what=f"task {task_id} in {states}",
        )


def wait_until(check: Callable[[], Any], *, timeout_s: float = 15, what: str = "the condition") -> Any:
    """Poll ``check`` until it returns something truthy (returned), or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.1)


# --- accessibility --------------------------------------------------------------------
_AXE = None


def assert_accessible(page: Any, what: str = "") -> None:
    """axe-core on the page as it is now: fail on any serious or critical violation, with its nodes."""
    global _AXE
    from axe_playwright_python.sync_playwright import Axe

    if _AXE is None:
        _AXE = Axe()
    results = _AXE.run(page)
    bad = [v for v in results.response["violations"] if v.get("impact") in {"serious", "critical"}]
    if not bad:
        return
    lines = [f"axe: {len(bad)} serious/critical violation(s) on {what or page.url}:"]
    for violation in bad:
        lines.append(f"- {violation['id']} ({violation['impact']}): {violation['help']} <{violation['helpUrl']}>")
        for node in violation["nodes"][:10]:
            lines.append(f"    {' '.join(map(str, node.get('target', [])))}: {node.get('html', '')[:200]}")
            summary = node.get("failureSummary", "").replace("\n", " ")
            if summary:
                lines.append(f"      {summary[:300]}")
        if len(violation["nodes"]) > 10:
            lines.append(f"    ... and {len(violation['nodes']) - 10} more")
    pytest.fail("\n".join(lines), pytrace=False)


def screenshot(page: Any, name: str) -> Path:
    """A full-page PNG in docs/screenshots/ (linked from the README), at the fixed viewport."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.set_viewport_size(VIEWPORT)
    page.screenshot(path=str(path), full_page=True, animations="disabled", caret="hide")
    return path
