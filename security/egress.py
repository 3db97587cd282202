"""Outbound-URL (egress) policy: which URLs this installation may call, and at which addresses.

Two checks, one policy:

- :func:`check_worker_url` is the check every door applies to a worker's base URL when it
  is registered or changed (the worker services validate through it, so the admin, the API
  and the management commands refuse the same URLs with the same words): its syntax, its
  host against the allowlist, and the addresses the host resolves to *now*.
- :func:`connect_targets` is the check the worker transport applies to every new TCP
  connection (execute, cancel, health polls, chat, the worker proxy): the host again, then
  the resolver's answer, every address of it. The transport connects only to an address
  this function returned, so nothing can change between the check and the connect; and
  because it runs at every connection, a DNS answer that changes after registration
  (rebinding) is caught too.

The policy (``settings``, documented in ``.env.example`` and docs/security.md):

- ``EGRESS_ALLOWED_HOSTS``: the hosts a URL may name. ``*`` is any host; ``*.example.com``
  is any name under example.com (not example.com itself); anything else is one exact name
  or IP address. Default: ``*`` in the embedded mode, nothing in production.
- ``EGRESS_ALLOWED_NETWORKS``: CIDRs explicitly allowed, e.g. a deployment's private worker
  subnet. An address in one passes the address rules below, and an IP-literal URL inside one
  passes the host allowlist.
- Addresses (classified by :mod:`security.ip_ranges`): cloud metadata addresses and
  unspecified addresses (``0.0.0.0/8``, ``::``, which reach this very machine) are never
  called. Loopback is allowed in the embedded mode (``settings.EMBEDDED``) or when listed.
  Link-local, private (RFC 1918, shared ``100.64.0.0/10``), IPv6 unique local (``fc00::/7``),
  IPv4-mapped and IPv4-compatible IPv6, NAT64/6to4/Teredo forms embedding a refused IPv4
  address, and every other special-purpose range (multicast, documentation, reserved) are
  refused unless listed.
- Host names of metadata services are never called, and a numeric host not written as a
  canonical address (``2130706433``, ``0177.0.0.1``, ``0x7f000001``, ``127.1``) is refused
  by name: the C resolver reads these as addresses, but no legitimate URL spells one so.

Name resolution goes through :data:`resolver`, the hook tests replace to make a name resolve
to what they need. This module imports no app.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

from security.ip_ranges import IPAddress, IPNetwork, Reason
from security.ip_ranges import refusal as range_refusal

ALLOWED_SCHEMES = frozenset({"http", "https"})
MAX_URL_LENGTH = 500

# Codes of the refusals, so that a door can phrase one in its own terms (the CLI names
# its --token-env option where the API names its token field).
MALFORMED = "url_malformed"
SCHEME = "url_scheme"
HOST = "url_host"
CREDENTIALS = "url_credentials"
DENIED = "url_egress_denied"

# What the API schema promises is accepted (a subset of what check_worker_url accepts in the
# embedded mode, for names that do not resolve to a refused address: it also takes IP
# literals, IDNs and longer names), so that generated clients and contract tests can produce a
# URL the server will not refuse: http(s), up to three RFC 1123 labels of which the first starts
# with a letter (so that the host is never a numeric form such as 2130706433 or 0x7f000001), a
# port in 1-65535, a path without spaces, control characters, query or fragment.
_SCHEMA_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SCHEMA_FIRST_LABEL = r"[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_SCHEMA_PORT = r"(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
WORKER_URL_SCHEMA_PATTERN = (
    rf"^https?://{_SCHEMA_FIRST_LABEL}(\.{_SCHEMA_LABEL}){{0,2}}(:{_SCHEMA_PORT})?(/[^\s?#\x00-\x1f\x7f]*)?$"
)

# An LDH label (RFC 1123); single-label names such as ``worker`` in a compose network are valid hosts.
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


class EgressAction(models.TextChoices):
    """The audit action of a refused outbound call (the task timeline's event is ``egress_denied``)."""

    DENIED = "egress.denied"


# Host names of cloud metadata services: refused by name, whatever the allowlist and the resolver say.
METADATA_HOSTS = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.com",
        "instance-data",
        "instance-data.ec2.internal",
    }
)


class URLRefused(ValueError):
    """The URL may not be used; ``code`` says why (one of the constants above)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class EgressDenied(URLRefused):
    """The egress policy refuses this destination: ``host`` as the URL names it, the ``address``
    it resolved to (None when the name itself is refused), and the :class:`Reason`."""

    def __init__(self, message: str, *, host: str, address: str | None, reason: Reason) -> None:
        super().__init__(message, code=DENIED)
        self.host = host
        self.address = address
        self.reason = reason

    def record(self) -> dict[str, Any]:
        """What the task timeline and the audit record keep of the refusal (no credentials: a host and an address)."""
        return {"host": self.host, "address": self.address, "reason": self.reason.value, "message": self.message}


# --- the policy ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    """The settings' policy, parsed: the host allowlist, the explicitly allowed networks, and loopback."""

    any_host: bool
    names: frozenset[str]
    suffixes: tuple[str, ...]  # ".example.com" for "*.example.com"
    addresses: frozenset[IPAddress]
    networks: tuple[IPNetwork, ...]
    loopback: bool

    def in_networks(self, address: IPAddress) -> bool:
        return any(address.version == net.version and address in net for net in self.networks)

    def address_refusal(self, address: IPAddress) -> tuple[Reason, str] | None:
        """Why ``address`` may not be called under this policy (see :func:`security.ip_ranges.refusal`)."""
        return range_refusal(address, allowed=self.in_networks, loopback=self.loopback)


def current_policy() -> Policy:
    """The policy of the current settings (parsed once per distinct value: tests override them)."""
    return _parse_policy(
        tuple(getattr(settings, "EGRESS_ALLOWED_HOSTS", ())),
        tuple(getattr(settings, "EGRESS_ALLOWED_NETWORKS", ())),
        bool(getattr(settings, "EMBEDDED", settings.DEBUG)),
    )


@lru_cache(maxsize=16)
def _parse_policy(hosts: tuple[str, ...], networks: tuple[str, ...], embedded: bool) -> Policy:
    any_host, names, suffixes, addresses = False, set(), [], set()
    for entry in hosts:
        value = entry.strip()
        if not value:
            continue
        if value == "*":
            any_host = True
        elif value.startswith("*."):
            suffix = _name_key(value[2:])
            if suffix is None:
                raise ImproperlyConfigured(f"EGRESS_ALLOWED_HOSTS: {entry!r} is not *.<a host name>.")
            suffixes.append("." + suffix)
        elif (address := _literal(value)) is not None:
            addresses.add(address)
        elif (name := _name_key(value)) is not None:
            names.add(name)
        else:
            raise ImproperlyConfigured(
                f"EGRESS_ALLOWED_HOSTS: {entry!r} is not *, *.<name>, a host name or an address."
            )
    parsed = []
    for entry in networks:
        if not entry.strip():
            continue
        try:
            parsed.append(ipaddress.ip_network(entry.strip()))
        except ValueError as exc:
            raise ImproperlyConfigured(f"EGRESS_ALLOWED_NETWORKS: {entry!r} is not a network ({exc}).") from exc
    return Policy(
        any_host=any_host,
        names=frozenset(names),
        suffixes=tuple(suffixes),
        addresses=frozenset(addresses),
        networks=tuple(parsed),
        loopback=embedded,
    )


def _name_key(host: str) -> str | None:
    """A host name as compared: lower case, IDNA (punycode), no trailing dot; None if not a valid name."""
    host = host.strip().lower().removesuffix(".")
    if not host:
        return None
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return None
    labels = ascii_host.split(".")
    if len(ascii_host) > 253 or not all(_LABEL.match(label) for label in labels):
        return None
    return ascii_host


