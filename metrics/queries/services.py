"""Saved queries: create, change, delete, run. Viewing and running need the viewer role; changing, admin.

Every run is recorded (``QueryRun``) and audited (``query.run``: who, which query, parameters,
duration, rows, outcome) in one transaction, refused and timed-out runs included; the refusal
is raised after it is recorded.
"""

from __future__ import annotations

import datetime
import re
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from audit.services import audit_record
from config.errors import Conflict, InvalidInput, NotFound
from metrics.models import ParameterType, QueryRun, RunKind, RunOutcome, SavedQuery
from metrics.queries import readonly
from metrics.queries.errors import QueryRefused, QueryTimedOut
from security import roles
from security.principals import require

MAX_PAGE = 500
MAX_PARAMETERS = 20
EXPORT_CHUNK = 1000  # rows a piece of a CSV export (one FETCH on PostgreSQL)
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

QUERY_CREATE, QUERY_UPDATE, QUERY_DELETE, QUERY_RUN = "query.create", "query.update", "query.delete", "query.run"


class QueryNotFound(NotFound):
    code = "query_not_found"


class DuplicateName(Conflict):
    code = "query_name_taken"


def queries_visible(*, actor: Any) -> QuerySet[SavedQuery]:
    """The queries ``actor`` may see: their own, the shared ones, and all for an admin."""
    acting = require(actor, roles.can_view, "read saved queries")
    queryset = SavedQuery.objects.select_related("owner")
    if roles.is_admin(acting):
        return queryset
    return queryset.filter(Q(shared=True) | Q(owner=acting.user))


def query_get(*, actor: Any, query_id: Any) -> SavedQuery:
    try:
        return queries_visible(actor=actor).get(pk=query_id)
    except (SavedQuery.DoesNotExist, ValueError, TypeError):
        raise QueryNotFound(f"No saved query {query_id}.") from None


def _clean(name: Any, description: Any, sql: Any, parameters: Any, shared: Any) -> dict[str, Any]:
    errors: dict[str, list[str]] = {}
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        errors["name"] = ["Required, at most 200 characters."]
    if not isinstance(description, str) or len(description) > 5000:
        errors["description"] = ["At most 5000 characters."]
    if not isinstance(sql, str) or not sql.strip() or len(sql) > readonly.MAX_SQL_LENGTH or "\x00" in sql:
        errors["sql"] = [f"Required, at most {readonly.MAX_SQL_LENGTH} characters."]
    if not isinstance(shared, bool):
        errors["shared"] = ["Must be true or false."]
    clean_params: list[dict[str, Any]] = []
    if not isinstance(parameters, list) or len(parameters) > MAX_PARAMETERS:
        errors["parameters"] = [f"A list of at most {MAX_PARAMETERS} parameters."]
    else:
        seen = set()
        for index, item in enumerate(parameters):
            where = f"parameters[{index}]"
            if not isinstance(item, dict) or set(item) - {"name", "type", "default"}:
                errors[where] = ["An object with name, type and an optional default."]
                continue
            pname, ptype = item.get("name"), item.get("type", ParameterType.TEXT)
            if not isinstance(pname, str) or not _NAME.match(pname) or pname in seen:
                errors[f"{where}.name"] = ["A unique name of letters, digits and _ (not starting with a digit)."]
                continue
            if ptype not in ParameterType.values:
                errors[f"{where}.type"] = [f"One of {', '.join(ParameterType.values)}."]
                continue
            seen.add(pname)
            clean = {"name": pname, "type": ptype}
            if "default" in item:
                try:
                    clean["default"] = coerce(ptype, item["default"])
                except ValueError as exc:
                    errors[f"{where}.default"] = [str(exc)]
                    continue
                if isinstance(clean["default"], datetime.date):
                    clean["default"] = clean["default"].isoformat()
            clean_params.append(clean)
    if errors:
        raise InvalidInput(fields=errors)
    return {
        "name": name.strip(),
        "description": description,
        "sql": sql,
        "parameters": clean_params,
        "shared": shared,
    }


