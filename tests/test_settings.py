"""Configuration from the environment: defaults, PostgreSQL/Redis switches, clear startup errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent

PROBE = (
    "import django, json; django.setup(); from django.conf import settings as s; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], "
    "'layer': s.CHANNEL_LAYERS['default']['BACKEND'], 'debug': s.DEBUG, "
    "'pool': bool(s.DATABASES['default'].get('OPTIONS', {}).get('pool'))}))"
)


def run_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"}}
    clean |= {"DJANGO_SETTINGS_MODULE": "config.settings", "DATA_DIR": str(tmp_path / "data")} | env
    return subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True, timeout=60
    )


def test_with_no_environment_it_runs_on_sqlite_and_the_in_memory_layer(tmp_path):
    result = run_settings(tmp_path)
    assert result.returncode == 0, result.stderr
    assert '"engine": "django.db.backends.sqlite3"' in result.stdout
    assert '"layer": "channels.layers.InMemoryChannelLayer"' in result.stdout
    assert '"debug": true' in result.stdout
    secret = tmp_path / "data" / "dev-secret-key"
    assert secret.exists()
    assert oct(secret.stat().st_mode & 0o777) == "0o600"


def test_database_and_redis_urls_switch_to_postgres_with_a_pool_and_channels_redis(tmp_path):
    result = run_settings(tmp_path, DATABASE_URL="postgres://u:p@127.0.0.1:5/db", REDIS_URL="redis://127.0.0.1:6/0")
    assert result.returncode == 0, result.stderr
    assert '"engine": "django.db.backends.postgresql"' in result.stdout
    assert '"pool": true' in result.stdout
    assert '"layer": "channels_redis.core.RedisChannelLayer"' in result.stdout


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEBUG": "false", "ALLOWED_HOSTS": "example.com"}, "SECRET_KEY must be set"),
        ({"DEBUG": "false", "SECRET_KEY": "s" * 50}, "ALLOWED_HOSTS must be set"),
        ({"DATABASE_URL": "mysql://u:p@h/db"}, "DATABASE_URL must be a postgres"),
    ],
)
def test_a_missing_or_wrong_setting_is_a_clear_startup_error(tmp_path, env, message):
    result = run_settings(tmp_path, **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


@pytest.mark.django_db
def test_sqlite_runs_in_wal_mode_with_a_busy_timeout():
    if connection.vendor != "sqlite":
        pytest.skip("the SQLite settings")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA busy_timeout")
        assert cursor.fetchone()[0] >= 5000


def test_an_empty_data_dir_means_the_default_not_the_current_directory(tmp_path):
    probe = "import django; django.setup(); from django.conf import settings as s; print(s.DATA_DIR)"
    clean = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL", "SECRET_KEY", "DEBUG"}}
    clean |= {"DJANGO_SETTINGS_MODULE": "config.settings", "DATA_DIR": "", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str((ROOT / "var").resolve())
    assert not (tmp_path / "dev-secret-key").exists()