def _literal(host: str) -> IPAddress | None:
    """``host`` as an address if it is one written canonically (IPv6 with or without brackets)."""
    try:
        return ipaddress.ip_address(host.strip().strip("[]"))
    except ValueError:
        return None


def _numeric(host: str) -> bool:
    """Whether the C resolver reads ``host`` as an address (it takes 2130706433, 0177.0.0.1, 0x7f.1, 127.1)."""
    try:
        socket.getaddrinfo(host, None, socket.AF_UNSPEC, socket.SOCK_STREAM, 0, socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError, ValueError):
        return False
    return True


# --- hosts and connections -------------------------------------------------------------------------


def _host_refusal(host: str, policy: Policy) -> EgressDenied | None:
    """The refusal of ``host`` by name (allowlist, metadata names, numeric forms), before any resolution."""
    literal = _literal(host)
    if literal is not None:
        if policy.any_host or literal in policy.addresses or policy.in_networks(literal):
            return None
        return EgressDenied(
            f"The address {literal} is not in EGRESS_ALLOWED_HOSTS nor in EGRESS_ALLOWED_NETWORKS.",
            host=host,
            address=str(literal),
            reason=Reason.HOST_NOT_ALLOWED,
        )
    name = _name_key(host)
    if name is not None and name in METADATA_HOSTS:
        return EgressDenied(
            f"{host!r} is a cloud metadata service, which is never called.",
            host=host,
            address=None,
            reason=Reason.METADATA,
        )
    if _numeric(host):
        return EgressDenied(
            f"{host!r} is a numeric address not written as a.b.c.d (or an IPv6 address in brackets); "
            "write the address itself.",
            host=host,
            address=None,
            reason=Reason.NUMERIC_HOST,
        )
    if name is not None and (policy.any_host or name in policy.names or name.endswith(policy.suffixes)):
        return None
    listed = "is empty: no host may be called until it names them" if _allows_nothing(policy) else "does not list it"
    return EgressDenied(
        f"The host {host!r} is not allowed: EGRESS_ALLOWED_HOSTS {listed}.",
        host=host,
        address=None,
        reason=Reason.HOST_NOT_ALLOWED,
    )


def check_host(host: str) -> None:
    """Refuse ``host`` by name, and an address written as the host, without resolving anything.

    For a door that must refuse before it does anything else (the worker proxy decrypts the
    worker's token only for a host that passed); the connection is checked again in full.
    """
    policy = current_policy()
    host = host.strip("[]")
    refusal = _host_refusal(host, policy)
    if refusal is not None:
        raise refusal
    literal = _literal(host)
    if literal is not None and (refused := policy.address_refusal(literal)) is not None:
        raise EgressDenied(f"{literal} is {refused[1]}.", host=host, address=str(literal), reason=refused[0])


def _allows_nothing(policy: Policy) -> bool:
    return not (policy.any_host or policy.names or policy.suffixes or policy.addresses or policy.networks)


@dataclass(frozen=True)
class Target:
    """One address a connection may be opened to: as ``socket.connect`` takes it, and as checked."""

    family: socket.AddressFamily
    sockaddr: tuple[Any, ...]
    address: IPAddress


Resolver = Callable[[str, int], Iterable[tuple[socket.AddressFamily, tuple[Any, ...]]]]


def system_resolver(host: str, port: int) -> list[tuple[socket.AddressFamily, tuple[Any, ...]]]:
    """The system's answer for ``host``: (family, sockaddr) pairs; raises ``socket.gaierror``."""
    return [(family, sockaddr) for family, _, _, _, sockaddr in socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)]


# The hook through which every name is resolved (tests replace it: monkeypatch.setattr(egress, "resolver", ...)).
# Addresses written as such never go through it.
resolver: Resolver = system_resolver


