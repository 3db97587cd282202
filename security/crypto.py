"""Encryption at rest for secrets stored in the database (worker tokens...).

Fernet (AES-128-CBC + HMAC-SHA256, from ``cryptography``) under a key from
``FIELD_ENCRYPTION_KEY`` (a Fernet key) or, when unset, derived from
``SECRET_KEY`` with HKDF so a fresh clone works. Plaintext never reaches the
database, and ciphertext from another key fails loudly instead of decrypting
to garbage.
"""

from __future__ import annotations

import base64
from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class DecryptionError(Exception):
    """Stored ciphertext could not be decrypted with the configured key."""


@lru_cache(maxsize=1)
def _fernet() -> Fernet:
    configured = getattr(settings, "FIELD_ENCRYPTION_KEY", "")
    if configured:
        try:
            return Fernet(configured.encode())
        except ValueError as exc:
            raise ImproperlyConfigured("FIELD_ENCRYPTION_KEY must be a Fernet key (32 url-safe base64 bytes).") from exc
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"agency-field-encryption").derive(
        settings.SECRET_KEY.encode()
    )
    return Fernet(base64.urlsafe_b64encode(derived))


def encrypt(plaintext: str) -> str:
    if not plaintext:
        return ""
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(ciphertext: str) -> str:
    if not ciphertext:
        return ""
    try:
        return _fernet().decrypt(ciphertext.encode()).decode()
    except InvalidToken as exc:
        raise DecryptionError("stored secret cannot be decrypted with the configured key") from exc
