"""Scan source for placeholders: ``python manage.py check_placeholders [PATH...] [options]``.

CI runs it on this repository with ``--fail-on critical``; a developer can point it at a branch's
changes with ``--changed-since origin/main``. Exit status: 0 when nothing at or above ``--fail-on``
remains, 1 when something does, 2 when the paths or the git revision are unusable.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from tasks.review.gates.placeholders import DEFAULT_EXCLUDED_DIRS, Finding, ScanReport, Severity, scan_paths

FAIL_LEVELS = (Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM)


class Command(BaseCommand):
    help = "Report placeholder comments and stub code; exit 1 when a finding at or above --fail-on remains."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="*", help="Files or directories (default: the repository root).")
        parser.add_argument(
            "--changed-since",
            metavar="REV",
            help="Only files changed since REV (git diff --name-only REV) plus untracked files.",
        )
        parser.add_argument("--format", choices=("text", "json"), default="text", dest="output_format")
        parser.add_argument(
            "--fail-on",
            choices=[str(level) for level in FAIL_LEVELS],
            default=str(Severity.CRITICAL),
            help="Lowest severity that makes the command exit 1 (default: critical).",
        )

    def handle(
        self, *args: Any, paths: list[str], changed_since: str | None, output_format: str, fail_on: str, **options: Any
    ) -> None:
        roots = [Path(p).resolve() for p in paths] or [Path(settings.BASE_DIR)]
        missing = [str(root) for root in roots if not root.exists()]
        if missing:
            raise CommandError(f"no such file or directory: {', '.join(missing)}", returncode=2)
        targets = _changed_files(roots, changed_since) if changed_since else roots
        report = scan_paths(targets, relative_to=Path.cwd())

        # The exit decision works on this list, so a filter (waivers, say) slots in between.
        findings = report.findings
        blocking = [f for f in findings if f.severity.rank >= Severity(fail_on).rank]

        if output_format == "json":
            self.stdout.write(json.dumps(report.to_dict(), indent=2))
        else:
            self._write_text(report, findings)
        if blocking:
            self.stderr.write(f"check_placeholders: {len(blocking)} finding(s) at or above {fail_on}")
            raise SystemExit(1)

    def _write_text(self, report: ScanReport, findings: list[Finding]) -> None:
        for f in findings:
            self.stdout.write(f"{f.file}:{f.line}: {f.severity} {f.category}: {f.text}")
        counts = ", ".join(f"{severity} {n}" for severity, n in report.counts.items())
        self.stdout.write(
            f"{len(findings)} finding(s) in {report.files_scanned} file(s) ({counts}); score {report.score:.2f}"
        )


def _changed_files(roots: list[Path], rev: str) -> list[Path]:
    """Existing files under ``roots`` changed since ``rev`` in their git work tree, plus untracked ones.

    Deleted files drop out (nothing left to scan); files in excluded directories (a committed
    ``var/`` fixture, say) drop out too, as they would in a full scan.
    """
    if rev.startswith("-"):
        raise CommandError(f"not a revision: {rev!r}", returncode=2)
    changed: set[Path] = set()
    for root in roots:
        top = Path(_git(root if root.is_dir() else root.parent, "rev-parse", "--show-toplevel").strip())
        names = _git(top, "diff", "--name-only", "-z", rev, "--").split("\0")
        names += _git(top, "ls-files", "--others", "--exclude-standard", "-z").split("\0")
        for name in filter(None, names):
            path = (top / name).resolve()
            inside = path == root or root in path.parents
            if inside and path.is_file() and not DEFAULT_EXCLUDED_DIRS.intersection(Path(name).parts[:-1]):
                changed.add(path)
    return sorted(changed)


def _git(cwd: Path, *args: str) -> str:
    git = shutil.which("git")
    if git is None:
        raise CommandError("--changed-since needs git on PATH", returncode=2)
    # Fixed argv and no shell; the one user-supplied argument (the revision) cannot start with "-".
    result = subprocess.run([git, *args], cwd=cwd, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise CommandError(f"git {' '.join(args)}: {result.stderr.strip()}", returncode=2)
    return result.stdout
