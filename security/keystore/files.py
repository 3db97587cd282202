"""``file:///dir``: one file a secret (Docker secrets under /run/secrets, systemd credentials).

Kubernetes secret volumes are symlinks into a ``..data`` directory, which this provider
refuses like any symlink: there, use ``env://`` (secrets as environment variables) or OpenBao.

A secret file that others could read, or that someone else owns, is refused rather than
used: a key that has been readable by every local user is not a secret any more, and
saying so at startup is better than encrypting with it for a year. Files are opened with
``O_NOFOLLOW`` relative to the directory's descriptor, so a symlink planted in the
directory cannot redirect a read.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat

from cryptography.fernet import Fernet

from security.keystore import MASTER_KEYS, KeystoreError, Provider, SecretNotFound

MAX_SECRET_BYTES = 64 * 1024


class FileProvider(Provider):
    scheme = "file"

    def __init__(self, directory: str, *, create_dev_key: bool) -> None:
        self.directory = os.path.abspath(directory)
        self.location = f"file://{self.directory}"
        self.create_dev_key = create_dev_key

    def _open_dir(self) -> int:
        if self.create_dev_key:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        try:
            fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        except OSError as exc:
            raise KeystoreError(f"keystore directory {self.directory}: {exc.strerror}") from exc
        info = os.fstat(fd)
        if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            os.close(fd)
            raise KeystoreError(f"keystore directory {self.directory} is writable by group or others (chmod go-w)")
        if info.st_uid not in (os.geteuid(), 0):
            os.close(fd)
            raise KeystoreError(f"keystore directory {self.directory} is owned by uid {info.st_uid} (not us or root)")
        return fd

    def read(self, name: str) -> str:
        fd = self._open_dir()
        try:
            if name == MASTER_KEYS and self.create_dev_key:
                self._create_dev_key(fd)
            try:
                file_fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=fd)
            except FileNotFoundError as exc:
                raise SecretNotFound(name, f"no file {name} in {self.directory}") from exc
            except OSError as exc:
                raise KeystoreError(f"secret file {self.directory}/{name}: {exc.strerror}") from exc
            with os.fdopen(file_fd, "rb") as handle:
                info = os.fstat(handle.fileno())
                where = f"{self.directory}/{name}"
                if not stat.S_ISREG(info.st_mode):
                    raise KeystoreError(f"secret file {where} is not a regular file")
                if info.st_uid != os.geteuid():
                    raise KeystoreError(f"secret file {where} is owned by uid {info.st_uid}, not by this process")
                if info.st_mode & 0o077:
                    mode = stat.S_IMODE(info.st_mode)
                    raise KeystoreError(f"secret file {where} has mode {mode:04o}; it must be 0600 or stricter")
                data = handle.read(MAX_SECRET_BYTES + 1)
            if len(data) > MAX_SECRET_BYTES:
                raise KeystoreError(f"secret file {where} is larger than {MAX_SECRET_BYTES} bytes")
            return data.decode("utf-8").strip()
        finally:
            os.close(fd)

    def write(self, name: str, value: str) -> None:
        """Replace a secret atomically: a new 0600 file beside it, then a rename."""
        fd = self._open_dir()
        temp = f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600, dir_fd=fd)
            try:
                os.write(out, value.encode("utf-8"))
                os.fsync(out)
            finally:
                os.close(out)
            os.replace(temp, name, src_dir_fd=fd, dst_dir_fd=fd)
            os.fsync(fd)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temp, dir_fd=fd)
            raise KeystoreError(f"cannot write {self.directory}/{name}: {exc.strerror}") from exc
        finally:
            os.close(fd)

    def _create_dev_key(self, dir_fd: int) -> None:
        """The embedded default's development key, created once.

        Written to a temporary file and then linked into place: ``link`` fails if the key
        exists, so two processes starting together keep the first key, and no reader ever
        sees a half-written file.
        """
        with contextlib.suppress(FileNotFoundError):
            os.stat(MASTER_KEYS, dir_fd=dir_fd, follow_symlinks=False)
            return
        temp = f".{MASTER_KEYS}.{os.getpid()}.{secrets.token_hex(4)}.new"
        out = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=dir_fd)
        try:
            os.write(out, Fernet.generate_key() + b"\n")
            os.fsync(out)
        finally:
            os.close(out)
        try:
            os.link(temp, MASTER_KEYS, src_dir_fd=dir_fd, dst_dir_fd=dir_fd, follow_symlinks=False)
        except FileExistsError:
            pass
        finally:
            os.unlink(temp, dir_fd=dir_fd)
