"""Master-key rotation: add a new primary key, re-encrypt every secret row under it, drop the old.

Each step can run while the system serves and dispatches (security.crypto explains how the
running processes follow), and each can be repeated or interrupted: a row already under the
primary key is skipped, and a row is rewritten only if its ciphertext is still the one that was
read (compare-and-swap), so a token changed by someone else meanwhile is left as they wrote it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from cryptography.fernet import Fernet
from django.apps import apps
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.models import AuditRecord
from audit.services import audit_record
from security import crypto, keystore
from security.keystore import hooks


class RotationRefused(Exception):
    """The step cannot be taken now; the message says why and what to do."""


# Key of the PostgreSQL advisory lock that keeps two rotations apart ("agyrotat" as a bigint).
ROTATION_LOCK_KEY = int.from_bytes(b"agyrotat", "big")


@contextlib.contextmanager
def one_rotation_at_a_time() -> Iterator[None]:
    """Refuse to start while another ``rotate_keys`` runs: each step reads the keys, then writes them.

    Two at once would lose a key (two ``--add-key``) or drop the one in use (``--drop-old``
    beside an ``--add-key``). PostgreSQL: an advisory lock, across machines. SQLite (one
    machine by construction): a lock file beside the database's data.
    """
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [ROTATION_LOCK_KEY])
            if not cursor.fetchone()[0]:
                raise RotationRefused("another rotate_keys is running; try again when it has finished")
        try:
            yield
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [ROTATION_LOCK_KEY])
        return
    path = Path(settings.DATA_DIR) / "rotate-keys.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RotationRefused("another rotate_keys is running; try again when it has finished") from None
        yield
    finally:
        os.close(fd)


def _audit(actor: str, action: str, data: dict[str, object]) -> None:
    """One audit record of a rotation step, on the master keys (never a key)."""
    with transaction.atomic():
        audit_record(
            actor=actor, action=action, resource_type=hooks.RESOURCE, resource_id=keystore.MASTER_KEYS, data=data
        )


def _unchanged(keys: list[str], *, actor: str, step: str) -> None:
    """The keystore still holds ``keys``: nothing (a hand edit, another tool) changed them during the step."""
    if keystore.master_keys(reason=f"rotation: {step}, check", actor=actor) != keys:
        raise RotationRefused(f"the master keys changed in the keystore during {step}; nothing was written")


@dataclass
class Pass:
    rotated: int = 0
    current: int = 0
    conflicts: int = 0
    undecryptable: list[str] = field(default_factory=list)
    # The last pass found nothing to rewrite: every readable row is under the primary key.
    settled: bool = False

    @property
    def done(self) -> bool:
        return self.settled and not self.undecryptable


def add_key(*, actor: str) -> str:
    """Generate a key and make it the primary, keeping the old keys for reading. Returns nothing secret.

    Refused by a read-only keystore (``env://``): there the operator restarts the processes
    with the new key first in ``AGENCY_MASTER_KEYS``.
    """
    keys = keystore.master_keys(reason="rotation: add a key", actor=actor)
    new = Fernet.generate_key().decode()
    try:
        keystore.write_master_keys([new, *keys], actor=actor)
    except keystore.KeystoreReadOnly as exc:
        raise RotationRefused(
            f"{exc}. Put a new key first in AGENCY_MASTER_KEYS (keep the old ones after it), "
            "restart the processes, then run rotate_keys again."
        ) from exc
    crypto.reload()
    _audit(actor, hooks.KEY_ADDED, {"keys": len(keys) + 1, "location": keystore.provider().location})
    return f"a new primary key is in {keystore.provider().location} ({len(keys) + 1} keys)"


def reencrypt(*, batch_size: int = 200, progress=None) -> Pass:
    """One pass over every registered secret column: rows not under the primary key re-encrypted."""
    crypto.reload()
    result = Pass()
    for secret_field in crypto.SECRET_FIELDS:
        model = apps.get_model(secret_field.model)
        column = secret_field.column
        rows = model.objects.exclude(**{column: ""}).order_by("pk").values_list("pk", column)
        last_pk = None
        while True:
            page = rows.filter(pk__gt=last_pk) if last_pk is not None else rows
            batch = list(page[:batch_size])
            if not batch:
                break
            last_pk = batch[-1][0]
            for pk, ciphertext in batch:
                if crypto.under_primary(ciphertext):
                    result.current += 1
                    continue
                try:
                    fresh = crypto.rotate(ciphertext)
                except crypto.DecryptionError:
                    result.undecryptable.append(f"{secret_field.model}:{pk}")
                    continue
                # Compare-and-swap: the row keeps a value someone wrote after it was read.
                if model.objects.filter(pk=pk, **{column: ciphertext}).update(**{column: fresh}):
                    result.rotated += 1
                else:
                    result.conflicts += 1
            if progress:
                progress(secret_field, result)
    result.settled = result.rotated == 0 and result.conflicts == 0
    return result


def rotate(*, actor: str, batch_size: int = 200, max_passes: int = 5, progress=None) -> Pass:
    """Re-encrypt until a pass finds nothing left under an old key (or ``max_passes`` run out)."""
    total = Pass()
    for _ in range(max_passes):
        step = reencrypt(batch_size=batch_size, progress=progress)
        total.rotated += step.rotated
        total.conflicts += step.conflicts
        total.current = step.current
        total.undecryptable = step.undecryptable
        total.settled = step.settled
        if step.settled:
            break
    _audit(
        actor,
        hooks.KEYS_ROTATED,
        {
            "rotated": total.rotated,
            "current": total.current,
            "conflicts": total.conflicts,
            "undecryptable": total.undecryptable[:100],
        },
    )
    return total


def drop_old_keys(*, actor: str, wait: bool = True, now=None) -> str:
    """Keep only the primary key, once nothing needs the others.

    Refused while a process may still encrypt under an old key, and while any row is not
    under the primary. A process re-reads the keys every ``KEYSTORE_REFRESH_S`` and refuses to
    encrypt once it has failed to for twice that (security.crypto), so two intervals after the
    key was added no process can still be writing under an old one.
    """
    keys = keystore.master_keys(reason="rotation: drop the old keys", actor=actor)
    if len(keys) == 1:
        return "only one key is in the keystore; nothing to drop"
    added = (
        AuditRecord.objects.filter(action=hooks.KEY_ADDED).order_by("-seq").values_list("created_at", flat=True).first()
    )
    refresh = timedelta(seconds=2 * settings.KEYSTORE_REFRESH_S)
    age = (now or timezone.now()) - added if added is not None else refresh
    if wait and age < refresh:
        raise RotationRefused(
            f"the new key was added {int(age.total_seconds())} s ago and processes re-read the keystore every "
            f"{settings.KEYSTORE_REFRESH_S:g} s (KEYSTORE_REFRESH_S; they stop encrypting after two failed "
            "intervals): one that has not yet could still encrypt "
            f"under an old key; try again in {int((refresh - age).total_seconds()) + 1} s, or restart every "
            "process and pass --no-wait"
        )
    check = rotate(actor=actor)
    if not check.done:
        raise RotationRefused(
            f"not every secret is under the primary key yet ({check.conflicts} changed during the pass, "
            f"undecryptable: {', '.join(check.undecryptable) or 'none'}); the old keys stay"
        )
    try:
        _unchanged(keys, actor=actor, step="dropping the old keys")
        keystore.write_master_keys(keys[:1], actor=actor)
    except keystore.KeystoreReadOnly as exc:
        raise RotationRefused(
            f"{exc}. Every secret is under the primary key: remove the other keys from AGENCY_MASTER_KEYS "
            "and restart the processes."
        ) from exc
    crypto.reload()
    _audit(actor, hooks.KEY_REMOVED, {"removed": len(keys) - 1})
    return f"removed {len(keys) - 1} old key(s); every secret is under the primary key"
