"""The audit hash chain: the canonical form of a record and its SHA-256.

Each record's hash covers its content and the hash of the record before it, so
editing, deleting or moving any record breaks every link after it. The form is
*frozen*: every stored hash depends on it, so changing anything here makes the
whole log fail verification. A new form would be a new function selected by a
new ``FORMAT_VERSION``, never an edit of this one.

Version 1 hashes the UTF-8 (pure ASCII, thanks to ``ensure_ascii``) bytes of the
compact JSON array

    [1, seq, created_at, actor, action, resource_type, resource_id, data, reason, prev_hash]

with object keys sorted, ``created_at`` as ISO 8601 in UTC with microseconds,
and ``data`` normalised as :func:`canonical_json_value` describes.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

FORMAT_VERSION = 1
# The prev_hash of the first record of the chain.
GENESIS_HASH = "0" * 64


def normalize_data(data: Any) -> dict[str, Any]:
    """The record's data as every database will hand it back: a JSON object.

    Tuples become lists and non-string keys strings, exactly as the JSON
    encoder of the JSONField would turn them, so that the hash is computed over
    what is stored rather than over what the caller happened to pass. NaN and
    infinities are refused here: they are not JSON, and PostgreSQL would refuse
    them only at INSERT time.
    """
    if data is None:
        return {}
    value = json.loads(json.dumps(data, allow_nan=False))
    if not isinstance(value, dict):
        raise TypeError(f"audit data must be a JSON object, not {type(data).__name__}")
    return value


def canonical_json_value(value: Any) -> Any:
    """``value`` with every float in the one form both databases give back.

    PostgreSQL's ``jsonb`` keeps numbers as exact decimals of the text Python
    wrote (``repr``), and prints integral ones without exponent or fraction:
    ``1e16`` comes back as the int ``10000000000000000`` and ``2.0`` as ``2.0``.
    So an integral float is hashed as the exact integer its ``repr`` denotes,
    and any other float as itself; the values read back from SQLite (which
    keeps the JSON text) or from PostgreSQL then hash alike.
    """
    if isinstance(value, float):
        exact = Decimal(repr(value))
        return int(exact) if exact == exact.to_integral_value() else value
    if isinstance(value, dict):
        return {key: canonical_json_value(item) for key, item in value.items()}
    if isinstance(value, list):
        return [canonical_json_value(item) for item in value]
    return value


def canonical_timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def record_hash(
    *,
    seq: int,
    created_at: datetime,
    actor: str,
    action: str,
    resource_type: str,
    resource_id: str,
    data: dict[str, Any],
    reason: str,
    prev_hash: str,
) -> str:
    """The hex SHA-256 of a record in canonical form (version 1)."""
    payload = [
        FORMAT_VERSION,
        seq,
        canonical_timestamp(created_at),
        actor,
        action,
        resource_type,
        resource_id,
        canonical_json_value(data),
        reason,
        prev_hash,
    ]
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(text.encode("ascii")).hexdigest()
