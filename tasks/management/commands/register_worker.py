"""Register or update a worker: ``python manage.py register_worker NAME URL [...]``."""

from __future__ import annotations

import os
from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from audit.services import audit_record
from security.redaction import redact_url
from tasks.models import Worker


class Command(BaseCommand):
    help = "Register a worker (or update the one with that name)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name")
        parser.add_argument("url")
        parser.add_argument(
            "--capability",
            action="append",
            default=[],
            dest="capabilities",
            help="A capability the worker has (repeat).",
        )
        parser.add_argument("--max-concurrency", type=int, default=4)
        parser.add_argument(
            "--token-env", default="", help="Name of an environment variable holding the bearer token (kept off argv)."
        )
        parser.add_argument("--disabled", action="store_true")

    def handle(
        self,
        *args: Any,
        name: str,
        url: str,
        capabilities: list[str],
        max_concurrency: int,
        token_env: str,
        disabled: bool,
        **options: Any,
    ) -> None:
        token = ""
        if token_env:
            token = os.environ.get(token_env, "")
            if not token:
                raise CommandError(f"environment variable {token_env} is empty or unset")
        with transaction.atomic():
            worker = Worker.objects.filter(name=name).first() or Worker(name=name)
            created = worker.pk is None
            worker.base_url = url
            worker.capabilities = sorted(set(capabilities))
            worker.max_concurrency = max_concurrency
            worker.enabled = not disabled
            if token_env:
                worker.token = token
            try:
                worker.full_clean()
            except ValidationError as exc:
                raise CommandError("; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())) from exc
            worker.save()
            audit_record(
                actor="system",
                action="worker.register" if created else "worker.update",
                resource_type="worker",
                resource_id=worker.name,
                data={"url": redact_url(url), "capabilities": worker.capabilities, "enabled": worker.enabled},
            )
        self.stdout.write(f"{'registered' if created else 'updated'} worker {name} at {url}")
