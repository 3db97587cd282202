"""A symlink swapped in after the check: the sandbox has no check-then-open gap to swap it into.

The attack: a directory on the path is replaced by a symlink to somewhere outside, at the
moment between the resolver's look at the path and its use of it. The deterministic tests
make that swap happen exactly after the sandbox has opened the directory (by wrapping
``os.open``); a naive resolver put through the same swap reads the secret, which shows the
scenario is a real attack and these tests could fail. The threaded tests swap back and forth
as fast as they can (an atomic exchange, so the path always exists) while reads and writes run.
"""

from __future__ import annotations

import ctypes
import os
import threading
import time
from pathlib import Path

import pytest

from security.sandbox import Reason, Sandbox, SandboxDenied

pytestmark = pytest.mark.timeout(60)

INSIDE = "inside the root\n"
SECRET = "SECRET outside the root\n"


@pytest.fixture
def scene(tmp_path: Path) -> tuple[Path, Path]:
    """``root/a/file.txt`` inside, ``outside/file.txt`` outside: the swap turns ``a`` into a symlink to outside."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a").mkdir(parents=True)
    (root / "a" / "file.txt").write_text(INSIDE)
    outside.mkdir()
    (outside / "file.txt").write_text(SECRET)
    return root, outside


def swap(root: Path, outside: Path) -> None:
    """``root/a`` becomes a symlink to ``outside``; the real directory moves to ``root/a.orig``."""
    os.rename(root / "a", root / "a.orig")
    os.symlink(outside, root / "a")


def swap_after_opening(monkeypatch: pytest.MonkeyPatch, name: str, root: Path, outside: Path) -> list[str]:
    """Make ``os.open`` swap ``root/a`` right after it has opened ``name``; the returned list logs when."""
    real_open = os.open
    swapped: list[str] = []

    def open_then_swap(path, flags, mode=0o777, *, dir_fd=None):
        fd = real_open(path, flags, mode, dir_fd=dir_fd)
        if path == name and not swapped:
            swap(root, outside)
            swapped.append(path)
        return fd

    monkeypatch.setattr(os, "open", open_then_swap)
    return swapped


def test_a_directory_swapped_for_a_symlink_after_it_was_opened_cannot_redirect_the_read(monkeypatch, scene):
    root, outside = scene
    sandbox = Sandbox([str(root)])
    swapped = swap_after_opening(monkeypatch, "a", root, outside)

    content = sandbox.read_text("a/file.txt")

    assert swapped == ["a"]  # the swap happened, between opening "a" and opening "file.txt" in it
    assert (root / "a").is_symlink()
    assert content == INSIDE  # read through the descriptor of the real directory, never the link
    monkeypatch.undo()
    with pytest.raises(SandboxDenied) as caught:
        sandbox.read_text("a/file.txt")  # the next operation meets the symlink and refuses it
    assert caught.value.reason == Reason.SYMLINK


def test_a_directory_swapped_after_it_was_opened_cannot_redirect_the_write(monkeypatch, scene):
    root, outside = scene
    sandbox = Sandbox([str(root)])
    swapped = swap_after_opening(monkeypatch, "a", root, outside)

    sandbox.write_text("a/new.txt", "written\n")

    assert swapped == ["a"]
    assert (root / "a.orig" / "new.txt").read_text() == "written\n"
    assert sorted(os.listdir(outside)) == ["file.txt"]


def test_a_naive_check_then_open_reads_the_secret_under_the_same_swap(scene):
    """The contrast: resolve, check the resolved path is inside, then open by name."""
    root, outside = scene
    path = root / "a" / "file.txt"

    assert os.path.realpath(path).startswith(str(root) + os.sep)  # the check passes...
    swap(root, outside)  # ...the swap lands in the gap...
    assert path.read_text() == SECRET  # ...and the open follows the symlink out


_libc = ctypes.CDLL(None, use_errno=True)
_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def exchange(a: Path, b: Path) -> None:
    """Swap two names atomically (``renameat2(RENAME_EXCHANGE)``): ``a`` never goes missing."""
    if _libc.renameat2(_AT_FDCWD, bytes(a), _AT_FDCWD, bytes(b), _RENAME_EXCHANGE) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def flip_forever(root: Path, outside: Path, stop: threading.Event) -> int:
    """Exchange ``root/a`` between the real directory and a symlink to ``outside`` until told to stop."""
    flips = 0
    os.symlink(outside, root / "a.link")
    while not stop.is_set():
        exchange(root / "a", root / "a.link")
        flips += 1
    return flips


@pytest.mark.parametrize("operation", ["read", "write"])
def test_under_a_symlink_flipping_as_fast_as_it_can_nothing_outside_is_ever_touched(scene, operation):
    root, outside = scene
    if not hasattr(_libc, "renameat2"):
        pytest.skip("needs renameat2 (Linux, glibc 2.28 or later)")
    sandbox = Sandbox([str(root)])
    stop = threading.Event()
    flips: list[int] = []
    flipper = threading.Thread(target=lambda: flips.append(flip_forever(root, outside, stop)), daemon=True)
    succeeded = 0
    refusals: set[Reason] = set()
    flipper.start()
    try:
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            try:
                if operation == "read":
                    content = sandbox.read_text("a/file.txt")
                    assert content == INSIDE
                else:
                    sandbox.write_text("a/file.txt", INSIDE)
                succeeded += 1
            except SandboxDenied as denial:
                refusals.add(denial.reason)
    finally:
        stop.set()
        flipper.join(5)
    assert flips[0] > 0
    assert succeeded > 0
    assert refusals <= {Reason.SYMLINK, Reason.CHANGED}
    assert (outside / "file.txt").read_text() == SECRET
    assert sorted(os.listdir(outside)) == ["file.txt"]
