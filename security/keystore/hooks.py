"""What the keystore does with each read once Django is ready: audit it, mask its values in logs."""

from __future__ import annotations

import logging
import os
import socket

from django.db import DatabaseError, transaction

from security import keystore
from security.redaction import register_secret

logger = logging.getLogger("agency.keystore")

# Audit vocabulary of the keystore (the record never holds a value).
SECRET_READ = "secret.read"  # noqa: S105 - an audit action name
KEY_ADDED = "keystore.key_added"
KEYS_ROTATED = "keystore.rotated"
KEY_REMOVED = "keystore.key_removed"
RESOURCE = "secret"


def audit_read(read: keystore.Read) -> None:
    """One audit record per read that reached the provider.

    Its own atomic block (a savepoint when the caller is in a transaction). When the database
    cannot take it (the audit table does not exist yet during the first ``migrate``), the read
    is logged instead: a keystore that answers must not stop the process for lack of a table.
    """
    from audit.services import audit_record

    data = {
        "provider": read.scheme,
        "location": read.location,
        "reason": read.reason,
        "process": f"{socket.gethostname()}:{os.getpid()}",
    }
    try:
        with transaction.atomic():
            audit_record(actor=read.actor, action=SECRET_READ, resource_type=RESOURCE, resource_id=read.name, data=data)
    except DatabaseError as exc:
        logger.warning("keystore read of %s (%s) not audited: %s", read.name, read.reason, type(exc).__name__)


def _follow_settings(*, setting: str, **kwargs: object) -> None:
    """A changed ``KEYSTORE_URL`` (tests' ``override_settings``) means another provider and other keys."""
    if setting in {"KEYSTORE_URL", "DATA_DIR"}:
        from security import crypto

        keystore.reset()
        crypto.reload()


def install() -> None:
    from django.core.signals import setting_changed

    keystore._on_read = audit_read
    keystore._register_secret = register_secret
    setting_changed.connect(_follow_settings, dispatch_uid="agency-keystore-settings")
