"""Where the CLI finds its server and token: flags, then the environment, then the config file.

The file (``$AGENCY_CONFIG``, else ``$XDG_CONFIG_HOME/agency/config.json``, else
``~/.config/agency/config.json``) is written by ``agency login`` and holds a token per
server URL plus the default URL::

    {"url": "http://127.0.0.1:8000", "tokens": {"http://127.0.0.1:8000": "agy_..."}}

A token is used only for the URL it was stored with, so ``--url`` pointing elsewhere never
sends it to another server. The file is created with mode 0600 from the start (written to
a new 0600 file beside it, then renamed over it): there is no moment at which another user
could read it, which a ``chmod`` after writing would leave.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from agency.errors import UsageProblem

DEFAULT_URL = "http://127.0.0.1:8000"  # what `make run` serves
ENV_URL = "AGENCY_URL"
ENV_TOKEN = "AGENCY_TOKEN"  # noqa: S105 - the variable's name, not a secret
ENV_CONFIG = "AGENCY_CONFIG"


@dataclass(frozen=True)
class Settings:
    url: str
    token: str | None
    token_source: str  # "AGENCY_TOKEN", the config file's path, or "" when there is none


def config_path() -> Path:
    explicit = os.environ.get(ENV_CONFIG)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "agency" / "config.json"


def normalize_url(raw: str) -> str:
    """``http(s)://host[:port][/prefix]`` without a trailing slash; a usage error otherwise."""
    url = raw.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageProblem(f"not a server URL: {raw!r} (expected http://host:port or https://host)")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise UsageProblem(f"the server URL must not carry credentials, a query or a fragment: {raw!r}")
    return url


def load() -> dict[str, Any]:
    """The config file's contents; ``{}`` when there is none. A broken file is a usage error."""
    path = config_path()
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise UsageProblem(f"cannot read the config file {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise UsageProblem(f"the config file {path} is not valid JSON ({exc}); fix it or run `agency logout`") from exc
    if not isinstance(data, dict) or not isinstance(data.get("tokens", {}), dict):
        raise UsageProblem(f"the config file {path} is not an agency config; fix it or run `agency logout`")
    return data


def resolve(url_option: str | None) -> Settings:
    """The server and token to use: ``--url``, else AGENCY_URL, else the file's, else the default."""
    data = load()
    url = normalize_url(url_option or os.environ.get(ENV_URL) or data.get("url") or DEFAULT_URL)
    env_token = os.environ.get(ENV_TOKEN)
    if env_token:
        return Settings(url, env_token.strip(), ENV_TOKEN)
    stored = data.get("tokens", {}).get(url)
    if isinstance(stored, str) and stored:
        return Settings(url, stored, str(config_path()))
    return Settings(url, None, "")


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a new file created 0600, renamed over the old one."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        temporary.unlink()  # a leftover of a crashed run; O_EXCL below refuses to reuse it
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


def store_token(url: str, token: str) -> Path:
    """Keep ``token`` for ``url`` and make ``url`` the default server; returns the file's path."""
    data = load()
    tokens = dict(data.get("tokens", {}))
    tokens[url] = token
    data.update({"url": url, "tokens": tokens})
    path = config_path()
    _write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def forget_token(url: str | None) -> tuple[Path, bool]:
    """Drop the token of ``url`` (every token and the file itself when None); (path, whether any was stored)."""
    path = config_path()
    data = load()
    tokens = dict(data.get("tokens", {}))
    if url is None or set(tokens) <= {url}:
        existed = path.exists()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return path, existed and (url is None or url in tokens)
    had = tokens.pop(url, None) is not None
    data["tokens"] = tokens
    if data.get("url") == url:
        data["url"] = sorted(tokens)[0]
    _write_private(path, json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path, had
