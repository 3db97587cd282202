"""Make sure an administrator account exists, and say how to log in.

The password comes from ``ADMIN_PASSWORD`` when set; otherwise one is
generated on first run and kept (mode 0600) in ``DATA_DIR/admin-password`` so
later runs can print it again. Nothing is changed for an existing account
unless ``ADMIN_PASSWORD`` is given.
"""

from __future__ import annotations

import os
import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand
from django.db import transaction

from security.roles import ADMIN


class Command(BaseCommand):
    help = "Create the admin account if missing and print how to log in."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--username", default=os.environ.get("ADMIN_USERNAME", "admin"))
        parser.add_argument("--url", default="http://127.0.0.1:8000/", help="Base URL to print.")

    def handle(self, *args: Any, username: str, url: str, **options: Any) -> None:
        password_file = settings.DATA_DIR / "admin-password"
        given = os.environ.get("ADMIN_PASSWORD", "")
        User = get_user_model()
        with transaction.atomic():
            user = User.objects.filter(username=username).first()
            created = user is None
            if created:
                password = given or secrets.token_urlsafe(12)
                user = User.objects.create_superuser(username=username, email="", password=password)
                user.groups.add(Group.objects.get(name=ADMIN))
                if not given:
                    # 0600 from its creation: the password is never readable by others.
                    password_file.unlink(missing_ok=True)
                    fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as handle:
                        handle.write(password + "\n")
            elif given:
                user.set_password(given)
                user.save(update_fields=["password"])
        if given:
            shown = "the value of ADMIN_PASSWORD"
        elif password_file.exists():
            shown = password_file.read_text().strip()
        else:
            shown = "(unchanged; set ADMIN_PASSWORD to reset it)"
        base = url.rstrip("/")
        self.stdout.write(
            f"\nAgent Agency is starting at {base}/\n"
            f"  Log in at:        {base}/   user: {username}   password: {shown}\n"
            f"  Operator console: {base}/admin/ (the same account)\n"
            f"  API:              {base}/api/v1/tasks   docs: {base}/api/docs/\n"
            f"  API token:        .venv/bin/python manage.py create_token {username}\n"
        )
