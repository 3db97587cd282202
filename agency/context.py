"""What every command shares: the invocation's state (server, token, ``--json``) and option helpers."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import click

from agency import config
from agency.client import Client
from agency.render import print_json


@dataclass
class State:
    url_option: str | None = None
    json: bool = False
    timeout: float = 30.0
    _client: Client | None = field(default=None, repr=False)

    def settings(self) -> config.Settings:
        return config.resolve(self.url_option)

    def client(self) -> Client:
        if self._client is None:
            settings = self.settings()
            self._client = Client(settings.url, settings.token, timeout=self.timeout)
        return self._client

    def output(self, data: Any, human: Callable[[Any], str | None]) -> None:
        """The server's JSON under ``--json``; else what ``human`` makes of it."""
        if self.json:
            print_json(data)
            return
        text = human(data)
        if text:
            click.echo(text)


pass_state = click.make_pass_decorator(State, ensure=True)


def _set_json(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        ctx.ensure_object(State).json = True


def json_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--json`` on a subcommand (the same as ``agency --json <command>``)."""
    return click.option(
        "--json",
        "json_flag",
        is_flag=True,
        expose_value=False,
        callback=_set_json,
        help="Print the server's JSON (one object per line for streams) instead of text.",
    )(f)


class TaskId(click.ParamType):
    """A full task id (the API has no lookup by prefix, so a prefix would only ever be a 404)."""

    name = "TASK_ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return str(uuid.UUID(str(value).strip()))
        except ValueError:
            self.fail(
                f"{value!r} is not a task id (the full UUID, e.g. 3f2a9c1e-...; the API takes no prefixes)", param, ctx
            )


class ResourceId(click.ParamType):
    """A full UUID of a waiver or a saved query."""

    name = "ID"

    def __init__(self, what: str) -> None:
        self.what = what

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return str(uuid.UUID(str(value).strip()))
        except ValueError:
            self.fail(f"{value!r} is not a {self.what} id (a full UUID)", param, ctx)


TASK_ID = TaskId()


def paging_options(default_size: int = 50) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--page-size``, ``--cursor`` and ``--all`` for the API's keyset-paged lists."""

    def decorate(f: Callable[..., Any]) -> Callable[..., Any]:
        f = click.option("--all", "all_pages", is_flag=True, help="Follow every page to the end.")(f)
        f = click.option("--cursor", metavar="CURSOR", help="Start at this page (printed after a page that has more).")(
            f
        )
        f = click.option(
            "--page-size", type=click.IntRange(1, 500), default=default_size, show_default=True, help="Rows per page."
        )(f)
        return f

    return decorate


def fetch_pages(
    client: Client, path: str, params: dict[str, Any], *, cursor: str | None, all_pages: bool
) -> tuple[dict[str, Any], str | None]:
    """One page as the server sent it (``{"results", "next"}``), or with ``all_pages`` every
    page merged into one (``next`` null); and the cursor of the page after, if any.

    The cursor is taken out of the server's ``next`` URL and sent to our own base URL, so a
    server behind a proxy that builds ``next`` with its internal host still pages right.
    """
    results: list[Any] = []
    while True:
        page = client.get(path, **params, cursor=cursor)
        results += page.get("results") or []
        next_url = page.get("next")
        cursor = parse_qs(urlsplit(next_url).query).get("cursor", [None])[0] if next_url else None
        if not all_pages or not cursor:
            return {**page, "results": results, "next": None if all_pages else next_url}, cursor


def more_hint(cursor: str | None) -> None:
    """Say on stderr how to read the next page (stdout stays the table)."""
    if cursor:
        click.echo(f"(more: repeat with --cursor {cursor}, or use --all)", err=True)
