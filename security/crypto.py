"""Encryption at rest of the secrets stored in the database, under the keystore's master keys.

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) through ``MultiFernet``: the
first master key encrypts, every key decrypts. That is what lets ``manage.py rotate_keys``
re-encrypt the rows under a new key while the system runs (docs/security.md):

1. the new key is put first in the keystore, the old one kept after it;
2. each process picks the new keyring up: every ``KEYSTORE_REFRESH_S`` seconds, and at once
   when a ciphertext does not decrypt under the keys it holds (a row rotated meanwhile);
3. rotation rewrites every row not yet under the primary key (compare-and-swap on the
   ciphertext, so a token changed meanwhile is not overwritten), pass after pass until none is
   left; it can stop and start again at any time;
4. the old key is removed from the keystore once a pass finds nothing under it.

Secret columns declare themselves with :func:`register_secret_field`; rotation walks that
registry, so a new secret column is covered by adding one line where its model is defined.
Plaintext never reaches the database, and ciphertext from an unknown key fails loudly
(:class:`DecryptionError`) instead of decrypting to garbage.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from security import keystore
from security.redaction import register_secret

# After a ciphertext fails under the held keys, at most one keystore read a second.
MISS_RELOAD_INTERVAL_S = 1.0


class DecryptionError(Exception):
    """Stored ciphertext could not be decrypted with any of the master keys."""


@dataclass(frozen=True)
class SecretField:
    """One encrypted column: ``model`` (app_label.ModelName) and the column holding ciphertext."""

    model: str
    column: str


SECRET_FIELDS: list[SecretField] = []


def register_secret_field(model: str, column: str) -> None:
    """Declare ``model.column`` as ciphertext under the master keys (rotation covers it)."""
    field = SecretField(model, column)
    if field not in SECRET_FIELDS:
        SECRET_FIELDS.append(field)


class _Keyring:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: list[str] = []
        self._multi: MultiFernet | None = None
        self._primary: Fernet | None = None
        self._loaded_at = 0.0  # the last read attempt
        self._confirmed_at = 0.0  # the last read that succeeded
        self._missed_at = 0.0
        # Ciphertexts (by digest) that did not open even after a fresh read: a token under a
        # key nobody holds any more is an expected state (restored backup, lost key), and must
        # not cost a keystore read and an audit record at every worker refresh.
        self._hopeless: dict[str, float] = {}

    def _load(self, reason: str) -> None:
        keys = keystore.master_keys(reason=reason)
        self._keys = keys
        self._multi = MultiFernet([Fernet(k.encode()) for k in keys])
        self._primary = Fernet(keys[0].encode())
        self._loaded_at = self._confirmed_at = time.monotonic()

    def current(self) -> tuple[MultiFernet, Fernet]:
        with self._lock:
            if self._multi is None:
                self._load("first use in this process")
            elif time.monotonic() - self._loaded_at > settings.KEYSTORE_REFRESH_S:
                self._refresh("refresh")
            if self._multi is None or self._primary is None:  # _load raised: nothing held
                raise keystore.KeystoreError("no master keys loaded")
            return self._multi, self._primary

    def for_encryption(self) -> MultiFernet:
        """The keys to encrypt under, refused when they could not be re-read for two refresh intervals.

        A process cut off from its keystore keeps decrypting with what it holds; but writing
        under a primary key that rotation may have replaced, and ``rotate_keys --drop-old`` may
        remove, would make that row unreadable for everyone else.
        """
        multi, _ = self.current()
        stale = time.monotonic() - self._confirmed_at
        if stale > 2 * settings.KEYSTORE_REFRESH_S:
            raise keystore.KeystoreError(
                f"the master keys could not be read again for {stale:.0f} s; refusing to encrypt under keys that "
                "may have been rotated (is the keystore reachable?)"
            )
        return multi

    def _refresh(self, reason: str) -> bool:
        """Read the keys again; True when they changed. A keystore that fails keeps the keys held."""
        before = self._keys
        try:
            self._load(reason)
        except keystore.KeystoreError:
            self._loaded_at = time.monotonic()  # retried at the next interval, not at every call
            return False
        if self._keys != before:
            self._hopeless.clear()
            return True
        return False

    def after_miss(self, ciphertext: str) -> bool:
        """``ciphertext`` failed under the held keys: read them again; True if they changed.

        At most one read a second, and none for a ciphertext that already failed after a read
        within the last refresh interval (until the keys change).
        """
        digest = hashlib.sha256(ciphertext.encode()).hexdigest()
        with self._lock:
            now = time.monotonic()
            if now - self._hopeless.get(digest, -1e12) < settings.KEYSTORE_REFRESH_S:
                return False
            if now - self._missed_at < MISS_RELOAD_INTERVAL_S:
                return False
            self._missed_at = now
            changed = self._refresh("a ciphertext under a key this process did not hold")
            if not changed:
                if len(self._hopeless) > 10_000:
                    self._hopeless.clear()
                self._hopeless[digest] = now
            return changed

    @property
    def primary_key(self) -> str:
        return self._keys[0] if self._keys else ""

    def reset(self) -> None:
        with self._lock:
            self._keys, self._multi, self._primary = [], None, None
            self._hopeless.clear()


_keyring = _Keyring()


def reload() -> None:
    """Forget the held keys; the next use reads them from the keystore (tests, rotate_keys)."""
    _keyring.reset()


def encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    multi = _keyring.for_encryption()
    register_secret(plaintext)
    return multi.encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    if not ciphertext:
        return ""
    multi, _ = _keyring.current()
    try:
        plaintext = multi.decrypt(ciphertext.encode()).decode()
    except InvalidToken:
        if not _keyring.after_miss(ciphertext):
            raise DecryptionError("stored secret cannot be decrypted with any master key") from None
        multi, _ = _keyring.current()
        try:
            plaintext = multi.decrypt(ciphertext.encode()).decode()
        except InvalidToken:
            raise DecryptionError("stored secret cannot be decrypted with any master key") from None
    register_secret(plaintext)
    return plaintext


def primary_in(keys: list[str]) -> bool:
    """Whether the key this process encrypts under is one of ``keys`` (the keystore's, for health).

    True while this process holds no key yet: it has encrypted nothing.
    """
    return not _keyring.primary_key or _keyring.primary_key in keys


def under_primary(ciphertext: str) -> bool:
    """Whether ``ciphertext`` is encrypted under the primary key already (rotation skips it)."""
    _, primary = _keyring.current()
    try:
        primary.decrypt(ciphertext.encode())
    except InvalidToken:
        return False
    return True


def rotate(ciphertext: str) -> str:
    """``ciphertext`` re-encrypted under the primary key (:class:`DecryptionError` if no key opens it)."""
    multi, _ = _keyring.current()
    try:
        return multi.rotate(ciphertext.encode()).decode()
    except InvalidToken:
        raise DecryptionError("stored secret cannot be decrypted with any master key") from None


def unreadable(keys: list[str], *, limit: int = 1000) -> list[str]:
    """``model:pk`` of stored secrets that open under none of ``keys`` (the first ``limit`` rows a column).

    For ``/api/health``, with the keys its probe just read: a worker whose token nobody can
    decrypt is left out of routing, and that must show somewhere other than one log line. It
    uses ``keys`` rather than this process's keyring so that a health check never counts as
    a keystore read of its own.
    """
    from django.apps import apps

    multi = MultiFernet([Fernet(k.encode()) for k in keys])
    found = []
    for secret_field in SECRET_FIELDS:
        model = apps.get_model(secret_field.model)
        rows = model.objects.exclude(**{secret_field.column: ""}).values_list("pk", secret_field.column)[:limit]
        for pk, ciphertext in rows:
            try:
                multi.decrypt(ciphertext.encode())
            except InvalidToken:
                found.append(f"{secret_field.model}:{pk}")
    return found
