"""Register or update a worker: ``python manage.py register_worker NAME URL [...]``.

A thin door over :mod:`tasks.workers`: the command acts as the ``system`` principal, and
the services validate, write and audit exactly as for the admin and the API.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from config.errors import DomainError
from security import egress, keystore
from security.principals import SYSTEM
from security.redaction import redact_url
from tasks import workers

# Where this door takes a secret: the token is read from the environment so it stays off argv
# (and out of shell history and ``ps``).
CREDENTIAL_OPTION = "--token-env VARIABLE (the name of an environment variable holding the token)"


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
        parser.add_argument(
            "--token-secret",
            default="",
            help="Name of a keystore secret holding the bearer token (KEYSTORE_URL; the read is audited).",
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
        token_secret: str,
        disabled: bool,
        **options: Any,
    ) -> None:
        token: str | None = None
        if token_env and token_secret:
            raise CommandError("give the token one way: --token-env or --token-secret, not both")
        if token_secret:
            try:
                token = keystore.secret(token_secret, reason=f"token of worker {name}", actor=SYSTEM.actor)
            except keystore.KeystoreError as exc:
                raise CommandError(f"--token-secret: {exc}") from exc
        if token_env:
            token = os.environ.get(token_env, "")
            if not token:
                raise CommandError(f"environment variable {token_env} is empty or unset")
        settings: dict[str, Any] = {
            "base_url": url,
            "capabilities": capabilities,
            "max_concurrency": max_concurrency,
            "enabled": not disabled,
        }
        try:
            if workers.worker_name_taken(name):
                before = workers.worker_get(actor=SYSTEM, name=name).updated_at
                worker = workers.worker_update(actor=SYSTEM, name=name, token=token, **settings)
                outcome = "unchanged" if worker.updated_at == before else "updated"
            else:
                worker = workers.worker_register(actor=SYSTEM, name=name, token=token or "", **settings)
                outcome = "registered"
        except DomainError as exc:
            raise CommandError(_describe(exc, url)) from exc
        self.stdout.write(f"{outcome} worker {worker.name} at {redact_url(worker.base_url)}")


def _describe(exc: DomainError, url: str) -> str:
    """The error as one line of ``field: message`` parts, in this command's terms."""
    if not exc.fields:
        return str(exc)
    parts = []
    for field, errors in exc.fields.items():
        for error in errors if isinstance(errors, list) else [errors]:
            parts.append(f"{field}: {_in_cli_terms(error, url)}")
    return "; ".join(parts)


def _in_cli_terms(error: Any, url: str) -> str:
    # The services point a URL with credentials to the API's token field; here it is an option.
    if getattr(error, "code", None) == egress.CREDENTIALS:
        try:
            egress.check_worker_url(url)
        except egress.URLRefused as refusal:
            return workers.credentials_message(refusal.message, where=CREDENTIAL_OPTION)
    return str(error)
