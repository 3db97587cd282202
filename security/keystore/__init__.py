"""The keystore: where the master keys and named secrets come from, behind one interface.

``KEYSTORE_URL`` chooses the provider:

- ``env://`` — the master keys from ``AGENCY_MASTER_KEYS`` (Fernet keys, comma separated,
  the primary first); a named secret ``x.y`` from ``AGENCY_SECRET_X_Y``. Read-only: a key
  rotation is a restart with the new key put first (docs/security.md).
- ``file:///abs/dir`` — one file per secret in a directory, the master keys in ``master-keys``
  (one key a line, the primary first). A file is refused unless it is a regular file owned by
  this process's user with no permission bits for group or others (0600 or stricter), and the
  directory must not be writable by group or others.
- ``openbao://host:port/mount/prefix`` (or ``vault://``; ``+https`` for TLS, e.g.
  ``openbao+https://bao.internal:8200/secret/agency``) — KV version 2 through hvac, the master
  keys at ``<prefix>/master-keys`` (field ``keys``), a named secret at ``<prefix>/<name>``
  (field ``value``). Token auth (``VAULT_TOKEN``) or AppRole (``VAULT_ROLE_ID`` and
  ``VAULT_SECRET_ID``), with the token renewed before it expires and AppRole logging in again.

With ``KEYSTORE_URL`` unset the embedded default (DEBUG on) uses ``file://DATA_DIR/keystore``
and creates its development master key there once; anywhere else an unset URL or a missing
master key is a startup error (:func:`check_startup`). There is no random fallback key.

Every read that reaches a provider goes through :func:`master_keys` or :func:`secret`, which
register the values with the log redaction filter and audit the read (never the value).
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from cryptography.fernet import Fernet

logger = logging.getLogger("agency.keystore")

MASTER_KEYS = "master-keys"


class KeystoreError(Exception):
    """The keystore cannot answer: misconfigured, unreachable, refused, or the secret is malformed."""


class SecretNotFound(KeystoreError):
    def __init__(self, name: str, where: str) -> None:
        super().__init__(f"secret {name!r} is not in the keystore ({where})")
        self.name = name


class KeystoreReadOnly(KeystoreError):
    pass


class Provider(ABC):
    """One keystore backend. ``location`` describes it without credentials (for logs, health, audit)."""

    scheme: str = ""
    location: str = ""

    @abstractmethod
    def read(self, name: str) -> str:
        """The secret's value; :class:`SecretNotFound` or :class:`KeystoreError` otherwise."""

    def write(self, name: str, value: str) -> None:
        raise KeystoreReadOnly(f"the {self.scheme} keystore is read-only: change {name!r} where it is kept")

    def status(self) -> dict[str, object]:
        """Provider details for the health check, after a read (a Vault token's time left)."""
        return {}


@dataclass(frozen=True)
class Read:
    """One read, as audited: which secret, from where, why (never the value)."""

    name: str
    scheme: str
    location: str
    reason: str
    actor: str


# Set by the security app once Django is ready (security.keystore.hooks); None before.
_on_read: Callable[[Read], None] | None = None
_register_secret: Callable[[str], None] | None = None

_lock = threading.Lock()
_provider: Provider | None = None


def provider_from_url(url: str, *, data_dir: str, embedded: bool) -> Provider:
    """The provider ``url`` names (``url`` empty: the embedded default, else an error)."""
    from security.keystore import envs, files, vault

    if not url:
        if not embedded:
            raise KeystoreError(
                "KEYSTORE_URL must be set when DEBUG is off (env://, file:///dir or openbao://host:port/mount/prefix)."
            )
        return files.FileProvider(f"{data_dir}/keystore", create_dev_key=True)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "env":
        return envs.EnvProvider()
    if scheme == "file":
        if parts.netloc or not parts.path.startswith("/"):
            raise KeystoreError("KEYSTORE_URL file:// needs an absolute directory, e.g. file:///run/secrets/agency.")
        return files.FileProvider(parts.path, create_dev_key=False)
    if scheme.split("+")[0] in {"vault", "openbao"}:
        return vault.VaultProvider.from_url(url, embedded=embedded)
    raise KeystoreError(f"KEYSTORE_URL: unknown scheme {scheme}:// (use env://, file:// or openbao://).")


def provider() -> Provider:
    global _provider
    with _lock:
        if _provider is None:
            from django.conf import settings

            _provider = provider_from_url(
                settings.KEYSTORE_URL, data_dir=str(settings.DATA_DIR), embedded=settings.EMBEDDED
            )
        return _provider


def reset() -> None:
    """Forget the configured provider (tests that change ``KEYSTORE_URL``)."""
    global _provider
    with _lock:
        _provider = None


def _record(name: str, values: list[str], *, reason: str, actor: str) -> None:
    source = provider()
    if _register_secret is not None:
        for value in values:
            _register_secret(value)
    if _on_read is not None:
        _on_read(Read(name=name, scheme=source.scheme, location=source.location, reason=reason, actor=actor))


def master_keys(*, reason: str, actor: str = "system") -> list[str]:
    """The master keys, primary first, each a valid Fernet key; audited as a read of ``master-keys``."""
    keys = _parse_keys(provider())
    _record(MASTER_KEYS, keys, reason=reason, actor=actor)
    return keys


def _parse_keys(source: Provider) -> list[str]:
    raw = source.read(MASTER_KEYS)
    keys = [k.strip() for k in raw.replace("\n", ",").split(",") if k.strip()]
    if not keys:
        raise KeystoreError(f"no master key in {source.location}")
    for index, key in enumerate(keys):
        try:
            Fernet(key.encode())
        except ValueError as exc:
            raise KeystoreError(
                f"master key #{index + 1} in {source.location} is not a Fernet key (32 url-safe base64 bytes)"
            ) from exc
    return keys


def write_master_keys(keys: list[str], *, actor: str) -> None:
    """Replace the master keys (rotation); refused by read-only providers."""
    for key in keys:
        Fernet(key.encode())  # a malformed key never reaches the store
    provider().write(MASTER_KEYS, "\n".join(keys) + "\n")
    if _register_secret is not None:
        for key in keys:
            _register_secret(key)


def secret(name: str, *, reason: str, actor: str = "system") -> str:
    """A named secret's value; the read is audited and the value masked in every log from now on."""
    if not name or name == MASTER_KEYS or name[0] in ".-" or not all(c.isalnum() or c in "._-" for c in name):
        raise KeystoreError(f"invalid secret name {name!r} (letters, digits, '.', '_', '-')")
    value = provider().read(name)
    _record(name, [value], reason=reason, actor=actor)
    return value


def probe() -> tuple[dict[str, object], list[str]]:
    """A real read of the master keys for ``/api/health`` (a probe, not audited; values never returned)."""
    source = provider()
    keys = _parse_keys(source)
    return {"provider": source.scheme, "location": source.location, "master_keys": len(keys), **source.status()}, keys


def check_startup() -> None:
    """Fail fast, with a clear message, when this process has no usable master key.

    Called when the security app is ready. In the embedded default this creates the
    development key on first start; elsewhere it only reads. Not audited here: the
    database may not exist yet (``migrate`` on a new installation); the first use of the
    keys in each process is (security.crypto).
    """
    keys = _parse_keys(provider())
    if _register_secret is not None:
        for key in keys:
            _register_secret(key)
