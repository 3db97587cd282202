"""Every command's help is complete: a summary, a description, each option, and --json on each."""

from __future__ import annotations

import subprocess
import sys
import tomllib

import click
import pytest

from agency import __version__
from agency.cli import cli
from agency.errors import EXIT_CODE_HELP
from tests.browser.support import ROOT


def walk(command: click.Command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    found = [(path, command)]
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            found += walk(sub, (*path, name))
    return found


COMMANDS = walk(cli)
LEAVES = [(path, c) for path, c in COMMANDS if not isinstance(c, click.Group)]


def help_text(path: tuple[str, ...]) -> str:
    with click.Context(cli, info_name="agency") as ctx:
        for name in path:
            command = ctx.command.commands[name]  # type: ignore[attr-defined]
            ctx = click.Context(command, info_name=name, parent=ctx)
        return ctx.get_help()


def test_the_tree_has_every_command_of_the_issue():
    names = {" ".join(path) for path, _ in LEAVES}
    assert names >= {
        "submit",
        "list",
        "status",
        "watch",
        "events",
        "pause",
        "resume",
        "cancel",
        "retry",
        "override approve",
        "override reject",
        "override request-changes",
        "waiver list",
        "waiver request",
        "waiver approve",
        "waiver reject",
        "waiver revoke",
        "provenance trailer",
        "provenance verify",
        "audit search",
        "workers list",
        "health",
        "queries list",
        "queries run",
        "login",
        "logout",
    }


@pytest.mark.parametrize(("path", "command"), COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_each_help_has_a_summary_a_description_and_every_option(path, command):
    text = help_text(path)

    assert (command.help or "").strip(), f"{path} has no help"
    assert command.get_short_help_str(limit=80).strip()
    assert f"Usage: agency {' '.join(path)}".rstrip() in text
    for param in command.params:
        if isinstance(param, click.Option):
            assert param.help, f"{path}: {param.opts} has no help"
            for opt in param.opts:
                assert opt in text, f"{path}: {opt} missing from the help"
        else:
            assert param.human_readable_name in text


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=lambda v: " ".join(v) if isinstance(v, tuple) else "")
def test_every_command_takes_json(path, command):
    assert any("--json" in p.opts for p in command.params if isinstance(p, click.Option)), path


def test_the_top_level_help_lists_the_exit_codes_the_environment_and_the_alias():
    result = subprocess.run(
        [sys.executable, "-m", "agency", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )

    assert result.returncode == 0
    for code, text in EXIT_CODE_HELP:
        assert f"{int(code):<3} {text}" in result.stdout
    for name in ("AGENCY_URL", "AGENCY_TOKEN", "AGENCY_CONFIG"):
        assert name in result.stdout
    assert "abort  = cancel" in result.stdout


def test_abort_is_an_alias_of_cancel_and_unknown_commands_are_usage_errors():
    abort = subprocess.run(
        [sys.executable, "-m", "agency", "abort", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    unknown = subprocess.run(
        [sys.executable, "-m", "agency", "cancle"], cwd=ROOT, capture_output=True, text=True, timeout=30
    )

    assert abort.returncode == 0
    assert "Cancel a task (alias: abort)." in abort.stdout
    assert unknown.returncode == 2
    assert "No such command 'cancle'" in unknown.stderr


def test_the_version_is_the_projects():
    with (ROOT / "pyproject.toml").open("rb") as f:
        assert tomllib.load(f)["project"]["version"] == __version__
