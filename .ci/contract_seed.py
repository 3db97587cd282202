"""Set-up of the API contract phase (.ci/run, phase 5b): the admin account and its token, and a waiver.

Prints ``<token> <waiver id>`` on stdout. The waiver is requested by an operator, not the
admin, so that the admin's approve/reject/revoke reach the service (the four-eyes rule
refuses a requester deciding their own waiver) instead of stopping at 403; schemathesis is
given its id, since no waiver it creates itself can name a valid ``expires_at`` (see
.ci/schemathesis.toml).
"""

from __future__ import annotations

import io
import os
import sys
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.contrib.auth.models import Group  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.utils import timezone  # noqa: E402

from security.roles import OPERATOR  # noqa: E402
from security.tokens import token_issue  # noqa: E402
from tasks.models import Gate, WaiverReason  # noqa: E402
from tasks.review.waivers import waiver_request  # noqa: E402


def main() -> None:
    call_command("ensure_admin", stdout=io.StringIO())
    User = get_user_model()
    admin = User.objects.get(username=os.environ.get("ADMIN_USERNAME", "admin"))
    _, key = token_issue(user=admin, actor="system", name="contract tests")
    operator, created = User.objects.get_or_create(username="ci-operator")
    if created:
        operator.set_unusable_password()
        operator.save()
    operator.groups.add(Group.objects.get(name=OPERATOR))
    waiver = waiver_request(
        actor=operator,
        title="Contract test waiver",
        reason=WaiverReason.OTHER,
        gates=[Gate.PLACEHOLDERS],
        justification="Seeded for the API contract test of CI.",
        expires_at=timezone.now() + timedelta(days=30),
    )
    print(key, waiver.pk)


if __name__ == "__main__":
    main()
