"""The hash chain: seq, prev_hash and hash on every record, existing records linked in id order.

The columns are added nullable, filled, then made NOT NULL (and seq UNIQUE), so that a
database holding records from before the chain gets a valid chain over them. The search
indexes are replaced by ones that end in the API's keyset order (created_at, id).
"""

from django.db import migrations, models

from audit.chain import GENESIS_HASH, record_hash


def link_existing_records(apps, schema_editor):
    AuditRecord = apps.get_model("audit", "AuditRecord")
    records = AuditRecord.objects.using(schema_editor.connection.alias)
    prev_hash = GENESIS_HASH
    batch = []
    for seq, record in enumerate(records.order_by("id").iterator(chunk_size=2000), start=1):
        record.seq = seq
        record.prev_hash = prev_hash
        record.hash = prev_hash = record_hash(
            seq=seq,
            created_at=record.created_at,
            actor=record.actor,
            action=record.action,
            resource_type=record.resource_type,
            resource_id=record.resource_id,
            data=record.data,
            reason=record.reason,
            prev_hash=record.prev_hash,
        )
        batch.append(record)
        if len(batch) == 1000:
            records.bulk_update(batch, ["seq", "prev_hash", "hash"])
            batch = []
    if batch:
        records.bulk_update(batch, ["seq", "prev_hash", "hash"])


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditrecord",
            name="seq",
            field=models.PositiveBigIntegerField(editable=False, null=True),
        ),
        migrations.AddField(
            model_name="auditrecord",
            name="prev_hash",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.AddField(
            model_name="auditrecord",
            name="hash",
            field=models.CharField(editable=False, max_length=64, null=True),
        ),
        migrations.RunPython(link_existing_records, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="auditrecord",
            name="seq",
            field=models.PositiveBigIntegerField(editable=False, unique=True),
        ),
        migrations.AlterField(
            model_name="auditrecord",
            name="prev_hash",
            field=models.CharField(editable=False, max_length=64),
        ),
        migrations.AlterField(
            model_name="auditrecord",
            name="hash",
            field=models.CharField(editable=False, max_length=64),
        ),
        migrations.AddConstraint(
            model_name="auditrecord",
            constraint=models.CheckConstraint(condition=models.Q(("seq__gte", 1)), name="audit_seq_from_one"),
        ),
        migrations.RemoveIndex(model_name="auditrecord", name="audit_resource_idx"),
        migrations.RemoveIndex(model_name="auditrecord", name="audit_action_idx"),
        migrations.RemoveIndex(model_name="auditrecord", name="audit_actor_idx"),
        migrations.RemoveIndex(model_name="auditrecord", name="audit_created_idx"),
        migrations.AddIndex(
            model_name="auditrecord",
            index=models.Index(fields=["resource_type", "resource_id", "-created_at", "-id"], name="audit_resource_time_idx"),
        ),
        migrations.AddIndex(
            model_name="auditrecord",
            index=models.Index(fields=["action", "-created_at", "-id"], name="audit_action_time_idx"),
        ),
        migrations.AddIndex(
            model_name="auditrecord",
            index=models.Index(fields=["actor", "-created_at", "-id"], name="audit_actor_time_idx"),
        ),
        migrations.AddIndex(
            model_name="auditrecord",
            index=models.Index(fields=["-created_at", "-id"], name="audit_time_idx"),
        ),
    ]
