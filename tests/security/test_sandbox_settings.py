"""``SANDBOX_ROOTS``: the default, a configured list, and clear startup errors for bad values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import django, json; django.setup(); from django.conf import settings; print(json.dumps(settings.SANDBOX_ROOTS))"
)


def run_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SANDBOX_ROOTS"}}
    clean |= {"DJANGO_SETTINGS_MODULE": "config.settings", "DATA_DIR": str(tmp_path / "data")} | env
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_the_default_is_the_workspace_under_data_dir_and_the_agent_directories_in_tmp(tmp_path):
    result = run_settings(tmp_path)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [str((tmp_path / "data").resolve() / "workspace"), "/tmp/agent-*"]  # noqa: S108


def test_configured_roots_are_resolved_once_and_keep_their_pattern(tmp_path):
    (tmp_path / "real").mkdir()
    os.symlink(tmp_path / "real", tmp_path / "alias")

    result = run_settings(tmp_path, SANDBOX_ROOTS=f"{tmp_path}/alias/ws, {tmp_path}/alias/jobs-*")

    assert result.returncode == 0, result.stderr
    real = (tmp_path / "real").resolve()
    assert json.loads(result.stdout) == [f"{real}/ws", f"{real}/jobs-*"]


@pytest.mark.parametrize(
    "value",
    [
        "relative/workspace",
        "/tmp/agent-*",  # noqa: S108 - the first root is the workspace, one directory
        "/srv/ws,/srv/*/deeper",
        "/",
        "/srv/ws,/",
        ",",
    ],
)
def test_a_bad_value_is_a_clear_startup_error(tmp_path, value):
    result = run_settings(tmp_path, SANDBOX_ROOTS=value)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "SANDBOX_ROOTS" in result.stderr
