"""Rotate the master keys while the system runs (docs/security.md, "Keystore and key rotation").

    manage.py rotate_keys --add-key     # 1. a new primary key in the keystore (file, OpenBao)
    manage.py rotate_keys               # 2. re-encrypt every secret under it (repeatable)
    manage.py rotate_keys --drop-old    # 3. once nothing needs them, remove the old keys

With ``KEYSTORE_URL=env://`` the keystore is read-only: step 1 is a restart with the new key
first in ``AGENCY_MASTER_KEYS``, and step 3 a restart without the old ones.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from security import keystore, rotation
from security.principals import Principal


class Command(BaseCommand):
    help = (
        "Re-encrypt every stored secret under the primary master key, safely while the system runs. "
        "--add-key first puts a new primary key in the keystore; --drop-old removes the old keys once "
        "nothing needs them. Idempotent: run it again after an interruption."
    )

    def add_arguments(self, parser) -> None:
        step = parser.add_mutually_exclusive_group()
        step.add_argument("--add-key", action="store_true", help="Generate a key, make it primary, then re-encrypt.")
        step.add_argument(
            "--drop-old", action="store_true", help="Check every secret is under the primary, then remove the others."
        )
        parser.add_argument(
            "--no-wait",
            action="store_true",
            help="With --drop-old: every process has been restarted since the key was added, do not wait for them.",
        )
        parser.add_argument("--batch-size", type=int, default=200, help="Rows read per query (default 200).")

    def handle(self, *args: Any, add_key: bool, drop_old: bool, no_wait: bool, batch_size: int, **options: Any) -> None:
        if batch_size < 1:
            raise CommandError("--batch-size must be at least 1.")
        actor = Principal.system("rotate_keys").actor
        try:
            with rotation.one_rotation_at_a_time():
                if drop_old:
                    self.stdout.write(rotation.drop_old_keys(actor=actor, wait=not no_wait))
                    return
                if add_key:
                    self.stdout.write(rotation.add_key(actor=actor))
                result = rotation.rotate(actor=actor, batch_size=batch_size)
        except (rotation.RotationRefused, keystore.KeystoreError) as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(
            f"re-encrypted {result.rotated}; {result.current} secret(s) under the primary key; "
            f"{result.conflicts} changed by others meanwhile"
        )
        if result.undecryptable:
            raise CommandError(
                f"{len(result.undecryptable)} secret(s) open under no key in the keystore and were left as they are "
                f"({', '.join(result.undecryptable[:10])}): give those workers a new token"
            )
        if result.done:
            self.stdout.write("every secret is under the primary key; the old keys can be dropped (--drop-old)")
