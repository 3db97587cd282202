"""A trigram index for the task list's ``q`` search on PostgreSQL.

``title__icontains`` compiles to ``UPPER(title::text) LIKE UPPER(%s)``; a GIN
trigram index on that expression serves it on millions of rows. SQLite (the
embedded default) has no equivalent and scans, which is fine at its scale.
pg_trgm is a trusted extension (PostgreSQL 13+), so the database owner may
create it without superuser rights.
"""

from django.db import migrations


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    schema_editor.execute(
        "CREATE INDEX IF NOT EXISTS task_title_trgm_idx ON tasks_task USING gin (UPPER(title::text) gin_trgm_ops)"
    )


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute("DROP INDEX IF EXISTS task_title_trgm_idx")


class Migration(migrations.Migration):
    dependencies = [("tasks", "0001_initial")]
    operations = [migrations.RunPython(create_index, drop_index)]
