"""What the OpenAPI schema says about errors and strict bodies, in one place.

drf-spectacular documents what a view declares; left alone, it documents no error at
all, and a request body of a :class:`~config.strict.StrictSerializer` as if unknown keys
were welcome. A schema that disagrees with the server misleads every generated client
(and fails contract tests such as schemathesis), so:

- :class:`StrictSerializerExtension` marks every strict serializer's object
  ``additionalProperties: false`` (it refuses unknown keys, and says so), and states two
  refusals DRF makes that drf-spectacular leaves out: an empty list where ``allow_empty``
  is off (``minItems: 1``), and a string that is blank once trimmed (a ``pattern``);
- :func:`document_errors` (a postprocessing hook) drops DRF's ``?format=`` renderer switch
  from the documented parameters (it is plumbing, not input, and its HTML answer is no
  part of the contract), and adds to each operation the errors that
  its shape makes possible, all with the shared ``Error`` / ``ValidationError``
  components: 401 and 403 where credentials are needed, 400 where there is input (query
  parameters or a body), 404 where the path names a resource, 413 and 415 where there is a
  body. Errors only a view knows of (409) it declares itself, with :data:`CONFLICT`.

The error bodies are those of ``config.exceptions`` and ``config.middleware``: field
errors for bad input, ``{"detail", "code"}`` (and facts such as ``state``) otherwise.

This module imports no app.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiSerializerExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.settings import api_settings

# The characters str.strip() removes (str.isspace()), spelled out: regex engines disagree on
# what \s means (ECMA's leaves out U+001C..U+001F, which Python strips), and the pattern must
# say exactly what DRF's trim_whitespace does.
WHITESPACE = r"\t-\r\x1c-\x20\x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"

ERROR = "Error"
VALIDATION_ERROR = "ValidationError"


class ErrorSerializer(serializers.Serializer):  # the component is named "Error" after it
    """Why the request failed: a message, and a stable code to branch on.

    Some errors add facts, e.g. a 409's ``state``; clients should ignore keys they do not know.
    """

    detail = serializers.CharField()
    code = serializers.CharField()


def error(description: str) -> OpenApiResponse:
    return OpenApiResponse(response=ErrorSerializer, description=description)


CONFLICT = error("Not allowed from the resource's current state (the body says which state).")

# Bad input: field errors keyed by field (nested as the input is), or for a body that is not
# JSON at all, {"detail", "code"}. Free-form on purpose: the keys are the fields at fault.
VALIDATION_ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "Field errors: each key names a field of the input (query parameter or body), each value "
        'lists what is wrong with it, nested as the input is (e.g. {"scope": {"in": ["..."]}}). '
        'A body that is not JSON gets {"detail", "code"} instead.'
    ),
    "additionalProperties": {},
    "example": {"title": ["This field is required."]},
}

DEFAULTS: dict[str, str] = {
    "400": "Invalid input: the body names each field at fault.",
    "401": "No credentials, or invalid ones.",
    "403": "Authenticated, but without the role this needs.",
    "404": "No such resource.",
    "413": "The request body is larger than the server accepts.",
    "415": "The body is not JSON (the API accepts application/json only).",
}


class StrictSerializerExtension(OpenApiSerializerExtension):
    target_class = "config.strict.StrictSerializer"
    match_subclasses = True

    def map_serializer(self, auto_schema: Any, direction: Any) -> dict[str, Any]:
        # self.target, not self.target_class: with match_subclasses the latter is the base class.
        schema = auto_schema._map_serializer(self.target, direction, bypass_extensions=True)
        schema["additionalProperties"] = False
        properties = schema.get("properties", {})
        for name, field in self.target.fields.items():
            prop = properties.get(name)
            # A $ref (nested serializer, enum) is described, and tightened, where it is defined.
            if prop is not None and not field.read_only and "$ref" not in prop:
                _state_refusals(field, prop)
        return schema


def _state_refusals(field: serializers.Field, prop: dict[str, Any]) -> None:
    if isinstance(field, (serializers.ListField, serializers.ListSerializer)):
        if not field.allow_empty and "minItems" not in prop:
            prop["minItems"] = 1
        items = prop.get("items")
        if isinstance(field, serializers.ListField) and isinstance(items, dict) and "$ref" not in items:
            _state_refusals(field.child, items)  # a list of strings refuses blank items too
        return
    if (
        isinstance(field, serializers.CharField)
        and field.trim_whitespace
        and not field.allow_blank
        and "pattern" not in prop
        and "format" not in prop
    ):
        # DRF trims before it checks blank and min_length, so "   " is refused although
        # minLength allows it; the pattern says "this many characters once trimmed".
        prop["pattern"] = non_blank_pattern(max(field.min_length or 1, 1))


def non_blank_pattern(least: int) -> str:
    """A pattern for strings of at least ``least`` characters once trimmed, as DRF trims."""
    solid = f"[^{WHITESPACE}]"
    if least == 1:
        return solid  # unanchored: somewhere, one character that is not whitespace
    return f"^[{WHITESPACE}]*{solid}[\\s\\S]{{{least - 2},}}{solid}[{WHITESPACE}]*$"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def document_errors(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """Postprocessing hook: document on each operation the errors it can answer with."""
    schemas = result.setdefault("components", {}).setdefault("schemas", {})
    schemas[VALIDATION_ERROR] = VALIDATION_ERROR_SCHEMA
    schemas.setdefault(
        ERROR,
        {
            "type": "object",
            "properties": {"detail": {"type": "string"}, "code": {"type": "string"}},
            "required": ["detail", "code"],
        },
    )
    for path, operations in result.get("paths", {}).items():
        for method, operation in operations.items():
            if method.startswith("x-") or not isinstance(operation, dict):
                continue
            if "parameters" in operation:
                operation["parameters"] = [p for p in operation["parameters"] if not _is_format_switch(p)]
                if not operation["parameters"]:
                    del operation["parameters"]
            _require_body_of_alternatives(operation, schemas)
            statuses = _possible_errors(path, operation)
            responses = operation.setdefault("responses", {})
            for status in sorted(statuses):
                response = responses.setdefault(status, {"description": DEFAULTS[status]})
                # A view may declare the status with a description only; give it the body too.
                schema = _ref(VALIDATION_ERROR if status == "400" else ERROR)
                response.setdefault("content", {"application/json": {"schema": schema}})
    return result


def _require_body_of_alternatives(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """A body that is one of several shapes, each with required keys, is itself required.

    drf-spectacular derives ``requestBody.required`` from the serializer's required fields,
    and a ``PolymorphicProxySerializer`` has none of its own: without this, an empty POST
    would be documented as valid and answered with 400.
    """
    body = operation.get("requestBody")
    if not body or body.get("required"):
        return
    for media in body.get("content", {}).values():
        schema = _resolve(media.get("schema", {}), schemas)
        branches = schema.get("oneOf") or schema.get("anyOf")
        if branches and all(_needs_content(_resolve(branch, schemas)) for branch in branches):
            body["required"] = True


def _needs_content(schema: dict[str, Any]) -> bool:
    """An object with required keys, or an array of at least one item: not an empty body."""
    return bool(schema.get("required")) or (schema.get("type") == "array" and schema.get("minItems", 0) >= 1)


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    return schemas.get(ref.rsplit("/", 1)[-1], {}) if ref.startswith("#/components/schemas/") else schema


def _is_format_switch(parameter: dict[str, Any]) -> bool:
    return parameter.get("in") == "query" and parameter.get("name") == api_settings.URL_FORMAT_OVERRIDE


def _possible_errors(path: str, operation: dict[str, Any]) -> set[str]:
    statuses: set[str] = set()
    security = operation.get("security", [])
    if security and {} not in security:
        statuses |= {"401", "403"}
    parameters = operation.get("parameters", [])
    if any(p.get("in") in ("query", "header") for p in parameters):
        statuses.add("400")
    if any(p.get("in") == "path" for p in parameters):
        statuses.add("404")
    if "requestBody" in operation:
        statuses |= {"400", "413", "415"}
    return statuses
