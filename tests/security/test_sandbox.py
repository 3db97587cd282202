"""The file sandbox (security/sandbox.py) on a real file system: what it allows, and the attack corpus.

No database here: the core is pure, as the reference worker uses it. Every refusal is checked
three ways: the error names the path and the reason, the hook saw it, and nothing outside
the root was read or changed.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import socket
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from security.sandbox import (
    DENIED_ERROR_CODE,
    MAX_FILE_BYTES,
    Entry,
    FileTooLarge,
    Operation,
    Reason,
    Root,
    Sandbox,
    SandboxDenied,
    denial_from_result,
)

pytestmark = pytest.mark.timeout(30)

SECRET = "SECRET outside the root\n"


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    directory = tmp_path / "outside"
    directory.mkdir()
    (directory / "secret.txt").write_text(SECRET)
    return directory


@pytest.fixture
def root(tmp_path: Path) -> Path:
    directory = tmp_path / "workspace"
    directory.mkdir()
    return directory


@pytest.fixture
def denials() -> list[SandboxDenied]:
    return []


@pytest.fixture
def sandbox(root: Path, denials: list[SandboxDenied]) -> Sandbox:
    return Sandbox([str(root)], on_denied=denials.append)


@pytest.fixture
def agent_dir() -> Iterator[Path]:
    """A real /tmp/agent-* directory, as the default pattern root matches them."""
    path = Path(tempfile.mkdtemp(prefix="agent-", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def digest(path: Path | str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def refused(action: Callable[[], object], reason: Reason) -> SandboxDenied:
    with pytest.raises(SandboxDenied) as caught:
        action()
    assert caught.value.reason == reason, caught.value.message
    return caught.value


# --- what it allows ---------------------------------------------------------------------------


def test_a_write_makes_its_parents_and_reads_back_with_mode_0644_and_no_temporary_file(sandbox, root):
    sandbox.write_text("src/app/views.py", "x = 1\n")

    assert sandbox.read_text("src/app/views.py") == "x = 1\n"
    written = root / "src" / "app" / "views.py"
    assert stat.S_IMODE(written.stat().st_mode) & ~0o644 == 0
    assert stat.S_IMODE((root / "src").stat().st_mode) & ~0o755 == 0
    assert sorted(os.listdir(root / "src" / "app")) == ["views.py"]


def test_a_write_replaces_the_file_atomically_as_a_new_inode(sandbox, root):
    sandbox.write_text("notes.txt", "first\n")
    with (root / "notes.txt").open() as old_reader:
        sandbox.write_text("notes.txt", "second\n")
        # A reader that had the old file open still sees it whole: the name was swapped, not the bytes.
        assert old_reader.read() == "first\n"
    assert sandbox.read_text("notes.txt") == "second\n"


def test_an_absolute_path_inside_the_root_is_the_same_as_a_relative_one(sandbox, root):
    sandbox.write_bytes(str(root / "a.bin"), b"\x00\x01")

    assert sandbox.read_bytes("a.bin") == b"\x00\x01"
    assert sandbox.read_bytes(f"{root}/./a.bin") == b"\x00\x01"


def test_open_gives_a_reader_and_list_dir_names_each_entry_with_its_kind_unfollowed(sandbox, root, outside):
    sandbox.write_text("dir/file.txt", "hello")
    os.symlink(outside, root / "dir" / "link")

    with sandbox.open("dir/file.txt") as file:
        assert file.read() == b"hello"
    assert sandbox.list_dir("dir") == [Entry("file.txt", "file"), Entry("link", "symlink")]
    assert sandbox.list_dir() == [Entry("dir", "directory")]


def test_delete_unlinks_a_file_and_a_missing_one_is_an_error_unless_missing_ok(sandbox, root):
    sandbox.write_text("gone.txt", "x")

    assert sandbox.delete("gone.txt") is True
    assert not (root / "gone.txt").exists()
    with pytest.raises(FileNotFoundError):
        sandbox.delete("gone.txt")
    assert sandbox.delete("gone.txt", missing_ok=True) is False
    assert sandbox.delete("no/such/dir/file.txt", missing_ok=True) is False


def test_a_missing_file_is_not_found_rather_than_refused(sandbox, denials):
    with pytest.raises(FileNotFoundError):
        sandbox.read_text("nothing-here.txt")
    assert denials == []


def test_a_read_past_its_limit_is_too_large_and_not_a_refusal(sandbox, denials):
    sandbox.write_bytes("big.bin", b"x" * 100)

    with pytest.raises(FileTooLarge):
        sandbox.read_bytes("big.bin", max_bytes=99)
    assert sandbox.read_bytes("big.bin", max_bytes=100) == b"x" * 100
    assert denials == []


# --- the attack corpus --------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["../outside/secret.txt", "a/../../outside/secret.txt", "..", "./../x"])
def test_a_parent_reference_is_refused_wherever_it_is(sandbox, denials, path):
    denial = refused(lambda: sandbox.read_text(path), Reason.PARENT)

    assert denial.path == path
    assert denial.operation == Operation.READ
    assert denials == [denial]
    assert path in denial.message
    assert "'..'" in denial.message


def test_an_absolute_path_outside_the_roots_is_refused_and_etc_passwd_is_untouched(sandbox, denials):
    before = digest("/etc/passwd")

    denial = refused(lambda: sandbox.write_text("/etc/passwd", "root::0:0::/:/bin/sh\n"), Reason.OUTSIDE)

    assert digest("/etc/passwd") == before
    assert denial.to_dict() == {"path": "/etc/passwd", "operation": "write", "reason": "outside_roots", "root": None}
    assert "/etc/passwd" in denial.message
    assert "outside every allowed root" in denial.message
    assert denials == [denial]


def test_an_absolute_path_that_only_shares_the_roots_prefix_is_outside(sandbox, root, tmp_path):
    sibling = tmp_path / (root.name + "-evil")
    sibling.mkdir()
    (sibling / "x").write_text("x")

    refused(lambda: sandbox.read_text(f"{sibling}/x"), Reason.OUTSIDE)


@pytest.mark.parametrize("operation", ["read", "write"])
def test_dev_null_by_its_absolute_path_is_outside(sandbox, operation):
    action = (
        (lambda: sandbox.read_bytes("/dev/null"))
        if operation == "read"
        else lambda: sandbox.write_bytes("/dev/null", b"x")
    )
    refused(action, Reason.OUTSIDE)


@pytest.mark.parametrize("path", ["a\x00b", "\x00", "src/\x00/x.py"])
def test_a_nul_byte_is_refused_and_spelled_out_in_the_record(sandbox, path):
    denial = refused(lambda: sandbox.write_text(path, "x"), Reason.NUL_BYTE)

    assert "\x00" not in denial.to_dict()["path"]
    assert "\\x00" in denial.to_dict()["path"]


def test_an_empty_path_is_refused(sandbox):
    refused(lambda: sandbox.read_text(""), Reason.EMPTY)


def test_a_symlink_out_is_refused_for_every_operation_and_nothing_outside_changes(sandbox, root, outside):
    os.symlink(outside, root / "link")

    refused(lambda: sandbox.read_text("link/secret.txt"), Reason.SYMLINK)
    refused(lambda: sandbox.write_text("link/new.txt", "x"), Reason.SYMLINK)
    refused(lambda: sandbox.write_text("link/deeper/new.txt", "x"), Reason.SYMLINK)
    refused(lambda: sandbox.delete("link/secret.txt"), Reason.SYMLINK)
    refused(lambda: sandbox.list_dir("link"), Reason.SYMLINK)
    assert sorted(os.listdir(outside)) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == SECRET


def test_a_symlink_as_the_last_component_is_refused_and_never_written_through(sandbox, root):
    os.symlink("/etc/passwd", root / "passwd")
    before = digest("/etc/passwd")

    refused(lambda: sandbox.read_text("passwd"), Reason.SYMLINK)
    refused(lambda: sandbox.write_text("passwd", "x"), Reason.SYMLINK)
    refused(lambda: sandbox.delete("passwd"), Reason.SYMLINK)
    assert digest("/etc/passwd") == before
    assert (root / "passwd").is_symlink()


def test_a_symlink_that_stays_inside_is_refused_too(sandbox, root):
    (root / "real").mkdir()
    (root / "real" / "file.txt").write_text("inside")
    os.symlink(root / "real", root / "alias")
    os.symlink("file.txt", root / "real" / "alias.txt")

    refused(lambda: sandbox.read_text("alias/file.txt"), Reason.SYMLINK)
    refused(lambda: sandbox.read_text("real/alias.txt"), Reason.SYMLINK)
    assert sandbox.read_text("real/file.txt") == "inside"


def test_a_symlink_to_a_device_is_refused(sandbox, root):
    os.symlink("/dev/null", root / "null")

    refused(lambda: sandbox.read_bytes("null"), Reason.SYMLINK)
    refused(lambda: sandbox.write_bytes("null", b"x"), Reason.SYMLINK)


def test_a_fifo_is_refused_at_once_without_hanging(sandbox, root):
    os.mkfifo(root / "pipe")

    denial = refused(lambda: sandbox.read_text("pipe"), Reason.SPECIAL)
    refused(lambda: sandbox.write_text("pipe", "x"), Reason.SPECIAL)
    refused(lambda: sandbox.delete("pipe"), Reason.SPECIAL)
    assert "FIFO" in denial.message
    assert stat.S_ISFIFO(os.lstat(root / "pipe").st_mode)


def test_a_socket_is_refused(sandbox, root):
    with socket.socket(socket.AF_UNIX) as listener:
        listener.bind(str(root / "sock"))
        refused(lambda: sandbox.read_bytes("sock"), Reason.SPECIAL)
        refused(lambda: sandbox.write_bytes("sock", b"x"), Reason.SPECIAL)


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_node_inside_the_root_is_refused_without_being_opened(sandbox, root):
    os.mknod(root / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))

    denial = refused(lambda: sandbox.read_bytes("null"), Reason.SPECIAL)
    refused(lambda: sandbox.write_bytes("null", b"x"), Reason.SPECIAL)
    assert "device" in denial.message


def test_a_directory_where_a_file_is_expected_is_refused(sandbox, root):
    (root / "dir").mkdir()

    refused(lambda: sandbox.read_text("dir"), Reason.IS_DIRECTORY)
    refused(lambda: sandbox.write_text("dir", "x"), Reason.IS_DIRECTORY)
    refused(lambda: sandbox.delete("dir"), Reason.IS_DIRECTORY)
    refused(lambda: sandbox.read_text("."), Reason.IS_DIRECTORY)
    refused(lambda: sandbox.write_text(str(root), "x"), Reason.IS_DIRECTORY)
    assert (root / "dir").is_dir()


def test_a_file_where_a_directory_is_expected_is_refused(sandbox, root):
    (root / "file.txt").write_text("x")

    refused(lambda: sandbox.read_text("file.txt/inner"), Reason.NOT_DIRECTORY)
    refused(lambda: sandbox.write_text("file.txt/inner", "x"), Reason.NOT_DIRECTORY)
    refused(lambda: sandbox.list_dir("file.txt"), Reason.NOT_DIRECTORY)


def test_a_hardlinked_file_is_not_read_and_a_write_breaks_the_link_instead_of_writing_through(sandbox, root, outside):
    os.link(outside / "secret.txt", root / "innocent.txt")

    denial = refused(lambda: sandbox.read_text("innocent.txt"), Reason.HARDLINK)
    assert "2 hard links" in denial.message

    sandbox.write_text("innocent.txt", "overwritten\n")
    assert (outside / "secret.txt").read_text() == SECRET
    assert sandbox.read_text("innocent.txt") == "overwritten\n"
    assert sandbox.delete("innocent.txt") is True
    assert (outside / "secret.txt").read_text() == SECRET


def test_a_write_over_the_size_cap_is_refused_before_anything_is_written(root, denials):
    small = Sandbox([str(root)], max_file_bytes=10, on_denied=denials.append)

    denial = refused(lambda: small.write_bytes("new/big.bin", b"x" * 11), Reason.TOO_LARGE)

    assert "11 bytes" in denial.message
    assert os.listdir(root) == []
    small.write_bytes("ok.bin", b"x" * 10)
    assert Sandbox([str(root)]).max_file_bytes == MAX_FILE_BYTES


def test_a_root_swapped_for_a_symlink_after_configuration_is_refused(tmp_path, outside):
    root = tmp_path / "ws"
    root.mkdir()
    sandbox = Sandbox([str(root)])
    root.rmdir()
    os.symlink(outside, root)

    refused(lambda: sandbox.read_text("secret.txt"), Reason.UNSAFE_ROOT)
    refused(lambda: sandbox.write_text("new.txt", "x"), Reason.UNSAFE_ROOT)
    assert sorted(os.listdir(outside)) == ["secret.txt"]


def test_a_missing_home_root_is_made_for_a_write_and_not_found_for_a_read(tmp_path):
    sandbox = Sandbox([str(tmp_path / "later" / "ws")])

    with pytest.raises(FileNotFoundError):
        sandbox.read_text("x.txt")
    sandbox.write_text("x.txt", "made")
    assert (tmp_path / "later" / "ws" / "x.txt").read_text() == "made"
    assert stat.S_IMODE((tmp_path / "later" / "ws").stat().st_mode) & ~0o700 == 0


# --- the audit hook -------------------------------------------------------------------------------


def test_a_hook_that_fails_does_not_swallow_the_refusal(root, caplog):
    def broken(denial: SandboxDenied) -> None:
        raise RuntimeError("database down")

    sandbox = Sandbox([str(root)], on_denied=broken)
    with caplog.at_level(logging.ERROR, logger="agency.sandbox"):
        refused(lambda: sandbox.write_text("/etc/passwd", "x"), Reason.OUTSIDE)
    assert "recording a sandbox denial failed" in caplog.text


def test_the_refusal_is_a_domain_error_with_its_code_and_facts(sandbox):
    denial = refused(lambda: sandbox.read_text("../x"), Reason.PARENT)

    assert denial.http_status == 403
    assert denial.as_dict() == {
        "detail": denial.message,
        "code": DENIED_ERROR_CODE,
        "path": "../x",
        "operation": "read",
        "reason": "parent_reference",
        "root": None,
    }


def test_a_workers_failed_result_yields_its_refusal_and_other_results_none():
    reported = {"path": "src/\\x00", "operation": "write", "reason": "nul_byte", "root": "/w/t"}
    failed = {"status": "failed", "error_code": DENIED_ERROR_CODE, "output": {"sandbox": reported}}

    assert denial_from_result(failed) == reported
    assert denial_from_result({**failed, "error_code": "task_failed"}) is None
    assert denial_from_result({**failed, "status": "completed"}) is None
    assert denial_from_result({**failed, "output": "junk"}) == {"path": "", "operation": "", "reason": "", "root": ""}
    assert denial_from_result(None) is None
    long = denial_from_result({**failed, "output": {"sandbox": {"path": "p" * 5000, "reason": "\x00" * 500}}})
    assert len(long["path"]) == 1000
    assert len(long["reason"]) == 200
    assert "\x00" not in long["reason"]


# --- roots: configuration, patterns, tasks ---------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("relative/dir", "not an absolute path"),
        ("", "non-empty"),
        ("/srv/\x00", "NUL"),
        ("/tmp/agent-*/deeper", "only the last component"),  # noqa: S108
        ("/", "every file"),
        ("/etc/..", "every file"),
    ],
)
def test_a_bad_root_is_a_clear_configuration_error(value, message):
    with pytest.raises(ValueError, match=message):
        Root.parse(value)


def test_the_first_root_must_be_a_directory_since_it_takes_relative_paths():
    with pytest.raises(ValueError, match="must be a directory"):
        Sandbox(["/tmp/agent-*"])  # noqa: S108
    with pytest.raises(ValueError, match="at least one root"):
        Sandbox([])


def test_a_pattern_root_allows_a_matching_directory_of_this_users(root, agent_dir):
    sandbox = Sandbox([str(root), "/tmp/agent-*"])  # noqa: S108

    sandbox.write_text(f"{agent_dir}/out/report.txt", "done")
    assert sandbox.read_text(f"{agent_dir}/out/report.txt") == "done"
    assert (agent_dir / "out" / "report.txt").read_text() == "done"
    # Relative paths are the workspace's, never a pattern root's.
    with pytest.raises(FileNotFoundError):
        sandbox.read_text(f"{agent_dir.name}/out/report.txt")


def test_a_pattern_root_refuses_names_that_do_not_match_or_do_not_exist(root, tmp_path):
    sandbox = Sandbox([str(root), "/tmp/agent-*"])  # noqa: S108
    other = Path(tempfile.mkdtemp(prefix="other-", dir="/tmp"))
    try:
        refused(lambda: sandbox.write_text(f"{other}/x.txt", "x"), Reason.OUTSIDE)
        refused(lambda: sandbox.read_text("/tmp/agent-x"), Reason.IS_DIRECTORY)  # noqa: S108
        with pytest.raises(FileNotFoundError):
            sandbox.write_text("/tmp/agent-does-not-exist-9f3a/x.txt", "x")  # noqa: S108
        assert os.listdir(other) == []
    finally:
        shutil.rmtree(other)


def test_a_pattern_match_that_is_a_symlink_is_refused(root, outside):
    link = Path(tempfile.mktemp(prefix="agent-", dir="/tmp"))  # noqa: S306 - the name of a symlink we make
    os.symlink(outside, link)
    try:
        sandbox = Sandbox([str(root), "/tmp/agent-*"])  # noqa: S108
        denial = refused(lambda: sandbox.read_text(f"{link}/secret.txt"), Reason.UNSAFE_ROOT)
        refused(lambda: sandbox.write_text(f"{link}/new.txt", "x"), Reason.UNSAFE_ROOT)
        assert "symlink" in denial.message
        assert sorted(os.listdir(outside)) == ["secret.txt"]
    finally:
        link.unlink()


def test_a_pattern_match_writable_by_others_or_owned_by_someone_else_is_refused(root, agent_dir):
    sandbox = Sandbox([str(root), "/tmp/agent-*"])  # noqa: S108
    (agent_dir / "x.txt").write_text("x")

    agent_dir.chmod(0o777)
    refused(lambda: sandbox.read_text(f"{agent_dir}/x.txt"), Reason.UNSAFE_ROOT)
    agent_dir.chmod(0o770)
    refused(lambda: sandbox.read_text(f"{agent_dir}/x.txt"), Reason.UNSAFE_ROOT)
    agent_dir.chmod(0o700)
    assert sandbox.read_text(f"{agent_dir}/x.txt") == "x"
    if os.geteuid() == 0:
        os.chown(agent_dir, 65534, -1)
        refused(lambda: sandbox.read_text(f"{agent_dir}/x.txt"), Reason.UNSAFE_ROOT)


@pytest.mark.parametrize("task_id", ["", ".", "..", "a/b", "../t", "t\x00"])
def test_a_task_id_that_is_not_a_plain_name_gets_no_directory(sandbox, root, task_id):
    with pytest.raises(SandboxDenied) as caught:
        sandbox.for_task(task_id)
    assert caught.value.reason in (Reason.TASK_ID, Reason.NUL_BYTE)
    assert os.listdir(root) == []


def test_a_tasks_sandbox_is_its_own_directory_only(sandbox, root):
    one, two = sandbox.for_task("task-1"), sandbox.for_task("task-2")
    one.write_text("src/a.py", "a = 1\n")
    two.write_text("src/a.py", "a = 2\n")

    assert (root / "task-1" / "src" / "a.py").read_text() == "a = 1\n"
    assert one.read_text(str(root / "task-1" / "src" / "a.py")) == "a = 1\n"
    refused(lambda: one.read_text(str(root / "task-2" / "src" / "a.py")), Reason.OUTSIDE)
    refused(lambda: one.read_text("/etc/passwd"), Reason.OUTSIDE)


def test_a_tasks_directory_swapped_for_a_symlink_is_refused(sandbox, root, outside):
    os.symlink(outside, root / "task-1")
    task = sandbox.for_task("task-1")

    refused(lambda: task.read_text("secret.txt"), Reason.UNSAFE_ROOT)
    refused(lambda: task.write_text("new.txt", "x"), Reason.UNSAFE_ROOT)
    assert sorted(os.listdir(outside)) == ["secret.txt"]
