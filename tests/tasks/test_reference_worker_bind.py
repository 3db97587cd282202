"""The reference worker's safe default: beyond loopback only with a bearer token, else a clear error at start."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from typing import Any

import pytest
import requests
from django.core.management import CommandError, call_command

from tasks.reference_worker.cli import TOKEN_ENV, add_arguments, config_from_options
from tasks.reference_worker.server import ReferenceWorkerServer, UnsafeBind, WorkerConfig, is_loopback
from tests.tasks.conftest import REPO_ROOT, reference_worker_process

pytestmark = pytest.mark.timeout(60)


def options(*argv: str) -> dict[str, Any]:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return vars(parser.parse_args(argv))


def without_token_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if key != TOKEN_ENV}


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "", "192.0.2.10", "[::]", "example.invalid"])  # noqa: S104
def test_a_non_loopback_host_without_a_token_is_refused_naming_the_flag(monkeypatch, host):
    monkeypatch.delenv(TOKEN_ENV, raising=False)

    with pytest.raises(ValueError, match="--host") as caught:
        config_from_options(options("--host", host))
    assert "without a bearer token" in str(caught.value)
    assert TOKEN_ENV in str(caught.value)


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_loopback_needs_no_token(monkeypatch, host):
    monkeypatch.delenv(TOKEN_ENV, raising=False)

    assert config_from_options(options("--host", host)).token is None
    assert is_loopback(host)


def test_a_token_from_the_flag_or_the_environment_allows_any_interface(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    assert config_from_options(options("--host", "0.0.0.0", "--token", "s3cret")).token == "s3cret"  # noqa: S104
    monkeypatch.setenv(TOKEN_ENV, "from-env")
    assert config_from_options(options("--host", "0.0.0.0")).token == "from-env"  # noqa: S104


def test_embedding_code_gets_the_same_refusal_before_anything_listens():
    with pytest.raises(UnsafeBind):
        ReferenceWorkerServer(WorkerConfig(host="0.0.0.0", port=0))  # noqa: S104


def test_the_process_exits_non_zero_with_the_reason_and_never_listens():
    result = subprocess.run(
        [sys.executable, "-m", "tasks.reference_worker", "--host", "0.0.0.0", "--port", "0"],  # noqa: S104
        cwd=REPO_ROOT,
        env=without_token_env(),
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert result.returncode == 2
    assert "listening on" not in result.stdout
    assert "--host: refusing to listen on '0.0.0.0' without a bearer token" in result.stderr


def test_with_a_token_it_listens_on_every_interface_and_still_asks_for_the_token():
    with reference_worker_process("--host", "0.0.0.0", token="s3cret-token") as worker:  # noqa: S104
        assert worker.url.startswith("http://0.0.0.0:")
        port = worker.url.rsplit(":", 1)[1]
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=5)
        unauthorized = requests.post(f"http://127.0.0.1:{port}/cancel", json={}, timeout=5)

    assert health.status_code == 200
    assert unauthorized.status_code == 401


def test_the_management_command_refuses_the_same(monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)

    with pytest.raises(CommandError, match="without a bearer token"):
        call_command("reference_worker", "--host", "0.0.0.0", "--port", "0")  # noqa: S104
