"""Walking the audit chain: the first edited, deleted or reordered record.

The walk streams the records in ``seq`` order and checks, for each, that its
``seq`` is the next number, that its ``prev_hash`` is the hash of the record
before it, and that its ``hash`` matches its content. The first record failing
any of these is diagnosed (one or two extra reads, only then):

- *edited*: a record's content, ``prev_hash`` or ``seq`` no longer matches its hash;
- *deleted*: a ``seq`` is missing, or the successor of the last good record is
  nowhere in the table (the records after it were renumbered);
- *reordered*: the record that belongs at this position sits at another ``seq``,
  or the content found here hashes correctly only at another position.

What a hash chain cannot show without an outside reference: records removed
from the *end*, or the whole chain rewritten from some point on. For that,
keep the head that ``verify_audit`` prints somewhere the database's owners
cannot write, and pass it back with ``--anchor``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from typing import Any, NamedTuple

from django.db import DEFAULT_DB_ALIAS

from audit.chain import GENESIS_HASH, record_hash
from audit.models import AuditRecord


class Row(NamedTuple):
    id: int
    seq: int
    created_at: Any
    actor: str
    action: str
    resource_type: str
    resource_id: str
    data: Any
    reason: str
    prev_hash: str
    hash: str

    def expected_hash(self, *, seq: int | None = None, prev_hash: str | None = None) -> str:
        """The hash of this content at ``seq`` after ``prev_hash`` (its own, by default)."""
        return record_hash(
            seq=self.seq if seq is None else seq,
            created_at=self.created_at,
            actor=self.actor,
            action=self.action,
            resource_type=self.resource_type,
            resource_id=self.resource_id,
            data=self.data,
            reason=self.reason,
            prev_hash=self.prev_hash if prev_hash is None else prev_hash,
        )


@dataclass(frozen=True)
class ChainBreak:
    kind: str  # "edited", "deleted" or "reordered"
    seq: int  # the position in the chain where the break shows
    record_id: int | None  # the record found there (None: nothing is)
    detail: str

    def __str__(self) -> str:
        where = f"seq {self.seq}" + (f" (id {self.record_id})" if self.record_id is not None else "")
        return f"{self.kind} record at {where}: {self.detail}"


@dataclass(frozen=True)
class ChainReport:
    verified: int  # records checked and found intact, from seq 1 on
    head_seq: int  # the last intact record (0: none)
    head_hash: str
    first_break: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def iter_rows(*, using: str = DEFAULT_DB_ALIAS, chunk_size: int = 5000, after_seq: int = 0) -> Iterator[Row]:
    """Every record with ``seq > after_seq`` in chain order, streamed (a server-side cursor on PostgreSQL)."""
    rows = (
        AuditRecord.objects.using(using)
        .filter(seq__gt=after_seq)
        .order_by("seq")
        .values_list(*Row._fields)
        .iterator(chunk_size=chunk_size)
    )
    return (Row._make(row) for row in rows)


def verify_chain(
    *, using: str = DEFAULT_DB_ALIAS, chunk_size: int = 5000, anchor: tuple[int, str] | None = None
) -> ChainReport:
    """Check the whole chain; stop at the first break. ``anchor``: (seq, hash) recorded earlier."""
    expected_seq, prev_hash = 1, GENESIS_HASH
    broken: Row | None = None
    anchor_hash: str | None = None
    rows = iter_rows(using=using, chunk_size=chunk_size)
    with closing(rows):
        for row in rows:
            if row.seq != expected_seq or row.prev_hash != prev_hash or row.expected_hash() != row.hash:
                broken = row
                break
            if anchor is not None and row.seq == anchor[0]:
                anchor_hash = row.hash
            expected_seq, prev_hash = row.seq + 1, row.hash
    verified = expected_seq - 1
    if broken is not None:
        problem = _diagnose(broken, expected_seq, prev_hash, using=using, chunk_size=chunk_size)
        return ChainReport(verified, verified, prev_hash if verified else "", problem)
    return ChainReport(verified, verified, prev_hash if verified else "", _check_anchor(anchor, anchor_hash, verified))


def _check_anchor(anchor: tuple[int, str] | None, found: str | None, head_seq: int) -> ChainBreak | None:
    if anchor is None:
        return None
    seq, expected = anchor
    if head_seq < seq:
        return ChainBreak(
            "deleted",
            head_seq + 1,
            None,
            f"the chain ends at seq {head_seq}, but the anchor names seq {seq}: records were removed from the end",
        )
    if found != expected:
        return ChainBreak(
            "edited", seq, None, f"its hash {found} is not the anchor's {expected}: the chain was rewritten up to here"
        )
    return None


def _diagnose(row: Row, expected_seq: int, prev_hash: str, *, using: str, chunk_size: int) -> ChainBreak:
    """Why ``row`` (found where seq ``expected_seq`` after ``prev_hash`` belongs) breaks the chain."""

    def at(detail: str, kind: str) -> ChainBreak:
        return ChainBreak(kind, expected_seq, row.id, detail)

    if row.seq < expected_seq:
        return at(f"seq {row.seq} appears twice", "edited")

    if row.seq == expected_seq and row.prev_hash == prev_hash:
        # Only the content can be wrong. Did it come from another position (contents swapped)?
        with closing(iter_rows(using=using, chunk_size=chunk_size, after_seq=row.seq)) as later:
            for other in later:
                if row.expected_hash(seq=other.seq, prev_hash=other.prev_hash) == other.hash:
                    return at(
                        f"its content was written as seq {other.seq} (now id {other.id} holds other content)",
                        "reordered",
                    )
        return at("its content does not match its hash", "edited")

    if row.prev_hash == prev_hash and row.expected_hash(seq=expected_seq) == row.hash:
        return at(f"its seq was changed from {expected_seq} to {row.seq}", "edited")
    if row.seq == expected_seq and row.expected_hash(prev_hash=prev_hash) == row.hash:
        return at("its prev_hash was changed", "edited")

    # The record that belongs here is the one chained onto the last good record.
    successor = AuditRecord.objects.using(using).filter(prev_hash=prev_hash).exclude(pk=row.id).first()
    if successor is not None:
        return ChainBreak(
            "reordered",
            expected_seq,
            row.id if row.seq == expected_seq else None,
            f"the record written as seq {expected_seq} (id {successor.pk}) now sits at seq {successor.seq}",
        )
    if row.seq > expected_seq:
        missing = f"seq {expected_seq}" if row.seq == expected_seq + 1 else f"seq {expected_seq} to {row.seq - 1}"
        return ChainBreak(
            "deleted", expected_seq, None, f"{missing} missing (next present: seq {row.seq}, id {row.id})"
        )
    return at(
        f"the record that followed seq {expected_seq - 1} is missing; the records after it were renumbered", "deleted"
    )
