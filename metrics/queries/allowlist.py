"""What a query may read: the one list the SQLite authorizer and the PostgreSQL role are built from.

A table not named here cannot be read at all (sessions, tokens, users' password hashes,
migrations, the stored SSE events); a column in ``HIDDEN`` cannot be read even where its table
can (a worker's token ciphertext and base URL, which may hold credentials of old rows).
"""

from __future__ import annotations

READABLE_TABLES: tuple[str, ...] = (
    "tasks_task",
    "tasks_taskevent",
    "tasks_worker",
    "tasks_verdict",
    "tasks_waiver",
    "tasks_dispatcherprocess",
    "tasks_savedview",
    "audit_auditrecord",
    "chat_chatsession",
    "auth_group",
    "auth_user_groups",
)

# Columns never readable, whatever the query (the rest of their table is).
HIDDEN: dict[str, frozenset[str]] = {
    "tasks_worker": frozenset({"token_ciphertext", "base_url"}),
}

# SQL functions a SQLite query may not call (the authorizer refuses them by name).
REFUSED_SQLITE_FUNCTIONS = frozenset({"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer"})


def readable(table: str, column: str | None = None) -> bool:
    if table not in READABLE_TABLES:
        return False
    return column is None or column not in HIDDEN.get(table, frozenset())
