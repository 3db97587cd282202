"""The production configuration: ``manage.py check --deploy`` passes, and the egress and hardening settings.

Each test starts Django in a subprocess with the documented production environment (DEBUG
off, a real SECRET_KEY, ALLOWED_HOSTS, the keystore), so the settings module is read as a
deployment reads it.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

ROOT = Path(__file__).resolve().parents[2]
# Variables of the test run's own environment that must not leak into a production start.
SCRUBBED = ("DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "REDIS_URL", "KEYSTORE_URL", "AGENCY_MASTER_KEYS")
PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({k: getattr(s, k, None) for k in ("
    "'EMBEDDED', 'EGRESS_ALLOWED_HOSTS', 'EGRESS_ALLOWED_NETWORKS', 'SECURE_SSL_REDIRECT', 'SESSION_COOKIE_SECURE', "
    "'CSRF_COOKIE_SECURE', 'SECURE_HSTS_SECONDS', 'SECURE_HSTS_INCLUDE_SUBDOMAINS', 'SECURE_HSTS_PRELOAD', "
    "'SECURE_PROXY_SSL_HEADER', 'SECURE_REDIRECT_EXEMPT')}))"
)


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED and not k.startswith(("EGRESS_", "SECURE_"))}
    return (
        env
        | {
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "DATA_DIR": str(tmp_path / "data"),
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(64),
            "ALLOWED_HOSTS": "agency.example.com",
            "KEYSTORE_URL": "env://",
            "AGENCY_MASTER_KEYS": Fernet.generate_key().decode(),
        }
        | extra
    )


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def probe(env: dict[str, str]) -> dict[str, object]:
    result = run(["-c", PROBE], env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_deploy_check_passes_with_the_production_environment(tmp_path):
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], production_env(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_the_deploy_check_fails_without_the_hardening(tmp_path):
    # The check that passes above is not vacuous: turn the hardening off and it fails.
    env = production_env(tmp_path, SECURE_SSL_REDIRECT="false", SESSION_COOKIE_SECURE="false")
    result = run(["manage.py", "check", "--deploy", "--fail-level", "WARNING"], env)
    assert result.returncode != 0
    assert "security.W008" in result.stderr
    assert "security.W012" in result.stderr


def test_production_defaults_are_hardened_and_name_no_worker_host(tmp_path):
    values = probe(production_env(tmp_path))
    assert values == {
        "EMBEDDED": False,
        "EGRESS_ALLOWED_HOSTS": [],
        "EGRESS_ALLOWED_NETWORKS": [],
        "SECURE_SSL_REDIRECT": True,
        "SESSION_COOKIE_SECURE": True,
        "CSRF_COOKIE_SECURE": True,
        "SECURE_HSTS_SECONDS": 31_536_000,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
        "SECURE_HSTS_PRELOAD": True,
        "SECURE_PROXY_SSL_HEADER": None,
        "SECURE_REDIRECT_EXEMPT": ["^healthz$"],
    }


def test_the_embedded_default_allows_any_worker_host_and_is_not_hardened(tmp_path):
    env = {k: v for k, v in production_env(tmp_path).items() if k not in SCRUBBED}
    values = probe(env)
    assert values["EMBEDDED"] is True
    assert values["EGRESS_ALLOWED_HOSTS"] == ["*"]
    assert (values["SECURE_SSL_REDIRECT"], values["SECURE_HSTS_SECONDS"]) == (False, 0)


def test_the_production_environment_sets_the_policy_and_the_proxy_header(tmp_path):
    env = production_env(
        tmp_path,
        EGRESS_ALLOWED_HOSTS="*.workers.internal.example,builder.example.com,[fd12::5]",
        EGRESS_ALLOWED_NETWORKS="10.20.0.0/16,fd12:3456:789a::/48",
        SECURE_PROXY_SSL_HEADER="X-Forwarded-Proto",
    )
    values = probe(env)
    assert values["EGRESS_ALLOWED_HOSTS"] == ["*.workers.internal.example", "builder.example.com", "[fd12::5]"]
    assert values["EGRESS_ALLOWED_NETWORKS"] == ["10.20.0.0/16", "fd12:3456:789a::/48"]
    assert values["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("EGRESS_ALLOWED_NETWORKS", "10.0.0.1/8", "EGRESS_ALLOWED_NETWORKS: '10.0.0.1/8' is not a network"),
        ("EGRESS_ALLOWED_NETWORKS", "private", "EGRESS_ALLOWED_NETWORKS: 'private' is not a network"),
        ("EGRESS_ALLOWED_HOSTS", "https://worker.example.com", "EGRESS_ALLOWED_HOSTS: 'https://worker.example.com'"),
        ("EGRESS_ALLOWED_HOSTS", "*worker.example.com", "EGRESS_ALLOWED_HOSTS: '*worker.example.com'"),
        ("SECURE_PROXY_SSL_HEADER", "X-Forwarded-Proto: https", "SECURE_PROXY_SSL_HEADER must be a header name"),
        ("SECURE_HSTS_SECONDS", "-1", "SECURE_HSTS_SECONDS must be 0"),
    ],
)
def test_a_bad_value_is_a_clear_startup_error(tmp_path, variable, value, message):
    result = run(["-c", PROBE], production_env(tmp_path, **{variable: value}))
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr
