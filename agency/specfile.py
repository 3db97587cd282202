"""Working specs for ``agency submit``: read from a YAML or JSON file, adjusted by flags.

The CLI checks only what it must to build a request (the file parses, it is a mapping, a
``key=value`` has its ``=``); the server validates the spec itself and its field errors
are what the user sees, so the rules live in one place.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
import yaml

from agency.errors import UsageProblem


def load_spec(source: str) -> dict[str, Any]:
    """The spec in ``source`` (a path, or ``-`` for stdin), YAML or JSON (JSON is YAML too)."""
    if source == "-":
        text = click.get_text_stream("stdin").read()
        name = "stdin"
    else:
        path = Path(source)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise UsageProblem(f"cannot read the spec file {source}: {exc.strerror}") from exc
        name = source
    try:
        # safe_load: a spec is data; YAML tags that build Python objects are refused.
        # JSON first when it looks like JSON: YAML refuses a tab where JSON allows one.
        as_json = name.endswith(".json") or text.lstrip().startswith("{")
        data = json.loads(text) if as_json else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise UsageProblem(f"the spec file {name} does not parse: {_first_line(exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageProblem(
            f"the spec file {name} must hold a mapping (title: ..., input: ...), not a {type(data).__name__}"
        )
    return _jsonable(data, name)


def _first_line(exc: Exception) -> str:
    return " ".join(str(exc).split())[:300]


def _jsonable(value: Any, name: str) -> Any:
    """YAML values as JSON will send them: dates as ISO text, keys as strings."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v, name) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v, name) for v in value]
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes | set):
        raise UsageProblem(f"the spec file {name} holds a {type(value).__name__}, which JSON cannot carry")
    return value


def parse_value(raw: str) -> Any:
    """A flag's value as JSON when it is JSON (``5``, ``true``, ``[1, 2]``), else the text itself."""
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_pairs(pairs: tuple[str, ...], option: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise UsageProblem(f"{option} takes key=value, got {pair!r}")
        values[key.strip()] = parse_value(raw)
    return values


def parse_json_object(raw: str, option: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise UsageProblem(f"{option} must be a JSON object: {_first_line(exc)}") from exc
    if not isinstance(value, dict):
        raise UsageProblem(f"{option} must be a JSON object, not {type(value).__name__}")
    return value


def build_spec(
    base: dict[str, Any],
    *,
    fields: dict[str, Any],
    input_json: str | None,
    kind: str | None,
    params: tuple[str, ...],
    scope_in: tuple[str, ...],
    scope_out: tuple[str, ...],
    max_files: int | None,
    max_lines: int | None,
    capabilities: tuple[str, ...],
) -> dict[str, Any]:
    """``base`` (the file's spec, or empty) with every flag that was given laid over it."""
    spec = dict(base)
    spec.update({k: v for k, v in fields.items() if v is not None})
    if input_json is not None:
        spec["input"] = parse_json_object(input_json, "--input")
    if kind is not None or params:
        task_input = dict(spec.get("input") or {}) if isinstance(spec.get("input", {}), dict) else {}
        if kind is not None:
            task_input["kind"] = kind
        task_input.update(parse_pairs(params, "--param"))
        spec["input"] = task_input
    if scope_in or scope_out:
        scope = dict(spec.get("scope") or {}) if isinstance(spec.get("scope", {}), dict) else {}
        if scope_in:
            scope["in"] = list(scope_in)
        if scope_out:
            scope["out"] = list(scope_out)
        spec["scope"] = scope
    if max_files is not None or max_lines is not None:
        budget = dict(spec.get("change_budget") or {}) if isinstance(spec.get("change_budget", {}), dict) else {}
        if max_files is not None:
            budget["max_files"] = max_files
        if max_lines is not None:
            budget["max_lines"] = max_lines
        spec["change_budget"] = budget
    if capabilities:
        spec["capabilities"] = list(capabilities)
    return spec
