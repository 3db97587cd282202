"""Encryption at rest under the keystore's keys, and rotation while other processes keep running."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet, MultiFernet
from django.core.management import call_command
from django.core.management.base import CommandError

from audit.models import AuditRecord
from security import crypto, keystore, rotation
from security.keystore import hooks
from tasks.models import Worker

pytestmark = pytest.mark.django_db


@pytest.fixture
def keys_dir(settings, tmp_path, fresh_keystore):
    directory = tmp_path / "keys"
    directory.mkdir(mode=0o700)
    settings.KEYSTORE_URL = f"file://{directory}"
    write_keys(directory, [Fernet.generate_key().decode()])
    return directory


def write_keys(directory, keys: list[str]) -> None:
    path = directory / "master-keys"
    path.write_text("\n".join(keys) + "\n")
    path.chmod(0o600)


def read_keys(directory) -> list[str]:
    return [k for k in (directory / "master-keys").read_text().split() if k]


def worker(name: str, token: str) -> Worker:
    w = Worker(name=name, base_url="http://127.0.0.1:9")
    w.token = token
    w.save()
    return w


def stored(name: str) -> str:
    return Worker.objects.values_list("token_ciphertext", flat=True).get(name=name)


def test_tokens_are_stored_as_ciphertext_under_the_primary_key(keys_dir):
    worker("alpha", "alpha-token-0123456789")
    ciphertext = stored("alpha")
    assert "alpha-token" not in ciphertext
    assert Fernet(read_keys(keys_dir)[0].encode()).decrypt(ciphertext.encode()) == b"alpha-token-0123456789"


def test_a_process_holding_the_old_keys_reads_a_row_rotated_by_another(keys_dir):
    (old,) = read_keys(keys_dir)
    worker("alpha", "alpha-token-0123456789")  # this process now holds [old]
    new = Fernet.generate_key().decode()
    write_keys(keys_dir, [new, old])  # another process added a key ...
    rotated = MultiFernet([Fernet(new.encode()), Fernet(old.encode())]).rotate(stored("alpha").encode()).decode()
    Worker.objects.filter(name="alpha").update(token_ciphertext=rotated)  # ... and rotated the row
    assert Worker.objects.get(name="alpha").token == "alpha-token-0123456789"
    assert crypto.primary_in([new])  # and it encrypts under the new key from now on


def test_a_ciphertext_under_no_key_fails_loudly(keys_dir):
    foreign = Fernet(Fernet.generate_key()).encrypt(b"x" * 20).decode()
    Worker.objects.create(name="lost", base_url="http://127.0.0.1:9", token_ciphertext=foreign)
    with pytest.raises(crypto.DecryptionError, match="cannot be decrypted with any master key"):
        Worker.objects.get(name="lost").token  # noqa: B018


def test_rotation_re_encrypts_every_row_is_idempotent_and_then_lets_the_old_key_go(keys_dir):
    for i in range(5):
        worker(f"w{i}", f"token-number-{i}-abcdef")
    (old,) = read_keys(keys_dir)
    out = StringIO()
    call_command("rotate_keys", "--add-key", "--batch-size", "2", stdout=out)
    new, kept = read_keys(keys_dir)
    assert kept == old
    assert new != old
    assert "re-encrypted 5; 5 secret(s) under the primary key" in out.getvalue()
    for i in range(5):
        assert Fernet(new.encode()).decrypt(stored(f"w{i}").encode()) == f"token-number-{i}-abcdef".encode()

    again = StringIO()
    call_command("rotate_keys", stdout=again)
    assert "re-encrypted 0; 5 secret(s) under the primary key" in again.getvalue()

    with pytest.raises(CommandError, match="try again in"):
        call_command("rotate_keys", "--drop-old")
    assert read_keys(keys_dir) == [new, old]
    call_command("rotate_keys", "--drop-old", "--no-wait", stdout=StringIO())
    assert read_keys(keys_dir) == [new]
    crypto.reload()
    assert [w.token for w in Worker.objects.order_by("name")] == [f"token-number-{i}-abcdef" for i in range(5)]
    actions = list(
        AuditRecord.objects.filter(action__startswith="keystore.").order_by("seq").values_list("action", flat=True)
    )
    assert actions == [hooks.KEY_ADDED, hooks.KEYS_ROTATED, hooks.KEYS_ROTATED, hooks.KEYS_ROTATED, hooks.KEY_REMOVED]


def test_an_interrupted_rotation_resumes_where_the_rows_are(keys_dir):
    for i in range(4):
        worker(f"w{i}", f"token-number-{i}-abcdef")
    rotation.add_key(actor="system")

    def stop_after_the_first_batch(field, progress):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        rotation.reencrypt(batch_size=1, progress=stop_after_the_first_batch)
    primary = Fernet(read_keys(keys_dir)[0].encode())

    def under_primary(name: str) -> bool:
        try:
            primary.decrypt(stored(name).encode())
        except Exception:
            return False
        return True

    assert [under_primary(f"w{i}") for i in range(4)] == [True, False, False, False]
    result = rotation.rotate(actor="system")
    assert (result.rotated, result.current, result.done) == (3, 4, True)


def test_a_token_changed_during_the_pass_is_not_overwritten(keys_dir, monkeypatch):
    worker("alpha", "alpha-token-0123456789")
    rotation.add_key(actor="system")
    real_rotate = crypto.rotate

    def rotate_while_someone_sets_a_new_token(ciphertext: str) -> str:
        w = Worker.objects.get(name="alpha")
        w.token = "replaced-token-9876543210"
        w.save(update_fields=["token_ciphertext"])
        return real_rotate(ciphertext)

    monkeypatch.setattr(crypto, "rotate", rotate_while_someone_sets_a_new_token)
    first = rotation.reencrypt()
    assert (first.rotated, first.conflicts) == (0, 1)
    assert Worker.objects.get(name="alpha").token == "replaced-token-9876543210"


def test_an_undecryptable_row_is_named_and_the_old_keys_stay(keys_dir):
    foreign = Fernet(Fernet.generate_key()).encrypt(b"x" * 20).decode()
    lost = Worker.objects.create(name="lost", base_url="http://127.0.0.1:9", token_ciphertext=foreign)
    with pytest.raises(CommandError, match=f"tasks.Worker:{lost.pk}"):
        call_command("rotate_keys", "--add-key", stdout=StringIO())
    with pytest.raises(CommandError, match="the old keys stay"):
        call_command("rotate_keys", "--drop-old", "--no-wait", stdout=StringIO())
    assert len(read_keys(keys_dir)) == 2


def test_with_a_read_only_keystore_adding_a_key_says_how(settings, fresh_keystore, monkeypatch):
    monkeypatch.setenv("AGENCY_MASTER_KEYS", Fernet.generate_key().decode())
    settings.KEYSTORE_URL = "env://"
    with pytest.raises(CommandError, match="Put a new key first in AGENCY_MASTER_KEYS"):
        call_command("rotate_keys", "--add-key", stdout=StringIO())


def test_health_degrades_when_the_keystore_no_longer_has_this_processs_key(keys_dir, viewer_client):
    worker("alpha", "alpha-token-0123456789")  # holds the key
    write_keys(keys_dir, [Fernet.generate_key().decode()])  # replaced under it, not rotated
    component = viewer_client.get("/api/health").json()["components"]["keystore"]
    assert component["status"] == "degraded"
    assert component["error"] == "this process encrypts under a key the keystore lacks"


def test_health_reports_an_unreadable_keystore_as_unhealthy(keys_dir, viewer_client):
    (keys_dir / "master-keys").chmod(0o644)
    component = viewer_client.get("/api/health").json()["components"]["keystore"]
    assert component["status"] == "unhealthy"
    assert "must be 0600 or stricter" in component["error"]


def test_a_worker_token_can_come_from_the_keystore(settings, fresh_keystore, monkeypatch):
    monkeypatch.setenv("AGENCY_MASTER_KEYS", Fernet.generate_key().decode())
    monkeypatch.setenv("AGENCY_SECRET_WORKERS_DELTA", "delta-token-from-keystore")
    settings.KEYSTORE_URL = "env://"
    call_command("register_worker", "delta", "http://127.0.0.1:9", "--token-secret", "workers.delta", stdout=StringIO())
    assert Worker.objects.get(name="delta").token == "delta-token-from-keystore"
    assert AuditRecord.objects.filter(action=hooks.SECRET_READ, resource_id="workers.delta").count() == 1
    with pytest.raises(CommandError, match=r"--token-secret: secret 'workers\.nope'"):
        call_command("register_worker", "eps", "http://127.0.0.1:9", "--token-secret", "workers.nope")


def test_health_names_a_stored_secret_no_key_opens(keys_dir, viewer_client):
    foreign = Fernet(Fernet.generate_key()).encrypt(b"x" * 20).decode()
    lost = Worker.objects.create(name="lost", base_url="http://127.0.0.1:9", token_ciphertext=foreign)
    component = viewer_client.get("/api/health").json()["components"]["keystore"]
    assert component["status"] == "degraded"
    assert component["error"] == f"1 stored secret(s) open under no key: tasks.Worker:{lost.pk}"


def test_two_rotations_at_once_are_refused(keys_dir):
    import threading

    from django.db import connection

    # The other rotation holds the lock from its own thread, hence its own database connection
    # (a PostgreSQL advisory lock is re-entrant within one session).
    held, release = threading.Event(), threading.Event()

    def other_rotation() -> None:
        try:
            with rotation.one_rotation_at_a_time():
                held.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_rotation)
    thread.start()
    try:
        assert held.wait(10)
        with pytest.raises(CommandError, match="another rotate_keys is running"):
            call_command("rotate_keys", "--add-key", stdout=StringIO())
    finally:
        release.set()
        thread.join(10)
    assert len(read_keys(keys_dir)) == 1  # the refused one wrote nothing


def test_drop_old_refuses_when_the_keys_changed_during_its_pass(keys_dir, monkeypatch):
    worker("alpha", "alpha-token-0123456789")
    rotation.add_key(actor="system")
    real = rotation.rotate

    def someone_adds_a_key_meanwhile(**kwargs):
        result = real(**kwargs)
        write_keys(keys_dir, [Fernet.generate_key().decode(), *read_keys(keys_dir)])
        return result

    monkeypatch.setattr(rotation, "rotate", someone_adds_a_key_meanwhile)
    with pytest.raises(rotation.RotationRefused, match="changed in the keystore during dropping the old keys"):
        rotation.drop_old_keys(actor="system", wait=False)
    assert len(read_keys(keys_dir)) == 3  # nothing dropped


def test_drop_old_waits_two_refresh_intervals(keys_dir, settings):
    from datetime import timedelta

    from django.utils import timezone

    settings.KEYSTORE_REFRESH_S = 60
    rotation.add_key(actor="system")
    with pytest.raises(rotation.RotationRefused, match="try again in"):
        rotation.drop_old_keys(actor="system", now=timezone.now() + timedelta(seconds=100))
    assert "removed 1 old key" in rotation.drop_old_keys(actor="system", now=timezone.now() + timedelta(seconds=121))


def test_a_process_that_cannot_reread_its_keys_stops_encrypting_but_still_decrypts(keys_dir, settings, monkeypatch):
    import time as time_module

    settings.KEYSTORE_REFRESH_S = 10
    w = worker("alpha", "alpha-token-0123456789")
    (keys_dir / "master-keys").chmod(0o644)  # the keystore now refuses every read
    later = time_module.monotonic() + 25
    monkeypatch.setattr(crypto.time, "monotonic", lambda: later)
    assert Worker.objects.get(pk=w.pk).token == "alpha-token-0123456789"
    with pytest.raises(keystore.KeystoreError, match="refusing to encrypt under keys that may have been rotated"):
        crypto.encrypt("another-token-0123456789")


def test_a_token_no_key_opens_is_not_a_keystore_read_at_every_refresh(keys_dir):
    foreign = Fernet(Fernet.generate_key()).encrypt(b"x" * 20).decode()
    worker("alpha", "alpha-token-0123456789")  # keys held
    reads = AuditRecord.objects.filter(action=hooks.SECRET_READ).count
    before = reads()
    for _ in range(5):
        with pytest.raises(crypto.DecryptionError):
            crypto.decrypt(foreign)
        crypto._keyring._missed_at = 0.0  # past the once-a-second limit: only the negative cache stops it
    assert reads() - before == 1


def test_the_health_probe_reads_the_keystore_at_most_every_few_seconds(keys_dir, viewer_client, monkeypatch):
    from metrics import health

    monkeypatch.setattr(health, "KEYSTORE_PROBE_TTL_S", 10.0)
    reads = []
    real = keystore.probe
    monkeypatch.setattr(keystore, "probe", lambda: reads.append(1) or real())
    for _ in range(5):
        assert viewer_client.get("/api/health").json()["components"]["keystore"]["status"] == "healthy"
    assert len(reads) == 1
