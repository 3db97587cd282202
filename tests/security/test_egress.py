"""The egress policy itself (security/egress.py): which hosts and addresses a worker URL may name.

Checked here through :func:`check_worker_url` (what registration applies) and
:func:`connect_targets` (what every connection applies). Names are resolved through the
policy's resolver hook, which these tests replace, so nothing here touches the network.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from security import egress
from security.egress import EgressDenied, Reason, URLRefused, check_worker_url, connect_targets

# Every form of a refused address an attacker has tried on URL filters, and what the policy calls it.
# The decimal, octal, hex and short forms are what the C resolver reads as addresses.
SSRF_CORPUS = [
    ("http://169.254.169.254/", Reason.METADATA),
    ("http://169.254.169.254/latest/meta-data/", Reason.METADATA),
    ("http://2852039166/", Reason.NUMERIC_HOST),  # 169.254.169.254 in decimal
    ("http://0251.0376.0251.0376/", Reason.NUMERIC_HOST),  # ... in octal
    ("http://0xa9fea9fe/", Reason.NUMERIC_HOST),  # ... in hex
    ("http://0xa9.0xfe.0xa9.0xfe/", Reason.NUMERIC_HOST),
    ("http://2130706433/", Reason.NUMERIC_HOST),  # 127.0.0.1 in decimal
    ("http://0177.0.0.1/", Reason.NUMERIC_HOST),
    ("http://0x7f000001/", Reason.NUMERIC_HOST),
    ("http://127.1/", Reason.NUMERIC_HOST),
    ("http://0/", Reason.NUMERIC_HOST),
    ("http://[::ffff:169.254.169.254]/", Reason.METADATA),
    ("http://[::ffff:a9fe:a9fe]/", Reason.METADATA),
    ("http://[::ffff:127.0.0.1]/", Reason.IPV4_MAPPED),
    ("http://[::ffff:7f00:1]/", Reason.IPV4_MAPPED),
    ("http://[::ffff:10.0.0.1]/", Reason.IPV4_MAPPED),
    ("http://[::127.0.0.1]/", Reason.IPV4_COMPATIBLE),
    ("http://[64:ff9b::7f00:1]/", Reason.TRANSLATED),  # NAT64 of 127.0.0.1
    ("http://[64:ff9b::a9fe:a9fe]/", Reason.METADATA),  # NAT64 of the metadata address
    ("http://[2002:7f00:1::]/", Reason.TRANSLATED),  # 6to4 of 127.0.0.1
    ("http://[2002:a9fe:a9fe::1]/", Reason.METADATA),  # 6to4 of the metadata address
    ("http://[2002:a00:1::]/", Reason.TRANSLATED),  # 6to4 of 10.0.0.1
    ("http://[fd00:ec2::254]/", Reason.METADATA),  # AWS IMDS over IPv6
    ("http://[fd20:ce::254]/", Reason.METADATA),  # GCP metadata over IPv6
    ("http://[fe80::a9fe:a9fe]/", Reason.METADATA),  # OpenStack metadata over IPv6
    ("http://[fec0::1]/", Reason.UNIQUE_LOCAL),  # deprecated site-local, which Python calls global
    ("http://[fd12:3456::1]/", Reason.UNIQUE_LOCAL),
    ("http://169.254.1.1/", Reason.LINK_LOCAL),
    ("http://169.254.170.2/v2/credentials", Reason.METADATA),  # ECS task credentials
    ("http://[fe80::1]/", Reason.LINK_LOCAL),
    ("http://0.0.0.0:8765/", Reason.UNSPECIFIED),
    ("http://0.1.2.3/", Reason.UNSPECIFIED),
    ("http://[::]/", Reason.UNSPECIFIED),
    ("http://10.0.0.1/", Reason.PRIVATE),
    ("http://172.16.5.4/", Reason.PRIVATE),
    ("http://192.168.1.1/", Reason.PRIVATE),
    ("http://100.100.100.200/", Reason.METADATA),  # Alibaba
    ("http://168.63.129.16/", Reason.METADATA),  # Azure WireServer
    ("http://224.0.0.1/", Reason.SPECIAL_PURPOSE),
    ("http://192.0.2.1/", Reason.SPECIAL_PURPOSE),  # documentation
    ("http://metadata.google.internal/computeMetadata/v1/", Reason.METADATA),
    ("http://METADATA.google.internal./", Reason.METADATA),
    ("http://metadata/", Reason.METADATA),
    ("http://instance-data/latest/", Reason.METADATA),
]
LOOPBACK = ["http://127.0.0.1:9100/", "http://127.9.9.9/", "http://[::1]:9100/"]


Answer = list[tuple[socket.AddressFamily, tuple[Any, ...]]]


def resolving(answers: dict[str, list[str]]) -> Callable[[str, int], Answer]:
    """A resolver that knows only ``answers`` (name -> addresses) and fails for every other name."""

    def resolve(host: str, port: int) -> Answer:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, f"{host} is unknown here")
        return [(socket.AF_INET6, (a, port, 0, 0)) if ":" in a else (socket.AF_INET, (a, port)) for a in answers[host]]

    return resolve


@pytest.fixture(autouse=True)
def _no_dns(monkeypatch) -> None:
    monkeypatch.setattr(egress, "resolver", resolving({}))


@pytest.fixture
def production(settings) -> Any:
    """DEBUG off's policy: no embedded loopback, and (unless a test sets it) no host named."""
    settings.EMBEDDED = False
    settings.EGRESS_ALLOWED_HOSTS = ["*"]
    settings.EGRESS_ALLOWED_NETWORKS = []
    return settings