def coerce(ptype: str, value: Any) -> Any:
    """``value`` as a parameter of ``ptype`` (form values arrive as text); ValueError says why not."""
    if ptype == ParameterType.TEXT:
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise ValueError("Must be text.")
        return str(value)
    if ptype == ParameterType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ValueError("Must be a whole number.")
        try:
            return int(value)
        except ValueError:
            raise ValueError("Must be a whole number.") from None
    if ptype == ParameterType.NUMBER:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            raise ValueError("Must be a number.")
        try:
            number = float(value)
        except ValueError:
            raise ValueError("Must be a number.") from None
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError("Must be a finite number.")
        return number
    if ptype == ParameterType.BOOLEAN:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in {"true", "false", "1", "0"}:
            return value.lower() in {"true", "1"}
        raise ValueError("Must be true or false.")
    if ptype == ParameterType.DATE:
        if isinstance(value, str):
            try:
                return datetime.date.fromisoformat(value)
            except ValueError:
                pass
        raise ValueError("Must be a date, YYYY-MM-DD.")
    raise ValueError(f"Unknown type {ptype}.")


def query_create(
    *, actor: Any, name: Any, sql: Any, description: Any = "", parameters: Any = None, shared: Any = False
):
    acting = require(actor, roles.is_admin, "save queries")
    fields = _clean(name, description, sql, parameters if parameters is not None else [], shared)
    with transaction.atomic():
        if SavedQuery.objects.filter(owner=acting.user, name=fields["name"]).exists():
            raise DuplicateName("You already have a query with this name.")
        query = SavedQuery.objects.create(owner=acting.user, **fields)
        audit_record(
            actor=acting.actor,
            action=QUERY_CREATE,
            resource_type="query",
            resource_id=query.pk,
            data={"name": query.name, "sql": query.sql, "parameters": query.parameters, "shared": query.shared},
        )
    return query


def query_update(*, actor: Any, query_id: Any, **changes: Any) -> SavedQuery:
    acting = require(actor, roles.is_admin, "change saved queries")
    unknown = sorted(set(changes) - {"name", "description", "sql", "parameters", "shared"})
    if unknown:
        raise InvalidInput(fields={unknown[0]: ["Unknown field."]})
    with transaction.atomic():
        query = query_get(actor=acting, query_id=query_id)
        query = SavedQuery.objects.select_for_update().get(pk=query.pk)
        current = {k: getattr(query, k) for k in ("name", "description", "sql", "parameters", "shared")}
        fields = _clean(**(current | changes))
        clash = SavedQuery.objects.filter(owner=query.owner, name=fields["name"]).exclude(pk=query.pk)
        if clash.exists():
            raise DuplicateName("The owner already has a query with this name.")
        changed = {k: v for k, v in fields.items() if current[k] != v}
        if changed:
            for key, value in changed.items():
                setattr(query, key, value)
            query.updated_at = timezone.now()
            query.save()
            audit_record(
                actor=acting.actor, action=QUERY_UPDATE, resource_type="query", resource_id=query.pk, data=changed
            )
    return query


def query_delete(*, actor: Any, query_id: Any) -> None:
    acting = require(actor, roles.is_admin, "delete saved queries")
    with transaction.atomic():
        query = query_get(actor=acting, query_id=query_id)
        audit_record(
            actor=acting.actor,
            action=QUERY_DELETE,
            resource_type="query",
            resource_id=query.pk,
            data={"name": query.name, "sql": query.sql},
        )
        query.delete()


def query_run(*, actor: Any, query_id: Any, params: Any = None, limit: int = 100, offset: int = 0) -> readonly.Page:
    """Run a saved query read-only; the run is recorded and audited whatever its outcome."""
    acting = require(actor, roles.can_view, "run saved queries")
    query = query_get(actor=acting, query_id=query_id)
    values = bind(query, params if params is not None else {})
    if not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
        raise InvalidInput(fields={"limit": [f"A whole number from 1 to {MAX_PAGE}."]})
    if not isinstance(offset, int) or offset < 0 or offset > 100_000:
        raise InvalidInput(fields={"offset": ["A whole number from 0 to 100000."]})
    started = timezone.now()
    try:
        page = readonly.run(query.sql, values, limit=limit, offset=offset)
    except (QueryRefused, QueryTimedOut) as failure:
        _record(acting, query, values, started, _since(started), 0, _outcome(failure), str(failure), RunKind.PAGE)
        raise
    _record(acting, query, values, started, page.duration_ms, len(page.rows), RunOutcome.OK, "", RunKind.PAGE)
    return page


def _since(started: datetime.datetime) -> float:
    return round((timezone.now() - started).total_seconds() * 1000, 2)


def _outcome(failure: Exception) -> str:
    return RunOutcome.TIMEOUT if isinstance(failure, QueryTimedOut) else RunOutcome.REFUSED


