"""The IP ranges the egress policy refuses, and in which one an address falls.

:func:`refusal` classifies one address as the resolver returned it: cloud metadata and
unspecified addresses first (never allowed, also when an IPv6 form embeds them), then
what the deployment explicitly allows, then the IPv6 forms that carry an IPv4 address
(mapped, compatible, NAT64, 6to4, Teredo), then loopback, link-local, unique local,
private and every other special-purpose range. It knows nothing of settings: the caller
(:mod:`security.egress`) says which addresses are explicitly allowed and whether loopback is.

This module imports no app.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from django.db import models

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class Reason(models.TextChoices):
    """Why the policy refused a destination: the ``reason`` of a refusal's record."""

    HOST_NOT_ALLOWED = "host_not_allowed"
    METADATA = "metadata"
    NUMERIC_HOST = "numeric_host"
    UNSPECIFIED = "unspecified"
    LOOPBACK = "loopback"
    LINK_LOCAL = "link_local"
    PRIVATE = "private"
    UNIQUE_LOCAL = "unique_local"
    IPV4_MAPPED = "ipv4_mapped"
    IPV4_COMPATIBLE = "ipv4_compatible"
    TRANSLATED = "translated"
    SPECIAL_PURPOSE = "special_purpose"


# Cloud metadata services: AWS, GCP, Azure, OCI and DigitalOcean at 169.254.169.254, AWS ECS task
# metadata at 169.254.170.2 and IMDS over IPv6 at fd00:ec2::254, GCP over IPv6 at fd20:ce::254,
# OpenStack over IPv6 at fe80::a9fe:a9fe, Alibaba at 100.100.100.200, Azure's WireServer at
# 168.63.129.16 (a public-looking address), Oracle Cloud Classic at 192.0.0.192.
# Never called, whatever EGRESS_ALLOWED_NETWORKS says: a worker is never one of these, and listing
# a private or link-local range for real workers must not open them.
METADATA_ADDRESSES = frozenset(
    ipaddress.ip_address(a)
    for a in (
        "169.254.169.254",
        "169.254.170.2",
        "fd00:ec2::254",
        "fd20:ce::254",
        "fe80::a9fe:a9fe",
        "100.100.100.200",
        "168.63.129.16",
        "192.0.0.192",
    )
)

_UNSPECIFIED_V4 = ipaddress.ip_network("0.0.0.0/8")  # "this network": 0.x connects to this host on Linux
_PRIVATE_V4 = tuple(ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10"))
_UNIQUE_LOCAL = ipaddress.ip_network("fc00::/7")
# Deprecated site-local IPv6 (RFC 3879): private in practice, yet Python 3.11 calls it global.
_SITE_LOCAL = ipaddress.ip_network("fec0::/10")
_IPV4_COMPATIBLE = ipaddress.ip_network("::/96")  # ::a.b.c.d, deprecated by RFC 4291
_NAT64 = tuple(ipaddress.ip_network(n) for n in ("64:ff9b::/96", "64:ff9b:1::/48"))

# What each refused range is, and the words that say what would allow it.
_WHAT = {
    Reason.METADATA: "a cloud metadata address",
    Reason.UNSPECIFIED: "an unspecified address (it reaches this machine)",
    Reason.LOOPBACK: "a loopback address",
    Reason.LINK_LOCAL: "a link-local address",
    Reason.PRIVATE: "a private address",
    Reason.UNIQUE_LOCAL: "an IPv6 unique local address",
    Reason.IPV4_MAPPED: "an IPv4-mapped IPv6 address",
    Reason.IPV4_COMPATIBLE: "an IPv4-compatible IPv6 address",
    Reason.TRANSLATED: "a NAT64, 6to4 or Teredo address",
    Reason.SPECIAL_PURPOSE: "a special-purpose address (multicast, documentation, reserved...)",
}
NEVER = "which is never called"
UNLESS_LISTED = "refused unless EGRESS_ALLOWED_NETWORKS lists it"
UNLESS_EMBEDDED = "allowed only in the embedded mode (DEBUG on) or when EGRESS_ALLOWED_NETWORKS lists it"


def describe(reason: Reason, detail: str = "") -> tuple[Reason, str]:
    """(reason, its description): what the range is, ``detail``, and what would allow it."""
    if reason in (Reason.METADATA, Reason.UNSPECIFIED):
        rule = NEVER
    elif reason == Reason.LOOPBACK:
        rule = UNLESS_EMBEDDED
    else:
        rule = UNLESS_LISTED
    return reason, f"{_WHAT[reason]}{detail}, {rule}"


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, compatible, NAT64, 6to4, Teredo client), if any."""
    if not isinstance(address, ipaddress.IPv6Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _IPV4_COMPATIBLE and int(address) > 1:  # not :: nor ::1
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    return None


def _unscoped(address: IPAddress) -> IPAddress:
    # fe80::1%eth0: the zone does not change which range the address is in.
    if isinstance(address, ipaddress.IPv6Address) and address.scope_id:
        return ipaddress.IPv6Address(str(address).split("%", 1)[0])
    return address


def refusal(address: IPAddress, *, allowed: Callable[[IPAddress], bool], loopback: bool) -> tuple[Reason, str] | None:
    """Why ``address`` may not be called, as (reason, description), or None if it may.

    ``allowed`` says whether an address is in a network the deployment explicitly allows;
    ``loopback`` whether loopback is allowed without being listed (the embedded mode).
    """
    address = _unscoped(address)
    inner = _embedded_ipv4(address)
    names = f" (it names {inner})" if inner is not None else ""
    for candidate in (address, inner):
        if candidate is None:
            continue
        if candidate in METADATA_ADDRESSES:
            return describe(Reason.METADATA, names if candidate is inner else "")
        if candidate.is_unspecified or (candidate.version == 4 and candidate in _UNSPECIFIED_V4):
            return describe(Reason.UNSPECIFIED, names if candidate is inner else "")
    if allowed(address):
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return describe(Reason.IPV4_MAPPED, names)
    if isinstance(address, ipaddress.IPv6Address) and address in _IPV4_COMPATIBLE and inner is not None:
        return describe(Reason.IPV4_COMPATIBLE, names)
    if inner is not None and not allowed(inner):
        # Through a NAT64 gateway or a 6to4/Teredo relay the embedded address is reached on the
        # far side, so it is held to the rules, and the embedded mode's loopback does not extend to it.
        refused = _range_refusal(inner, loopback=False)
        if refused is not None:
            return describe(Reason.TRANSLATED, f" embedding {inner}, {_WHAT[refused]}")
    refused = _range_refusal(address, loopback=loopback)
    return describe(refused) if refused is not None else None


def _range_refusal(address: IPAddress, *, loopback: bool) -> Reason | None:
    if address.is_loopback:
        return None if loopback else Reason.LOOPBACK
    if address.is_link_local:
        return Reason.LINK_LOCAL
    if address.version == 6 and (address in _UNIQUE_LOCAL or address in _SITE_LOCAL):
        return Reason.UNIQUE_LOCAL
    if address.version == 4 and any(address in net for net in _PRIVATE_V4):
        return Reason.PRIVATE
    if address.is_multicast or address.is_reserved or not address.is_global:
        return Reason.SPECIAL_PURPOSE
    return None