def refusal(url: str) -> EgressDenied:
    with pytest.raises(EgressDenied) as caught:
        check_worker_url(url)
    return caught.value


# --- the corpus ------------------------------------------------------------------------------------


@pytest.mark.parametrize("embedded", [True, False], ids=["embedded", "production"])
@pytest.mark.parametrize(("url", "reason"), SSRF_CORPUS)
def test_every_form_of_an_internal_address_is_refused_in_both_modes(settings, embedded, url, reason):
    settings.EMBEDDED, settings.EGRESS_ALLOWED_HOSTS = embedded, ["*"]
    denied = refusal(url)
    assert denied.reason == reason
    assert denied.code == egress.DENIED
    assert isinstance(denied, URLRefused)  # what the doors already map to a field error


@pytest.mark.parametrize("url", [*LOOPBACK, "http://localhost:9100/"])
def test_loopback_is_allowed_in_the_embedded_mode(settings, monkeypatch, url):
    monkeypatch.setattr(egress, "resolver", resolving({"localhost": ["127.0.0.1", "::1"]}))
    settings.EMBEDDED, settings.EGRESS_ALLOWED_HOSTS = True, ["*"]
    assert check_worker_url(url) == url


@pytest.mark.parametrize("url", [*LOOPBACK, "http://localhost:9100/", "http://worker.localhost/"])
def test_loopback_is_refused_in_production(production, monkeypatch, url):
    monkeypatch.setattr(egress, "resolver", resolving({"localhost": ["127.0.0.1"], "worker.localhost": ["::1"]}))
    denied = refusal(url)
    assert denied.reason == Reason.LOOPBACK
    assert "EGRESS_ALLOWED_NETWORKS" in denied.message


def test_loopback_listed_in_the_networks_is_allowed_in_production(production):
    production.EGRESS_ALLOWED_NETWORKS = ["127.0.0.0/8", "::1/128"]
    for url in LOOPBACK:
        assert check_worker_url(url) == url


def test_translated_forms_of_loopback_are_refused_even_in_the_embedded_mode(settings):
    # Through a NAT64 gateway or a 6to4 relay, "127.0.0.1" is the far side's loopback, not ours.
    settings.EMBEDDED = True
    assert refusal("http://[64:ff9b::7f00:1]/").reason == Reason.TRANSLATED
    assert "embedding 127.0.0.1" in refusal("http://[2002:7f00:1::]/").message


