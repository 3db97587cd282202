"""The API's one request parser: JSON, bounded in size and in nesting.

DRF's ``JSONParser`` reads the whole body whatever its size (Django's
``DATA_UPLOAD_MAX_MEMORY_SIZE`` guards ``request.body`` and ``request.POST``,
which DRF's stream reading bypasses), and lets ``RecursionError`` from a body
nested thousands deep escape as a 500. This one reads at most the limit, answers
413 beyond it, and refuses nesting deeper than :data:`MAX_JSON_DEPTH` with a 400
before any serializer (or ``json.dumps`` in DRF's ``JSONField``) recurses into it.

It is the only parser configured: the API speaks JSON, and a form-encoded body is
a 415 rather than a second, looser way in.

This module imports no app.
"""

from __future__ import annotations

import json
from typing import IO, Any

from django.conf import settings
from rest_framework import parsers, status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.utils.json import strict_constant

from config.strict import nesting_depth_exceeds

# Far below the interpreter's recursion limit (1000), so that whatever recurses over an
# accepted body later (serializers, json.dumps, the renderer) has stack to spare; far
# above anything an API body needs (a spec's ``input`` is bounded at 32 by its own rule).
MAX_JSON_DEPTH = 100


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "Request body too large."
    default_code = "request_too_large"


def too_large_detail(limit: int) -> str:
    return f"Request body exceeded {limit} bytes (DATA_UPLOAD_MAX_MEMORY_SIZE)."


class JSONParser(parsers.JSONParser):
    def parse(self, stream: IO[bytes], media_type: str | None = None, parser_context: Any = None) -> Any:
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        # One byte past the limit tells "at the limit" from "over it" without reading the rest.
        raw = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(raw) > limit:
            raise PayloadTooLarge(too_large_detail(limit))
        encoding = parsers.get_encoding(parser_context or {})
        try:
            parse_constant = strict_constant if self.strict else None
            data = json.loads(raw.decode(encoding), parse_constant=parse_constant)
        except RecursionError as exc:
            raise ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep.") from exc
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, NaN/Infinity in strict mode
            raise ParseError(f"JSON parse error - {exc}") from exc
        if nesting_depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(f"JSON parse error - nested more than {MAX_JSON_DEPTH} levels deep.")
        return data
