"""Validating a Django test client's response against an operation of /api/schema/ (schemathesis)."""

from __future__ import annotations

import http.client
from typing import Any

import requests
from schemathesis.core.transport import Response as CheckedResponse


def validate_response(schema: Any, path: str, method: str, response: Any) -> None:
    """Fails unless ``response`` is one the schema documents for ``method path`` (status, media type, body)."""
    url = f"http://testserver{response.wsgi_request.get_full_path()}"
    checked = CheckedResponse(
        status_code=response.status_code,
        headers={name: [value] for name, value in response.headers.items()},
        content=response.content,
        request=requests.Request(method, url).prepare(),
        elapsed=0.0,
        verify=True,
        message=http.client.responses.get(response.status_code, ""),
        encoding="utf-8",
    )
    schema[path][method].validate_response(checked)
