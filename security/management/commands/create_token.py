"""Issue an API token: ``python manage.py create_token USERNAME [--name NAME]``.

The key is printed once, alone on stdout (``TOKEN=$(manage.py create_token admin)``); the
database keeps only its digest (security.tokens), so a lost key is revoked and replaced,
never looked up again.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from security.principals import SYSTEM
from security.tokens import token_issue


class Command(BaseCommand):
    help = "Issue an API token for a user and print its key (shown this once; only a digest is stored)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("username")
        parser.add_argument("--name", default="", help="What the token is for (shown in the console).")

    def handle(self, *args: Any, username: str, name: str, **options: Any) -> None:
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user named {username!r}")
        if not user.is_active:
            raise CommandError(f"user {username!r} is inactive: its tokens would be refused")
        token, key = token_issue(user=user, actor=SYSTEM.actor, name=name)
        self.stderr.write(f"token {token.prefix}… for {username}; the key is shown once:")
        self.stdout.write(key)
