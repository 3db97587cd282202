"""The ``agency`` command: its group, global options, and the one place errors become exit codes."""

from __future__ import annotations

import json
import os
import sys
from typing import Any, NoReturn

import click

from agency import __version__
from agency.commands import review, system, tasks
from agency.context import State
from agency.errors import EXIT_CODE_HELP, CliError, ExitCode


def _epilog() -> str:
    codes = "\n".join(f"  {int(code):<3} {text}" for code, text in EXIT_CODE_HELP)
    return (
        "\b\nConfiguration (flags, then the environment, then the config file):\n"
        "  AGENCY_URL     the server (default: the one `agency login` stored, else http://127.0.0.1:8000)\n"
        "  AGENCY_TOKEN   an API token (make one: python manage.py create_token USER)\n"
        "  AGENCY_CONFIG  the config file (default ~/.config/agency/config.json, mode 0600)\n"
        "\n\b\nExit codes:\n" + codes + "\n"
        "  130 interrupted (Ctrl-C)\n"
        "\nEvery command takes --json (here or after the command). Docs: docs/cli.md"
    )


class AgencyGroup(click.Group):
    """Commands listed in the order of a task's life, with aliases (``abort`` is ``cancel``)."""

    aliases = {"abort": "cancel"}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, self.aliases.get(cmd_name, cmd_name))

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        super().format_commands(ctx, formatter)
        with formatter.section("Aliases"):
            formatter.write_dl([(alias, f"= {name}") for alias, name in self.aliases.items()])


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).json = True


@click.group(
    cls=AgencyGroup,
    epilog=_epilog(),
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option("--url", metavar="URL", help="The server's base URL (overrides AGENCY_URL and the config file).")
@click.option(
    "--json",
    "json_flag",
    is_flag=True,
    expose_value=False,
    callback=_set_json,
    help="Print the server's JSON instead of text.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 3600),
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for each answer.",
)
@click.version_option(__version__, "--version", prog_name="agency")
@click.pass_context
def cli(ctx: click.Context, url: str | None, timeout: float) -> None:
    """The command-line client of Agent Agency: submit, follow and steer tasks.

    \b
    A first session:
      export AGENCY_URL=http://127.0.0.1:8000
      agency login                       # paste a token from manage.py create_token
      agency submit --title "Sleep five seconds" --kind sleep --param seconds=5 --watch
      agency list --state running
      agency cancel <task-id> --reason "not needed"
    """
    state = ctx.ensure_object(State)
    state.url_option = url
    state.timeout = timeout


for command in [*tasks.COMMANDS, *review.COMMANDS, *system.COMMANDS]:
    cli.add_command(command)


def report(error: CliError, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(error.as_dict(), ensure_ascii=False), err=True)
        return
    click.echo(f"agency: {error.message}", err=True)
    for line in error.details:
        click.echo(f"  {line}", err=True)


def main(argv: list[str] | None = None) -> NoReturn:
    """The console script: run the command, and exit with the code the table in --help gives."""
    state = State()
    code: Any
    try:
        code = cli.main(args=argv, prog_name="agency", standalone_mode=False, obj=state)
    except CliError as error:
        report(error, state.json)
        code = error.exit_code
    except click.exceptions.Abort:
        click.echo("agency: interrupted", err=True)
        code = ExitCode.INTERRUPTED
    except click.ClickException as error:
        error.show()
        code = ExitCode.USAGE  # click's own: usage errors, and files it could not open
    except BrokenPipeError:
        # `agency list | head`: the reader left; say nothing more to it.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        code = ExitCode.OK
    sys.exit(int(code or 0))