def _record(
    acting: Any,
    query: SavedQuery,
    values: dict[str, Any],
    started: datetime.datetime,
    duration_ms: float,
    rows: int,
    outcome: str,
    error: str,
    kind: str,
) -> QueryRun:
    """The run's row and its ``query.run`` audit record, in one transaction."""
    shown = {k: v.isoformat() if isinstance(v, datetime.date) else v for k, v in values.items()}
    with transaction.atomic():
        run = QueryRun.objects.create(
            query=query,
            user=acting.user,
            parameters=shown,
            started_at=started,
            duration_ms=duration_ms,
            rows=rows,
            outcome=outcome,
            error=error,
            kind=kind,
        )
        audit_record(
            actor=acting.actor,
            action=QUERY_RUN,
            resource_type="query",
            resource_id=query.pk,
            data={
                "run": run.pk,
                "kind": kind,
                "parameters": shown,
                "duration_ms": duration_ms,
                "rows": rows,
                "outcome": outcome,
                "error": error[:500],
            },
        )
    return run


class Export:
    """Every row of a run, read in pieces for a CSV download; recorded and audited once it ends.

    :func:`query_export` opens it (a refusal is recorded and raised there, before any byte is
    sent). The caller reads :meth:`rows` pieces until one is empty and then calls :meth:`finish`
    exactly once, with the outcome: ``ok``, ``aborted`` (the client went away), or the error
    a later piece raised. At most ``settings.QUERY_EXPORT_MAX_ROWS`` rows are read; an export
    stopped there is recorded with that reason.
    """

    def __init__(self, acting: Any, query: SavedQuery, values: dict[str, Any], reader: readonly.Reader) -> None:
        self.query = query
        self.columns = reader.columns
        self.count = 0
        self.truncated = False
        self._acting, self._values, self._reader = acting, values, reader
        self._started = timezone.now()
        self._limit = settings.QUERY_EXPORT_MAX_ROWS
        self._first: list[list[Any]] | None = None
        self._finished = False

    def _open(self) -> None:
        self._first = self._reader.fetch(EXPORT_CHUNK)  # the refusals of the first FETCH come now
        self.columns = self._reader.columns

    def rows(self) -> list[list[Any]]:
        """The next piece of at most EXPORT_CHUNK rows; an empty list at the end."""
        if self._first is not None:
            piece, self._first = self._first, None
        else:
            room = self._limit - self.count
            if room <= 0:
                self.truncated = True
                return []
            piece = self._reader.fetch(min(EXPORT_CHUNK, room))
        piece = piece[: self._limit - self.count]
        self.count += len(piece)
        return piece

    def finish(self, outcome: str = RunOutcome.OK, error: str = "") -> QueryRun | None:
        if self._finished:
            return None
        self._finished = True
        self._reader.close()
        if outcome == RunOutcome.OK and self.truncated:
            error = f"Stopped at the export limit of {self._limit} rows."
        return _record(
            self._acting,
            self.query,
            self._values,
            self._started,
            _since(self._started),
            self.count,
            outcome,
            error,
            RunKind.EXPORT,
        )


def query_export(*, actor: Any, query_id: Any, params: Any = None) -> Export:
    """Open a CSV export of every row (viewer role); a refused or timed-out start is recorded and raised."""
    acting = require(actor, roles.can_view, "export saved queries")
    query = query_get(actor=acting, query_id=query_id)
    values = bind(query, params if params is not None else {})
    started = timezone.now()
    export = None
    try:
        export = Export(acting, query, values, readonly.open_reader(query.sql, values))
        export._open()
    except (QueryRefused, QueryTimedOut) as failure:
        if export is not None:
            export._reader.close()
        _record(acting, query, values, started, _since(started), 0, _outcome(failure), str(failure), RunKind.EXPORT)
        raise
    return export


def bind(query: SavedQuery, params: Any) -> dict[str, Any]:
    """The run's values: each declared parameter from ``params`` or its default; field errors name ``params.<name>``."""
    if not isinstance(params, dict):
        raise InvalidInput(fields={"params": ["An object of parameter values."]})
    declared = {p["name"]: p for p in query.parameters}
    errors: dict[str, list[str]] = {}
    for name in sorted(set(params) - set(declared)):
        errors[f"params.{name}"] = ["Not a parameter of this query."]
    values: dict[str, Any] = {}
    for name, spec in declared.items():
        if name in params:
            raw = params[name]
        elif "default" in spec:
            raw = spec["default"]
        else:
            errors[f"params.{name}"] = ["Required."]
            continue
        try:
            values[name] = coerce(spec["type"], raw)
        except ValueError as exc:
            errors[f"params.{name}"] = [str(exc)]
    if errors:
        raise InvalidInput(fields=errors)
    return values