def connect_targets(host: str, port: int, *, policy: Policy | None = None) -> list[Target]:
    """The addresses a connection to ``host:port`` may go to, in the resolver's order.

    Raises :class:`EgressDenied` when the host is refused by name, or when *any* address of the
    answer is refused: an answer that mixes a public address with an internal one is a rebinding
    attempt, not a choice to make. A name that does not resolve raises ``socket.gaierror``, as
    ``getaddrinfo`` would.
    """
    policy = policy or current_policy()
    host = host.strip("[]")
    refusal = _host_refusal(host, policy)
    if refusal is not None:
        raise refusal
    if _literal(host) is not None:
        answers: Iterable[tuple[socket.AddressFamily, tuple[Any, ...]]] = system_resolver(host, port)
    else:
        answers = resolver(host, port)
    targets: list[Target] = []
    for family, sockaddr in answers:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        refused = policy.address_refusal(address)
        if refused is not None:
            reason, description = refused
            said = f"{address} is" if _literal(host) is not None else f"{host!r} resolves to {address},"
            raise EgressDenied(f"{said} {description}.", host=host, address=str(address), reason=reason)
        target = Target(family=family, sockaddr=tuple(sockaddr), address=address)
        if target not in targets:
            targets.append(target)
    if not targets:
        raise socket.gaierror(socket.EAI_NONAME, f"{host} has no address")
    return targets


def check_destination(host: str, port: int) -> None:
    """Refuse ``host:port`` if its name, or the addresses it resolves to now, are refused.

    For registration: a name that does not resolve now is accepted (the worker may not be
    deployed yet); every connection is checked again when it is made.
    """
    try:
        connect_targets(host, port)
    except (OSError, UnicodeError):  # socket.gaierror is an OSError
        return


def check_worker_url(url: str) -> str:
    """``url`` (stripped) if it may be registered as a worker's base URL, else :class:`URLRefused`.

    Refused: anything but http and https (the dispatcher speaks HTTP only: an ``ftp://``
    row used to be accepted and then failed every dispatch cycle), a missing or malformed
    host or port, and credentials of any kind. Userinfo and query strings are where
    credentials hide (``user:pass@``, ``?code=`` of function hosts, ``?token=``); a
    secret there would be stored in plain text and shown wherever the URL is, so the only
    place for one is the worker's token, which is encrypted at rest and sent as a bearer
    header. Fragments are never sent to a server, so one can only be a mistake. Then the
    egress policy (:class:`EgressDenied`): the host by name, and what it resolves to now.
    """
    url = url.strip()
    if not url:
        raise URLRefused("Enter the worker's URL, e.g. https://worker.example.com.", code=MALFORMED)
    if len(url) > MAX_URL_LENGTH:
        raise URLRefused(f"At most {MAX_URL_LENGTH} characters.", code=MALFORMED)
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise URLRefused("A URL cannot contain spaces or control characters.", code=MALFORMED)
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a port that is not a number in 0-65535
    except ValueError as exc:
        raise URLRefused(f"Not a valid URL ({exc}).", code=MALFORMED) from exc
    scheme = parts.scheme.lower()
    if "://" not in url or not scheme:
        raise URLRefused("Enter a full URL with its scheme, e.g. https://worker.example.com.", code=MALFORMED)
    if scheme not in ALLOWED_SCHEMES:
        raise URLRefused(f"Use an http:// or https:// URL; {scheme}:// is not supported.", code=SCHEME)
    if "@" in parts.netloc:
        raise URLRefused("Credentials do not belong in the URL (it has user:password@).", code=CREDENTIALS)
    if parts.query or url.endswith("?"):
        raise URLRefused("Credentials do not belong in the URL (it has a query string).", code=CREDENTIALS)
    if parts.fragment or "#" in url:
        raise URLRefused("Remove the #fragment: it is never sent to the worker.", code=MALFORMED)
    host = parts.hostname or ""
    if not _valid_host(host):
        raise URLRefused("The URL needs a valid host name or IP address.", code=HOST)
    if port == 0:
        raise URLRefused("Port 0 cannot be called.", code=HOST)
    check_destination(host, port or (443 if scheme == "https" else 80))
    return url


def _valid_host(host: str) -> bool:
    return bool(host) and (_literal(host) is not None or _name_key(host) is not None)
