"""The keystore providers (environment, secret files, OpenBao), startup refusals, and audited reads."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from audit.models import AuditRecord
from security import keystore
from security.keystore import files, hooks
from security.keystore.vault import VaultProvider
from tests.security.openbao import needs_openbao

ROOT = Path(__file__).resolve().parents[2]


def key() -> str:
    return Fernet.generate_key().decode()


def secret_file(directory: Path, name: str, value: str, mode: int = 0o600) -> Path:
    path = directory / name
    path.write_text(value)
    path.chmod(mode)
    return path


@pytest.fixture
def secrets_dir(tmp_path) -> Path:
    directory = tmp_path / "secrets"
    directory.mkdir(mode=0o700)
    return directory


# --- env:// --------------------------------------------------------------------------------


@pytest.mark.django_db
def test_env_gives_the_master_keys_primary_first_and_named_secrets(settings, fresh_keystore, monkeypatch):
    first, second = key(), key()
    monkeypatch.setenv("AGENCY_MASTER_KEYS", f"{first}, {second}")
    monkeypatch.setenv("AGENCY_SECRET_WORKERS_ALPHA", "alpha-token-123456")
    settings.KEYSTORE_URL = "env://"
    assert keystore.master_keys(reason="test") == [first, second]
    assert keystore.secret("workers.alpha", reason="test") == "alpha-token-123456"


@pytest.mark.django_db
def test_env_names_the_variable_a_missing_secret_needs(settings, fresh_keystore, monkeypatch):
    monkeypatch.delenv("AGENCY_SECRET_NOPE", raising=False)
    settings.KEYSTORE_URL = "env://"
    with pytest.raises(keystore.SecretNotFound, match="AGENCY_SECRET_NOPE is not set"):
        keystore.secret("nope", reason="test")


@pytest.mark.django_db
def test_a_malformed_master_key_is_refused_naming_which(settings, fresh_keystore, monkeypatch):
    monkeypatch.setenv("AGENCY_MASTER_KEYS", f"{key()},not-a-fernet-key")
    settings.KEYSTORE_URL = "env://"
    with pytest.raises(keystore.KeystoreError, match=r"master key #2 .* is not a Fernet key"):
        keystore.master_keys(reason="test")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://x", "unknown scheme ftp://"),
        ("file://relative/dir", "absolute directory"),
        ("openbao+gopher://h:1/secret/x", "use openbao\\+http:// or openbao\\+https://"),
        ("openbao+http://user:pw@127.0.0.1:8200/secret/x", "credentials do not belong in the URL"),
        ("vault+http://127.0.0.1:8200", "expected vault://host:port/<kv mount>/<path prefix>"),
    ],
)
def test_a_bad_keystore_url_is_a_clear_error(url, message):
    with pytest.raises(keystore.KeystoreError, match=message):
        keystore.provider_from_url(url, data_dir="/nonexistent", embedded=True)


# --- file:// -------------------------------------------------------------------------------


def test_files_are_read_when_0600_and_owned_by_this_user(secrets_dir):
    master = key()
    secret_file(secrets_dir, "master-keys", f"{master}\n")
    secret_file(secrets_dir, "db.password", "s3cret-value-99\n", mode=0o400)
    source = files.FileProvider(str(secrets_dir), create_dev_key=False)
    assert source.read("master-keys") == master
    assert source.read("db.password") == "s3cret-value-99"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o660])
def test_a_secret_file_readable_by_others_is_refused(secrets_dir, mode):
    secret_file(secrets_dir, "token", "value-long-enough", mode=mode)
    source = files.FileProvider(str(secrets_dir), create_dev_key=False)
    with pytest.raises(keystore.KeystoreError, match=f"has mode {mode:04o}; it must be 0600 or stricter"):
        source.read("token")


@pytest.mark.skipif(os.geteuid() != 0, reason="changing a file's owner needs root")
def test_a_secret_file_owned_by_someone_else_is_refused(secrets_dir):
    os.chown(secret_file(secrets_dir, "token", "value-long-enough"), 65534, 65534)
    with pytest.raises(keystore.KeystoreError, match="owned by uid 65534"):
        files.FileProvider(str(secrets_dir), create_dev_key=False).read("token")


def test_a_symlinked_secret_file_is_refused(secrets_dir, tmp_path):
    target = secret_file(tmp_path, "elsewhere", "value-long-enough")
    (secrets_dir / "token").symlink_to(target)
    with pytest.raises(keystore.KeystoreError, match=r"secret file .*/token"):
        files.FileProvider(str(secrets_dir), create_dev_key=False).read("token")


def test_a_fifo_is_refused_without_blocking(secrets_dir):
    os.mkfifo(secrets_dir / "token", 0o600)
    with pytest.raises(keystore.KeystoreError, match="not a regular file"):
        files.FileProvider(str(secrets_dir), create_dev_key=False).read("token")


def test_a_directory_others_can_write_is_refused(secrets_dir):
    secret_file(secrets_dir, "token", "value-long-enough")
    secrets_dir.chmod(0o777)
    with pytest.raises(keystore.KeystoreError, match="writable by group or others"):
        files.FileProvider(str(secrets_dir), create_dev_key=False).read("token")


def test_a_symlinked_keystore_directory_is_refused(secrets_dir, tmp_path):
    secret_file(secrets_dir, "token", "value-long-enough")
    (tmp_path / "link").symlink_to(secrets_dir)
    with pytest.raises(keystore.KeystoreError, match="keystore directory"):
        files.FileProvider(str(tmp_path / "link"), create_dev_key=False).read("token")


def test_a_missing_file_says_where_it_was_looked_for(secrets_dir):
    with pytest.raises(keystore.SecretNotFound, match=f"no file token in {secrets_dir}"):
        files.FileProvider(str(secrets_dir), create_dev_key=False).read("token")


def test_the_embedded_default_creates_one_development_key_once(tmp_path):
    directory = tmp_path / "data" / "keystore"
    sources = [files.FileProvider(str(directory), create_dev_key=True) for _ in range(8)]
    seen: list[str] = []
    threads = [threading.Thread(target=lambda s=s: seen.append(s.read("master-keys"))) for s in sources]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1  # eight first starts at once agree on one key
    Fernet(seen[0].encode())
    assert oct((directory / "master-keys").stat().st_mode & 0o777) == "0o600"
    assert oct(directory.stat().st_mode & 0o777) == "0o700"
    assert sorted(p.name for p in directory.iterdir()) == ["master-keys"]  # no temporary file left
    assert files.FileProvider(str(directory), create_dev_key=True).read("master-keys") == seen[0]


def test_write_replaces_a_secret_atomically_with_mode_0600(secrets_dir):
    source = files.FileProvider(str(secrets_dir), create_dev_key=False)
    secret_file(secrets_dir, "master-keys", key())
    new = key()
    source.write("master-keys", new + "\n")
    assert source.read("master-keys") == new
    assert oct((secrets_dir / "master-keys").stat().st_mode & 0o777) == "0o600"


# --- startup -------------------------------------------------------------------------------


def run_manage(env_overrides: dict[str, str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in {"KEYSTORE_URL", "AGENCY_MASTER_KEYS"}}
    env |= {
        "DATA_DIR": str(tmp_path / "data"),
        "DEBUG": "false",
        "SECRET_KEY": "x" * 60,
        "ALLOWED_HOSTS": "agency.example.com",
        "DATABASE_URL": "",
        "REDIS_URL": "",
    } | env_overrides
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


def test_outside_the_embedded_default_an_unset_keystore_is_a_startup_error(tmp_path):
    result = run_manage({}, tmp_path)
    assert result.returncode != 0
    assert "KEYSTORE_URL must be set when DEBUG is off" in result.stderr
    assert not (tmp_path / "data" / "keystore").exists()  # no key invented


def test_outside_the_embedded_default_a_missing_master_key_is_a_startup_error(tmp_path):
    result = run_manage({"KEYSTORE_URL": "env://"}, tmp_path)
    assert result.returncode != 0
    assert "keystore: secret 'master-keys' is not in the keystore (environment variable AGENCY_MASTER_KEYS" in (
        result.stderr
    )


def test_with_a_master_key_the_production_settings_start(tmp_path):
    result = run_manage({"KEYSTORE_URL": "env://", "AGENCY_MASTER_KEYS": key()}, tmp_path)
    assert result.returncode == 0, result.stderr


# --- audited reads -------------------------------------------------------------------------


@pytest.mark.django_db
def test_each_secret_read_is_audited_without_its_value(settings, fresh_keystore, monkeypatch):
    value = "canary-secret-value-4711"
    monkeypatch.setenv("AGENCY_MASTER_KEYS", key())
    monkeypatch.setenv("AGENCY_SECRET_WORKERS_BETA", value)
    settings.KEYSTORE_URL = "env://"
    keystore.secret("workers.beta", reason="token of worker beta", actor="user:7")
    keystore.secret("workers.beta", reason="again", actor="system")
    records = list(AuditRecord.objects.filter(action=hooks.SECRET_READ).order_by("seq"))
    assert [(r.actor, r.resource_type, r.resource_id, r.data["reason"]) for r in records] == [
        ("user:7", "secret", "workers.beta", "token of worker beta"),
        ("system", "secret", "workers.beta", "again"),
    ]
    assert records[0].data["provider"] == "env"
    assert value not in json.dumps([r.data for r in records]) + "".join(r.reason for r in records)


@pytest.mark.django_db
def test_a_refused_read_is_not_audited_as_a_read(settings, fresh_keystore, monkeypatch):
    monkeypatch.delenv("AGENCY_SECRET_ABSENT", raising=False)
    settings.KEYSTORE_URL = "env://"
    with pytest.raises(keystore.SecretNotFound):
        keystore.secret("absent", reason="test")
    assert not AuditRecord.objects.filter(action=hooks.SECRET_READ, resource_id="absent").exists()


@pytest.mark.django_db
def test_secret_names_that_could_escape_are_refused(settings, fresh_keystore):
    for name in ("../master-keys", "a/b", "", "master-keys"):
        with pytest.raises(keystore.KeystoreError, match="invalid secret name"):
            keystore.secret(name, reason="test")


# --- OpenBao (a real dev server) -----------------------------------------------------------


def kv_put(openbao, path: str, data: dict) -> None:
    r = openbao.api("POST", f"secret/data/{path}", json={"data": data})
    assert r.status_code == 200, r.text


@needs_openbao
def test_openbao_with_a_token_reads_keys_and_secrets(openbao, monkeypatch):
    master = [key(), key()]
    kv_put(openbao, "tok/master-keys", {"keys": master})
    kv_put(openbao, "tok/workers.gamma", {"value": "gamma-token-abcdef"})
    monkeypatch.setenv("VAULT_TOKEN", openbao.root_token)
    monkeypatch.delenv("VAULT_ROLE_ID", raising=False)
    source = VaultProvider.from_url(f"openbao+{openbao.address}/secret/tok")
    assert source.read("master-keys") == ",".join(master)
    assert source.read("workers.gamma") == "gamma-token-abcdef"
    with pytest.raises(keystore.SecretNotFound):
        source.read("workers.absent")
    source.write("master-keys", "\n".join(reversed(master)))
    assert source.read("master-keys") == "\n".join(reversed(master))


@needs_openbao
def test_openbao_refuses_a_wrong_token_clearly(openbao, monkeypatch):
    monkeypatch.setenv("VAULT_TOKEN", "not-a-token")
    monkeypatch.delenv("VAULT_ROLE_ID", raising=False)
    source = VaultProvider.from_url(f"openbao+{openbao.address}/secret/tok")
    with pytest.raises(keystore.KeystoreError, match="login failed: Forbidden"):
        source.read("master-keys")


@pytest.fixture
def approle(openbao):
    """An AppRole whose tokens live 4 s and can be renewed up to 8 s, reading secret/app/*."""
    policy = 'path "secret/data/app/*" { capabilities = ["read", "create", "update"] }'
    assert openbao.api("PUT", "sys/policies/acl/agency-app", json={"policy": policy}).status_code in (200, 204)
    r = openbao.api("POST", "sys/auth/approle", json={"type": "approle"})
    assert r.status_code in (200, 204) or "path is already in use" in r.text
    role = {"token_policies": ["agency-app"], "token_ttl": "4s", "token_max_ttl": "8s"}
    assert openbao.api("POST", "auth/approle/role/agency", json=role).status_code in (200, 204)
    role_id = openbao.api("GET", "auth/approle/role/agency/role-id").json()["data"]["role_id"]
    secret_id = openbao.api("POST", "auth/approle/role/agency/secret-id").json()["data"]["secret_id"]
    kv_put(openbao, "app/master-keys", {"keys": key()})
    return role_id, secret_id


@needs_openbao
def test_openbao_approle_renews_its_token_and_logs_in_again_past_its_max_ttl(openbao, approle, monkeypatch):
    import time

    role_id, secret_id = approle
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    monkeypatch.setenv("VAULT_ROLE_ID", role_id)
    monkeypatch.setenv("VAULT_SECRET_ID", secret_id)
    source = VaultProvider.from_url(f"openbao+{openbao.address}/secret/app")
    logins, renewals = [], []
    login, renew = source._login, source._renew
    monkeypatch.setattr(source, "_login", lambda: logins.append(1) or login())
    monkeypatch.setattr(source, "_renew", lambda client: renewals.append(1) or renew(client))
    source.read("master-keys")
    first_token = source._client.token
    assert len(logins) == 1
    deadline = time.monotonic() + 12  # past the 8 s max TTL: renewals first, then a new login
    while time.monotonic() < deadline:
        assert source.read("master-keys")  # never a failed read while the token ages
        time.sleep(0.5)
    assert renewals, "the token was never renewed"
    assert len(logins) >= 2, "no new login once the token reached its max TTL"
    assert source._client.token != first_token
    assert source.status()["token_ttl_s"] is not None


@needs_openbao
def test_openbao_approle_secret_id_from_a_file(openbao, approle, monkeypatch, tmp_path):
    role_id, secret_id = approle
    path = tmp_path / "secret-id"
    path.write_text(secret_id + "\n")
    monkeypatch.delenv("VAULT_TOKEN", raising=False)
    monkeypatch.delenv("VAULT_SECRET_ID", raising=False)
    monkeypatch.setenv("VAULT_ROLE_ID", role_id)
    monkeypatch.setenv("VAULT_SECRET_ID_FILE", str(path))
    assert VaultProvider.from_url(f"openbao+{openbao.address}/secret/app").read("master-keys")
