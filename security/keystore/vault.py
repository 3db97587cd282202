"""``openbao://`` / ``vault://``: KV version 2 on OpenBao or HashiCorp Vault, through hvac.

The URL names the server, the KV mount and a path prefix:
``openbao+http://127.0.0.1:8200/secret/agency`` (``+http`` for a development server,
``+https`` or no suffix for TLS). Credentials never go in the URL: the token comes from
``VAULT_TOKEN``, or AppRole from ``VAULT_ROLE_ID`` and ``VAULT_SECRET_ID`` (or a file named by
``VAULT_SECRET_ID_FILE``). ``VAULT_CACERT`` names a CA bundle for a private TLS chain.

Tokens expire. Before each read the provider renews a renewable token once less than a
third of its lifetime is left; a token that cannot be renewed, or a 403 from an expired
one, makes an AppRole login again. A plain ``VAULT_TOKEN`` that expires cannot be replaced
from here: the error says so.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import hvac
import requests
from hvac import exceptions as hvac_errors

from security.keystore import MASTER_KEYS, KeystoreError, Provider, SecretNotFound

TIMEOUT_S = 5.0
RENEW_WHEN_LEFT = 1 / 3


class VaultProvider(Provider):
    def __init__(self, *, server: str, mount: str, prefix: str, scheme: str) -> None:
        self.server = server
        self.mount = mount
        self.prefix = prefix
        self.scheme = scheme
        self.location = f"{scheme}://{urlsplit(server).netloc}/{mount}/{prefix}"
        self._lock = threading.Lock()
        self._client: hvac.Client | None = None
        self._expires_at: float | None = None  # monotonic; None: no expiry known (root token)
        self._ttl = 0.0
        self._renewable = False

    @classmethod
    def from_url(cls, url: str, *, embedded: bool = True) -> VaultProvider:
        parts = urlsplit(url)
        base, _, transport = parts.scheme.lower().partition("+")
        if transport not in {"", "http", "https"}:
            raise KeystoreError(f"KEYSTORE_URL: {parts.scheme}:// — use {base}+http:// or {base}+https://")
        if parts.username or parts.password or parts.query:
            raise KeystoreError("KEYSTORE_URL: credentials do not belong in the URL; set VAULT_TOKEN or AppRole")
        segments = [s for s in parts.path.split("/") if s]
        if not parts.hostname or len(segments) < 1:
            raise KeystoreError(f"KEYSTORE_URL: expected {base}://host:port/<kv mount>/<path prefix>")
        mount, prefix = segments[0], "/".join(segments[1:])
        if transport == "http" and not embedded and parts.hostname not in {"127.0.0.1", "::1", "localhost"}:
            # The token would cross the network in the clear.
            raise KeystoreError(f"KEYSTORE_URL: {base}+http:// is for a server on loopback; use {base}+https://")
        server = f"{transport or 'https'}://{parts.netloc}"
        return cls(server=server, mount=mount, prefix=prefix, scheme=base)

    # --- authentication -------------------------------------------------------------------

    def _login(self) -> hvac.Client:
        verify: bool | str = os.environ.get("VAULT_CACERT") or True
        session = requests.Session()
        session.trust_env = False  # no proxy or ~/.netrc from the environment between us and the keystore
        client = hvac.Client(url=self.server, timeout=TIMEOUT_S, verify=verify, session=session)
        role_id = os.environ.get("VAULT_ROLE_ID", "")
        try:
            if role_id:
                answer = client.auth.approle.login(role_id=role_id, secret_id=_secret_id())
                auth = answer["auth"]
                self._note_lease(auth["lease_duration"], auth["renewable"])
            else:
                token = os.environ.get("VAULT_TOKEN", "")
                if not token:
                    raise KeystoreError(f"{self.location}: set VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID")
                client.token = token
                data = client.auth.token.lookup_self()["data"]
                self._note_lease(data.get("ttl") or 0, bool(data.get("renewable")))
        except (hvac_errors.VaultError, requests.RequestException) as exc:
            raise KeystoreError(f"{self.location}: login failed: {_describe(exc)}") from exc
        return client

    def _note_lease(self, ttl: float, renewable: bool, *, full: bool = True) -> None:
        if full:
            self._ttl = float(ttl)  # the lifetime a login gives; renewal starts at a third of it
        self._renewable = renewable
        self._expires_at = time.monotonic() + float(ttl) if ttl and float(ttl) > 0 else None

    def _fresh_client(self) -> hvac.Client:
        if self._client is None:
            self._client = self._login()
        elif self._expires_at is not None and self._expires_at - time.monotonic() < self._ttl * RENEW_WHEN_LEFT:
            self._client = self._renew(self._client)
        return self._client

    def _renew(self, client: hvac.Client) -> hvac.Client:
        approle = bool(os.environ.get("VAULT_ROLE_ID"))
        if self._renewable:
            try:
                auth = client.auth.token.renew_self()["auth"]
            except (hvac_errors.VaultError, requests.RequestException):
                auth = None
            if auth is not None:
                self._note_lease(auth["lease_duration"], auth["renewable"], full=False)
                # A token near its max TTL renews for less than asked: log in again instead.
                if not approle or auth["lease_duration"] >= self._ttl * RENEW_WHEN_LEFT:
                    return client
        return self._login() if approle else client

    # --- KV v2 ----------------------------------------------------------------------------

    def _path(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def _call(self, fn: Any) -> Any:
        with self._lock:
            client = self._fresh_client()
            try:
                return fn(client)
            except hvac_errors.Forbidden:
                if not os.environ.get("VAULT_ROLE_ID"):
                    raise
                # An AppRole token revoked or expired early: one new login, one more try.
                self._client = self._login()
                return fn(self._client)

    def read(self, name: str) -> str:
        field = "keys" if name == MASTER_KEYS else "value"

        def fetch(client: hvac.Client) -> str:
            answer = client.secrets.kv.v2.read_secret_version(
                path=self._path(name), mount_point=self.mount, raise_on_deleted_version=True
            )
            data = answer["data"]["data"]
            if field not in data:
                raise KeystoreError(f"{self.location}/{name} has no field {field!r}")
            value = data[field]
            return ",".join(value) if isinstance(value, list) else str(value)

        try:
            return self._call(fetch)
        except hvac_errors.InvalidPath as exc:
            raise SecretNotFound(name, self.location) from exc
        except (hvac_errors.VaultError, requests.RequestException) as exc:
            raise KeystoreError(f"{self.location}/{name}: {_describe(exc)}") from exc

    def write(self, name: str, value: str) -> None:
        field = "keys" if name == MASTER_KEYS else "value"
        try:
            self._call(
                lambda client: client.secrets.kv.v2.create_or_update_secret(
                    path=self._path(name), secret={field: value.strip()}, mount_point=self.mount
                )
            )
        except (hvac_errors.VaultError, requests.RequestException) as exc:
            raise KeystoreError(f"{self.location}/{name}: write failed: {_describe(exc)}") from exc

    def status(self) -> dict[str, object]:
        left = None if self._expires_at is None else round(self._expires_at - time.monotonic())
        return {"token_ttl_s": left}


def _secret_id() -> str:
    path = os.environ.get("VAULT_SECRET_ID_FILE", "")
    if path:
        with open(path, encoding="utf-8") as handle:
            return handle.read().strip()
    secret_id = os.environ.get("VAULT_SECRET_ID", "")
    if not secret_id:
        raise KeystoreError("VAULT_ROLE_ID is set but neither VAULT_SECRET_ID nor VAULT_SECRET_ID_FILE is")
    return secret_id


def _describe(exc: Exception) -> str:
    """The error without what hvac may echo of a request (never a token: hvac does not put it in messages)."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}"[:200]
