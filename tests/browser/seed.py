"""Seed the browser tests' server: one user per role, and an API token for each.

Run as a script with the project's settings (the test process itself never opens the
database: Playwright's sync API keeps an event loop running in its thread, where Django's ORM
raises SynchronousOnlyOperation). Prints ``{"<role>": {"username", "password", "token"}}`` as
JSON on stdout.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402

from security.roles import ADMIN, OPERATOR, VIEWER  # noqa: E402
from security.tokens import token_issue  # noqa: E402

# One persona per role, named as in tests/conftest.py.
PERSONAS = {VIEWER: "vera", OPERATOR: "otto", ADMIN: "ada"}


def main() -> None:
    User = get_user_model()
    seeded = {}
    for role, username in PERSONAS.items():
        password = f"pw-{username}-browser"
        user, _ = User.objects.get_or_create(username=username)
        user.set_password(password)
        user.save()
        # The groups come from a migration; a role this script invented would prove nothing.
        user.groups.add(Group.objects.get(name=role))
        _, key = token_issue(user=user, actor="system", name="browser tests")
        seeded[role] = {"username": username, "password": password, "token": key}
    json.dump(seeded, sys.stdout)


if __name__ == "__main__":
    main()
