"""Running the CLI as its users do: ``python -m agency`` in a subprocess, configured by its environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.browser.support import ROOT

# Every CLI call is bounded: a command that hangs fails its test in seconds.
CALL_TIMEOUT_S = 60


def cli_env(url: str, token: str | None, config: Path, **extra: str) -> dict[str, str]:
    """The environment of one CLI run: the server, the token, and a config file of the test's own."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENCY_")}
    env |= {"AGENCY_URL": url, "AGENCY_CONFIG": str(config), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    if token is not None:
        env["AGENCY_TOKEN"] = token
    env |= extra
    return env


def run(
    args: list[str], env: dict[str, str], *, stdin: str | None = None, timeout: float = CALL_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "agency", *args],
        cwd=ROOT,
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """A long-running CLI process (``watch``), read line by line."""
    return subprocess.Popen(
        [sys.executable, "-m", "agency", *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
    )


def json_lines(text: str) -> list[Any]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]
