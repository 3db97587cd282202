"""The file sandbox: file operations only inside allowlisted roots, resolved without races.

A path is judged in two steps. First without touching the disk: no NUL byte, no ``..``
component, and an absolute path must lie inside one of the roots (matched against the roots'
real paths; the request itself is never resolved, since resolving follows symlinks). Then on
the disk, by walking the path one component at a time from a descriptor of its root: each
directory is opened with ``O_DIRECTORY|O_NOFOLLOW`` relative to the descriptor of the one
before (``dir_fd``), and the last component is opened, created, replaced or unlinked relative
to its parent's descriptor. No full path is looked up again after a check, so there is no
window in which a directory swapped for a symlink could redirect the operation: a swap after
a step changes a name, not the descriptor already held.

Refused, each with :class:`SandboxDenied` (the path, the operation, the :class:`Reason`):

- ``..`` anywhere, a NUL byte, an empty path, an absolute path outside every root;
- every symlink component, pointing out *or in*: telling a harmless link from an escaping
  one means resolving it, which is the race this module exists to avoid, and nothing here
  needs a symlink;
- special files (FIFO, socket, device): the last component is looked at with ``lstat``
  before it is opened, so a device is never even opened, and opened with ``O_NONBLOCK`` so
  that a FIFO swapped in after that look cannot hang the open; ``fstat`` of what was opened
  has the last word;
- a directory where a file is expected, and a file where a directory is;
- reading a file with more than one hard link: its other name may be anywhere on the same
  file system, and nothing in a path tells. Writes need no such rule: a write is a new file
  renamed over the name, so a hard link's other name keeps its old content;
- a write larger than ``max_file_bytes``;
- a pattern root (``/tmp/agent-*``) whose match is a symlink, is not this user's, or is
  writable by group or others: anyone can create names in ``/tmp``.

Writes create missing parent directories inside the root (``mkdir`` with ``dir_fd``) and are
atomic: a temporary file in the same directory, ``fsync``, then ``os.replace`` with
``src_dir_fd``/``dst_dir_fd``. A rename replaces a directory entry and never follows a symlink
at its target. Files are created ``0o644`` and directories ``0o755``, less what the umask takes.

No Django here: the reference worker uses this in a process without settings or database.
A refusal calls ``on_denied`` before it is raised; the control plane's hook writes the
``sandbox.denied`` audit record (security/sandbox_audit.py), and the reference worker answers
a failed result carrying the refusal (:meth:`SandboxDenied.to_dict`), which the control plane
audits when it applies the result (:func:`denial_from_result`).
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from typing import IO, NoReturn

from security.sandbox_policy import (
    DENIED_ERROR_CODE,
    REASON_TEXT,
    FileTooLarge,
    Operation,
    Reason,
    Root,
    SandboxAction,
    SandboxDenied,
    denial_from_result,
    printable,
)

__all__ = [
    "DENIED_ERROR_CODE",
    "MAX_FILE_BYTES",
    "REASON_TEXT",
    "Entry",
    "FileTooLarge",
    "Operation",
    "Reason",
    "Root",
    "Sandbox",
    "SandboxAction",
    "SandboxDenied",
    "denial_from_result",
    "printable",
]

logger = logging.getLogger("agency.sandbox")

MAX_FILE_BYTES = 10 * 1024 * 1024
FILE_MODE = 0o644
DIR_MODE = 0o755

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
_CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
# What open() says when O_NOFOLLOW meets a symlink (ELOOP; EMLINK on FreeBSD), or O_DIRECTORY
# meets a non-directory (ENOTDIR, also for a symlink with O_DIRECTORY on Linux).
_LINK_OR_TYPE_ERRNOS = frozenset({errno.ELOOP, errno.EMLINK, errno.ENOTDIR})


@dataclass(frozen=True)
class Entry:
    """One name in a listed directory; ``kind`` is file, directory, symlink or other (never followed)."""

    name: str
    kind: str


@dataclass(frozen=True)
class _Request:
    path: str
    operation: Operation
    root: Root | None = None
    root_dir: str | None = None


class Sandbox:
    """File operations confined to ``roots``. Relative paths are taken from the first root.

    ``on_denied`` is called with every refusal before it is raised (the audit hook). It is
    not allowed to swallow the refusal: if it fails, the failure is logged and the refusal
    is raised all the same.
    """

    def __init__(
        self,
        roots: Sequence[str | Root],
        *,
        max_file_bytes: int = MAX_FILE_BYTES,
        on_denied: Callable[[SandboxDenied], None] | None = None,
    ) -> None:
        self.roots = tuple(r if isinstance(r, Root) else Root.parse(r) for r in roots)
        if not self.roots:
            raise ValueError("a sandbox needs at least one root")
        if self.roots[0].pattern is not None:
            raise ValueError(f"the first root takes relative paths, so it must be a directory: {self.roots[0]}")
        if max_file_bytes < 1:
            raise ValueError("max_file_bytes must be positive")
        self.home = self.roots[0]
        self.max_file_bytes = max_file_bytes
        self.on_denied = on_denied

    def for_task(self, task_id: str) -> Sandbox:
        """The sandbox of one task's files: ``<home>/<task_id>/`` as its only root.

        The task's directory is opened with ``O_NOFOLLOW`` like any root, so a symlink put
        in its place is refused rather than followed.
        """
        request = _Request(f"{task_id}/", Operation.OPEN, self.home, self.home.path)
        if not isinstance(task_id, str) or "\x00" in task_id:
            self._deny(request, Reason.NUL_BYTE if isinstance(task_id, str) else Reason.TASK_ID)
        if not task_id or "/" in task_id or task_id in (".", ".."):
            self._deny(request, Reason.TASK_ID)
        root = Root(os.path.join(self.home.path, task_id))
        return Sandbox([root], max_file_bytes=self.max_file_bytes, on_denied=self.on_denied)

    # --- operations --------------------------------------------------------------------------

    def check(self, path: str, operation: Operation) -> None:
        """The refusals that need no disk (NUL, ``..``, outside the roots): a cheap early look.

        It guarantees nothing about a later operation, which checks again on the way.
        """
        self._locate(path, Operation(operation))

    def open(self, path: str) -> IO[bytes]:
        """A regular file inside the sandbox, open for reading (the caller closes it)."""
        fd = self._open_regular(path, Operation.OPEN)
        return os.fdopen(fd, "rb")

    def read_bytes(self, path: str, *, max_bytes: int | None = None) -> bytes:
        """The whole file; :class:`FileTooLarge` past ``max_bytes`` (default the sandbox's cap)."""
        limit = max_bytes or self.max_file_bytes
        fd = self._open_regular(path, Operation.READ)
        with os.fdopen(fd, "rb") as file:
            if os.fstat(file.fileno()).st_size > limit:
                raise FileTooLarge(errno.EFBIG, f"larger than {limit} bytes", printable(path))
            data = file.read(limit + 1)  # it may have grown since the fstat
        if len(data) > limit:
            raise FileTooLarge(errno.EFBIG, f"larger than {limit} bytes", printable(path))
        return data

    def read_text(self, path: str, *, max_bytes: int | None = None, encoding: str = "utf-8") -> str:
        return self.read_bytes(path, max_bytes=max_bytes).decode(encoding)

    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace (or create) the file with ``data``, atomically, creating parent directories."""
        request, parts = self._locate(path, Operation.WRITE)
        if len(data) > self.max_file_bytes:
            self._deny(request, Reason.TOO_LARGE, f"{len(data)} bytes, the cap is {self.max_file_bytes}")
        if not parts:
            self._deny(request, Reason.IS_DIRECTORY)
        parent = self._walk(request, self._open_root(request, create=True), parts[:-1], create=True)
        try:
            name = parts[-1]
            existing = _lstat(parent, name)
            if existing is not None:
                self._require_regular(request, existing)
            # Hidden and short whatever the name's length; unique, so concurrent writers never share one.
            temporary = f".sandbox-{secrets.token_hex(8)}.tmp"
            fd = os.open(temporary, _CREATE_FLAGS, FILE_MODE, dir_fd=parent)
            try:
                with os.fdopen(fd, "wb") as file:
                    file.write(data)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, name, src_dir_fd=parent, dst_dir_fd=parent)
            except BaseException:
                with suppress(FileNotFoundError):
                    os.unlink(temporary, dir_fd=parent)
                raise
        finally:
            os.close(parent)

    def write_text(self, path: str, text: str, *, encoding: str = "utf-8") -> None:
        self.write_bytes(path, text.encode(encoding))

    def delete(self, path: str, *, missing_ok: bool = False) -> bool:
        """Unlink a regular file; False when it was not there and ``missing_ok``.

        A name swapped for a symlink between the look and the unlink loses the symlink, never
        its target: unlink does not follow.
        """
        request, parts = self._locate(path, Operation.DELETE)
        if not parts:
            self._deny(request, Reason.IS_DIRECTORY)
        try:
            parent = self._walk(request, self._open_root(request, create=False), parts[:-1], create=False)
        except FileNotFoundError:
            if missing_ok:
                return False
            raise
        try:
            existing = _lstat(parent, parts[-1])
            if existing is None:
                if missing_ok:
                    return False
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), printable(path))
            self._require_regular(request, existing)
            os.unlink(parts[-1], dir_fd=parent)
            return True
        finally:
            os.close(parent)

    def list_dir(self, path: str = ".") -> list[Entry]:
        """The names in a directory, sorted, each with its kind as ``lstat`` sees it."""
        request, parts = self._locate(path, Operation.LIST)
        fd = self._walk(request, self._open_root(request, create=False), parts, create=False)
        try:
            with os.scandir(fd) as entries:
                return sorted((Entry(e.name, _kind(e)) for e in entries), key=lambda e: e.name)
        finally:
            os.close(fd)

    # --- resolution --------------------------------------------------------------------------

    def _locate(self, path: str, operation: Operation) -> tuple[_Request, list[str]]:
        if not isinstance(path, str):
            raise TypeError(f"a sandbox path is a str, not {type(path).__name__}")
        request = _Request(path, operation)
        if "\x00" in path:
            self._deny(request, Reason.NUL_BYTE)
        if not path:
            self._deny(request, Reason.EMPTY)
        raw = path.split("/")
        if ".." in raw:
            self._deny(request, Reason.PARENT)
        parts = [p for p in raw if p not in ("", ".")]
        if not path.startswith("/"):
            return _Request(path, operation, self.home, self.home.path), parts
        for root in self.roots:
            matched = root.match(parts)
            if matched is not None:
                return _Request(path, operation, root, matched[0]), matched[1]
        self._deny(request, Reason.OUTSIDE, f"outside every allowed root ({', '.join(str(r) for r in self.roots)})")

    def _open_root(self, request: _Request, *, create: bool) -> int:
        """A descriptor of the request's root directory.

        A configured root is trusted up to its parent; its own last component is opened with
        ``O_NOFOLLOW`` from the parent's descriptor, so a root (or a task's directory) swapped
        for a symlink is refused, and a missing one is made for a write. A pattern's match
        must exist and be a directory of this user's, writable by no one else: anyone can
        create names in ``/tmp``.
        """
        root, root_dir = request.root, request.root_dir
        if root is None or root_dir is None:
            raise RuntimeError("only a located request has a root to open")
        head, name = os.path.split(root_dir)
        create = create and root.pattern is None
        if create:
            os.makedirs(head, mode=0o700, exist_ok=True)
        parent = os.open(head, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = self._open_dir(request, parent, name, create=create, root=True)
        finally:
            os.close(parent)
        if root.pattern is not None:
            st = os.fstat(fd)
            if st.st_uid != os.geteuid() or st.st_mode & 0o022:
                os.close(fd)
                self._deny(request, Reason.UNSAFE_ROOT, f"{root_dir} is not this user's alone")
        return fd

    def _walk(self, request: _Request, fd: int, names: Sequence[str], *, create: bool) -> int:
        """From the directory ``fd`` (taken over) down ``names``: the descriptor of the last one."""
        try:
            for name in names:
                child = self._open_dir(request, fd, name, create=create)
                os.close(fd)
                fd = child
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _open_dir(self, request: _Request, parent: int, name: str, *, create: bool, root: bool = False) -> int:
        """``name`` under ``parent``, a directory and no symlink; made first when missing and ``create``."""
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                raise
        except OSError as exc:
            self._refuse_link_or_type(request, parent, name, exc, root=root)
        with suppress(FileExistsError):  # made meanwhile by someone else: opened below by the same rules
            os.mkdir(name, 0o700 if root else DIR_MODE, dir_fd=parent)
        try:
            return os.open(name, _DIR_FLAGS, dir_fd=parent)
        except OSError as exc:
            self._refuse_link_or_type(request, parent, name, exc, root=root)

    def _refuse_link_or_type(self, request: _Request, parent: int, name: str, exc: OSError, *, root: bool) -> NoReturn:
        """Turn a failed directory open into its refusal when a symlink or a non-directory caused it."""
        if exc.errno in _LINK_OR_TYPE_ERRNOS:
            st = _lstat(parent, name)
            if st is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), printable(request.path)) from exc
            if stat.S_ISLNK(st.st_mode):
                reason, what = Reason.SYMLINK, "is a symlink (symlinks are never followed)"
            elif not stat.S_ISDIR(st.st_mode):
                reason, what = Reason.NOT_DIRECTORY, "is not a directory"
            else:
                # Not a directory when opened, one now: swapped back and forth under us.
                reason, what = Reason.CHANGED, "changed while the path was being resolved"
            if root:
                self._deny(request, Reason.UNSAFE_ROOT, f"the root {request.root_dir} {what}")
            self._deny(request, reason, f"{name!r} {what}")
        raise exc

    def _open_regular(self, path: str, operation: Operation) -> int:
        """A read-only descriptor of a regular file with one link, or a refusal."""
        request, parts = self._locate(path, operation)
        if not parts:
            self._deny(request, Reason.IS_DIRECTORY)
        parent = self._walk(request, self._open_root(request, create=False), parts[:-1], create=False)
        try:
            name = parts[-1]
            # Looked at first so that a device or FIFO is refused without being opened at all.
            seen = _lstat(parent, name)
            if seen is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), printable(path))
            self._require_regular(request, seen)
            try:
                fd = os.open(name, _READ_FLAGS, dir_fd=parent)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.EMLINK):
                    self._deny(request, Reason.SYMLINK, f"{name!r} is a symlink (symlinks are never followed)")
                if exc.errno == errno.ENXIO:  # a socket swapped in after the look
                    self._deny(request, Reason.SPECIAL)
                raise
        finally:
            os.close(parent)
        try:
            opened = os.fstat(fd)  # what was actually opened has the last word
            self._require_regular(request, opened)
            if opened.st_nlink > 1:
                self._deny(request, Reason.HARDLINK, f"{opened.st_nlink} hard links")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _require_regular(self, request: _Request, st: os.stat_result) -> None:
        if stat.S_ISREG(st.st_mode):
            return
        if stat.S_ISLNK(st.st_mode):
            self._deny(request, Reason.SYMLINK)
        if stat.S_ISDIR(st.st_mode):
            self._deny(request, Reason.IS_DIRECTORY)
        self._deny(request, Reason.SPECIAL, f"not a regular file ({_type_name(st.st_mode)})")

    def _deny(self, request: _Request, reason: Reason, detail: str = "") -> NoReturn:
        denial = SandboxDenied(
            request.path,
            request.operation,
            reason,
            root=request.root_dir or (str(request.root) if request.root else None),
            detail=detail,
        )
        if self.on_denied is not None:
            try:
                self.on_denied(denial)
            except Exception:
                # The refusal stands whatever became of its record; the log says the record is missing.
                logger.exception("recording a sandbox denial failed: %s", denial.message)
        raise denial


def _lstat(parent: int, name: str) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _kind(entry: os.DirEntry[str]) -> str:
    if entry.is_symlink():
        return "symlink"
    if entry.is_dir(follow_symlinks=False):
        return "directory"
    if entry.is_file(follow_symlinks=False):
        return "file"
    return "other"


def _type_name(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "an unknown kind"