# --- names that resolve --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("addresses", "reason"),
    [
        (["169.254.169.254"], Reason.METADATA),
        (["::ffff:169.254.169.254"], Reason.METADATA),
        (["fd00:ec2::254"], Reason.METADATA),
        (["0.0.0.0"], Reason.UNSPECIFIED),  # noqa: S104 - an answer to refuse, not an address to bind
        (["10.1.2.3"], Reason.PRIVATE),
        (["fe80::1%1"], Reason.LINK_LOCAL),
        (["93.184.215.14", "169.254.169.254"], Reason.METADATA),  # one bad answer among good ones is enough
    ],
)
def test_a_name_is_refused_when_what_it_resolves_to_is(monkeypatch, addresses, reason):
    monkeypatch.setattr(egress, "resolver", resolving({"worker.example.com": addresses}))
    denied = refusal("https://worker.example.com/run")
    assert denied.reason == reason
    assert denied.host == "worker.example.com"
    assert denied.address is not None
    assert "worker.example.com" in denied.message
    assert denied.address in denied.message


def test_a_name_that_does_not_resolve_now_is_accepted_and_checked_again_when_called(monkeypatch):
    assert check_worker_url("https://not-yet-deployed.example.com") == "https://not-yet-deployed.example.com"
    with pytest.raises(socket.gaierror):
        connect_targets("not-yet-deployed.example.com", 443)


def test_the_connection_goes_to_the_checked_addresses_in_the_resolvers_order(monkeypatch):
    monkeypatch.setattr(egress, "resolver", resolving({"w.example.com": ["93.184.215.14", "2606:2800:21f::1"]}))
    targets = connect_targets("w.example.com", 8443)
    assert [(t.family, t.sockaddr[:2]) for t in targets] == [
        (socket.AF_INET, ("93.184.215.14", 8443)),
        (socket.AF_INET6, ("2606:2800:21f::1", 8443)),
    ]


def test_an_address_written_as_the_host_never_goes_through_the_resolver(monkeypatch):
    def no(host: str, port: int) -> list:
        raise AssertionError(f"resolver asked for {host}")

    monkeypatch.setattr(egress, "resolver", no)
    assert [t.sockaddr[:2] for t in connect_targets("[::1]", 80)] == [("::1", 80)]
    assert [t.sockaddr[:2] for t in connect_targets("127.0.0.1", 80)] == [("127.0.0.1", 80)]


# --- the host allowlist ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://builder.example.com/", True),
        ("https://BUILDER.example.com./", True),
        ("https://a.workers.example/", True),
        ("https://a.b.workers.example/", True),
        ("https://workers.example/", False),  # *.workers.example: the names under it only
        ("https://evilworkers.example/", False),
        ("https://builder.example.com.evil.example/", False),
        ("http://93.184.215.14/", True),  # listed as an address
        ("http://[2606:2800:21f::1]/", True),  # listed in brackets, compared as an address
        ("http://93.184.215.15/", False),
        ("http://10.20.1.5:8081/", True),  # inside EGRESS_ALLOWED_NETWORKS: no host entry needed
        ("http://10.21.0.1/", False),
    ],
)
def test_hosts_must_be_on_the_allowlist_in_production(production, url, allowed):
    production.EGRESS_ALLOWED_HOSTS = [
        "builder.example.com",
        "*.workers.example",
        "93.184.215.14",
        "[2606:2800:21f:0::1]",
    ]
    production.EGRESS_ALLOWED_NETWORKS = ["10.20.0.0/16"]
    if allowed:
        assert check_worker_url(url) == url
    else:
        assert refusal(url).reason in (Reason.HOST_NOT_ALLOWED, Reason.PRIVATE)


