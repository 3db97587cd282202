"""Fixtures of the CLI tests: one real server for the package, and the CLI run against it per role.

The server is ``manage.py serve`` as a fresh clone runs it (tests/browser/support.py's
``AgencyServer``: daphne, the dispatcher and the local reference worker, SQLite, on a free
127.0.0.1 port, with a user and a token per role). The tests talk to it only through the CLI
(and, for set-up the CLI does not offer, through the REST API with a token).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.browser.support import AgencyServer
from tests.cli import support

CliRun = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="package")
def agency_server(tmp_path_factory) -> Iterator[AgencyServer]:
    server = AgencyServer(data_dir=tmp_path_factory.mktemp("cli-server"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def config_file(tmp_path) -> Path:
    """Where this test's CLI keeps its config: never the user's own."""
    return tmp_path / "agency" / "config.json"


def make_runner(server: AgencyServer, config: Path) -> CliRun:
    def cli(
        *args: str,
        role: str | None = "operator",
        stdin: str | None = None,
        url: str | None = None,
        token: str | None = None,
        **env: str,
    ) -> subprocess.CompletedProcess[str]:
        key = token if token is not None else (server.users[role]["token"] if role else None)
        return support.run(list(args), support.cli_env(url or server.url, key, config, **env), stdin=stdin)

    return cli


@pytest.fixture
def cli(agency_server, config_file) -> CliRun:
    """``cli("list", "--state", "running", role="viewer")``: the CLI in a subprocess, as that role."""
    return make_runner(agency_server, config_file)
