"""The base domain error: what a service says went wrong, without knowing who asked.

Services and the spec validation raise these; each transport maps them once
(``config.exceptions`` for DRF; the WebSocket consumer and the CLI do the same with
their own envelopes). An error carries a stable ``code`` clients can branch on, the
HTTP ``http_status`` it stands for, field errors when the input was at fault, and any
``extra`` facts (the state a transition was refused in, say).

This module imports no app, so every app may raise these.
"""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "error"
    http_status = 400

    def __init__(
        self,
        message: str = "",
        *,
        code: str | None = None,
        fields: dict[str, Any] | None = None,
        **extra: Any,
    ) -> None:
        if not message and fields:
            message = "; ".join(f"{name}: {_text(errors)}" for name, errors in fields.items())
        super().__init__(message or self.code)
        if code is not None:
            self.code = code
        self.message = message
        self.fields = fields or {}
        self.extra = extra

    def as_dict(self) -> dict[str, Any]:
        """The JSON body of this error: field errors (the shape DRF clients know) or detail and code."""
        if self.fields:
            return dict(self.fields)
        return {"detail": self.message, "code": self.code, **self.extra}


class InvalidInput(DomainError):
    """The input is wrong; ``fields`` name what and why, nested as the input is (400)."""

    code = "invalid"
    http_status = 400


class NotAuthenticated(DomainError):
    code = "not_authenticated"
    http_status = 401


class PermissionDenied(DomainError):
    """The acting principal may not do this (403)."""

    code = "permission_denied"
    http_status = 403


class NotFound(DomainError):
    code = "not_found"
    http_status = 404


class Conflict(DomainError):
    """The request is valid but the resource's state does not allow it (409)."""

    code = "conflict"
    http_status = 409


def _text(errors: Any) -> str:
    if isinstance(errors, list):
        return " ".join(_text(e) for e in errors)
    if isinstance(errors, dict):
        return "; ".join(f"{k}: {_text(v)}" for k, v in errors.items())
    return str(errors)