def test_a_listed_name_is_still_held_to_what_it_resolves_to(production, monkeypatch):
    production.EGRESS_ALLOWED_HOSTS = ["builder.example.com"]
    monkeypatch.setattr(egress, "resolver", resolving({"builder.example.com": ["169.254.169.254"]}))
    assert refusal("https://builder.example.com").reason == Reason.METADATA


def test_production_names_no_host_by_default(production):
    production.EGRESS_ALLOWED_HOSTS = []
    denied = refusal("https://builder.example.com")
    assert denied.reason == Reason.HOST_NOT_ALLOWED
    assert "EGRESS_ALLOWED_HOSTS is empty" in denied.message


def test_metadata_names_are_refused_whatever_the_allowlist_says(production):
    production.EGRESS_ALLOWED_HOSTS = ["metadata.google.internal", "*.google.internal"]
    assert refusal("http://metadata.google.internal/").reason == Reason.METADATA


# --- explicitly allowed networks ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("network", "url"),
    [
        ("10.0.0.0/8", "http://10.1.2.3/"),
        ("fd12:3456::/32", "http://[fd12:3456::1]/"),
        ("169.254.0.0/16", "http://169.254.1.1/"),
        ("fe80::/10", "http://[fe80::1]/"),
        ("::ffff:10.0.0.0/104", "http://[::ffff:10.0.0.1]/"),
        ("192.0.2.0/24", "http://192.0.2.1/"),
    ],
)
def test_a_listed_network_allows_what_it_contains(production, network, url):
    assert refusal(url)
    production.EGRESS_ALLOWED_NETWORKS = [network]
    assert check_worker_url(url) == url


@pytest.mark.parametrize(
    ("networks", "url"),
    [
        (["169.254.0.0/16"], "http://169.254.169.254/"),
        (["169.254.169.254/32"], "http://169.254.169.254/"),
        (["fd00::/8"], "http://[fd00:ec2::254]/"),
        (["fc00::/7"], "http://[fd20:ce::254]/"),
        (["fe80::/10"], "http://[fe80::a9fe:a9fe]/"),
        (["::ffff:0:0/96"], "http://[::ffff:169.254.169.254]/"),
        (["0.0.0.0/8"], "http://0.0.0.0:8765/"),
        (["::/128"], "http://[::]/"),
    ],
)
def test_metadata_and_unspecified_addresses_are_never_allowed(production, networks, url):
    production.EGRESS_ALLOWED_NETWORKS = networks
    assert refusal(url).reason in (Reason.METADATA, Reason.UNSPECIFIED)


def test_an_ipv4_mapped_address_of_a_listed_ipv4_network_is_still_refused(production):
    # Listing 10.0.0.0/8 allows 10.x as written; the mapped form must be listed as such.
    production.EGRESS_ALLOWED_NETWORKS = ["10.0.0.0/8"]
    assert refusal("http://[::ffff:10.0.0.1]/").reason == Reason.IPV4_MAPPED


# --- the schema and the settings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://2130706433/", "http://0x7f000001/", "http://127.1/", "http://0/", "http://0177.0.0.1/"]
)
def test_the_schema_pattern_promises_no_numeric_host(url):
    assert not re.fullmatch(egress.WORKER_URL_SCHEMA_PATTERN, url)


@pytest.mark.parametrize(
    ("hosts", "networks"),
    [
        (["http://worker.example.com"], []),
        (["*foo.example.com"], []),
        (["worker.*.example.com"], []),
        ([], ["10.0.0.1/8"]),  # host bits set: a typo for 10.0.0.0/8 or for 10.0.0.1/32
        ([], ["not-a-network"]),
    ],
)
def test_a_bad_policy_setting_is_improperly_configured(settings, hosts, networks):
    settings.EGRESS_ALLOWED_HOSTS, settings.EGRESS_ALLOWED_NETWORKS = hosts, networks
    with pytest.raises(ImproperlyConfigured, match="EGRESS_ALLOWED_"):
        check_worker_url("https://worker.example.com")
