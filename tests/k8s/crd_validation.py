"""A CRD's structural schema applied to custom-resource writes, as apiextensions-apiserver does.

On every write of a custom resource (create, update, patch, server-side apply, and the status
subresource), whatever its client, in this order:

1. **Pruning** of fields the schema does not declare (`x-kubernetes-preserve-unknown-fields`
   keeps them): dropped silently, or, with `fieldValidation=Strict` (kubectl's default), a 400
   `<Kind> in version "<v>" cannot be handled as a <Kind>: strict decoding error: unknown
   field "spec.foo"` (apiextensions-apiserver/pkg/apiserver/schema/pruning/algorithm.go;
   k8s.io/apiserver/pkg/endpoints/handlers/rest.go `fieldValidation`).
2. **Defaulting** from the schema's `default`s, wherever the parent object exists
   (apiserver/schema/defaulting/algorithm.go): `status: {observedGeneration: -1}` on create.
3. **Validation** (pkg/registry/customresource/strategy.go `Validate`/`ValidateUpdate`):
   the metadata (`ValidateObjectMeta`, a DNS-1123 subdomain name), then the OpenAPI keywords
   (k8s.io/kube-openapi/pkg/validation/validate, turned into field errors by
   apiextensions-apiserver/pkg/apiserver/validation/validation.go): type, `nullable`,
   `required`, `enum`, `maxLength`/`minLength`, `pattern`, `minimum`/`maximum`,
   `maxItems`/`minItems`, `maxProperties`, `format: date-time`, `x-kubernetes-int-or-string`,
   unique keys of `x-kubernetes-list-type: map` (listtype/validation.go); then the CEL rules
   `x-kubernetes-validations` (apiserver/schema/cel/validation.go), unless a value had the
   wrong type ("some validation rules were not checked because the object was invalid"). A
   failed rule is `<path>[.<fieldPath>]: Invalid value: "<schema type>": <message>` (or the
   rule's `reason`), the message verbatim, `messageExpression` evaluated, else `failed rule:
   <rule>`; a rule with `oldSelf` runs on updates only. On an update, values that did not
   change are not validated again (CRD validation ratcheting, GA in 1.33).
   Refusal: 422 `<Kind>.<group> "<name>" is invalid: <errors>` (validation.py `invalid_error`).

CEL runs on cel-python (RE2 regular expressions, as the apiserver's cel-go). The Kubernetes
CEL libraries (`quantity()`, `isURL()`, `format.*`, `ip()`...) are not there: a rule calling
one fails loudly (500) rather than passing. Not copied: the CEL cost budget, `optionalOldSelf`,
`x-kubernetes-embedded-resource`, the `Warning` header of `fieldValidation=Warn`.
"""

from __future__ import annotations

import contextlib
import contextvars
import copy
import functools
import json
import re
from collections.abc import Callable
from typing import Any

import celpy

from tests.k8s.apimachinery import ApiError
from tests.k8s.validation import (
    FieldError,
    invalid,
    invalid_error,
    required,
    unsupported,
    validate_object_meta,
)

Body = dict[str, Any]
Schema = dict[str, Any]

#: The request's `fieldValidation` (Ignore, Warn, Strict); set by the HTTP layer.
field_validation: contextvars.ContextVar[str] = contextvars.ContextVar(
    "field_validation", default="Warn")

_ROOT_KEPT = ("apiVersion", "kind", "metadata")
_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: (isinstance(v, int) and not isinstance(v, bool))
    or (isinstance(v, float) and v.is_integer()),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
}
_CEL = celpy.Environment()
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


def _json_type(value: Any) -> str:
    """The JSON type name kube-openapi reports for a value of the wrong type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


# --- Pruning ---------------------------------------------------------------------------------


def prune(value: Any, schema: Schema, path: str, unknown: list[str]) -> Any:
    """`value` without the fields `schema` does not declare; their paths go to `unknown`."""
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            properties = schema.get("properties") or {}
            return {key: prune(item, properties[key], _join(path, key), unknown)
                    if key in properties else item for key, item in value.items()}
        if isinstance(schema.get("additionalProperties"), dict):
            sub = schema["additionalProperties"]
            return {key: prune(item, sub, f"{path}[{key}]", unknown)
                    for key, item in value.items()}
        properties = schema.get("properties") or {}
        kept = {}
        for key, item in value.items():
            if not path and key in _ROOT_KEPT:
                kept[key] = item  # ObjectMeta is the apiserver's, whatever the schema says
            elif key in properties:
                kept[key] = prune(item, properties[key], _join(path, key), unknown)
            else:
                unknown.append(_join(path, key))
        return kept
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"], f"{path}[{index}]", unknown)
                for index, item in enumerate(value)]
    return value


# --- Defaulting ------------------------------------------------------------------------------


def apply_defaults(value: Any, schema: Schema) -> None:
    """Structural-schema defaulting: a missing property with a `default` gets it, wherever
    its parent object exists."""
    if isinstance(value, dict):
        for name, prop in (schema.get("properties") or {}).items():
            if name not in value and "default" in prop:
                value[name] = copy.deepcopy(prop["default"])
            if name in value:
                apply_defaults(value[name], prop)
        if isinstance(schema.get("additionalProperties"), dict):
            for item in value.values():
                apply_defaults(item, schema["additionalProperties"])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


# --- OpenAPI validation --------------------------------------------------------------------------


class _Result:
    def __init__(self) -> None:
        self.errors: list[FieldError] = []
        self.cel: list[FieldError] = []
        self.type_error = False


def _type_ok(schema: Schema, value: Any) -> bool:
    if value is None:
        return bool(schema.get("nullable"))
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, int | str) and not isinstance(value, bool)
    expected = schema.get("type")
    return expected is None or _TYPES[expected](value)


def _keywords(schema: Schema, value: Any, path: str, out: _Result) -> None:
    where = path or "body"
    if "enum" in schema and value not in schema["enum"]:
        out.errors.append(unsupported(path, value, [str(v) for v in schema["enum"]]))
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            out.errors.append(FieldError("Too long", path, None,
                                         f"may not be more than {schema['maxLength']} bytes"))
        if "minLength" in schema and len(value) < schema["minLength"]:
            out.errors.append(invalid(path, value, f"{where} in body should be at least "
                                                   f"{schema['minLength']} chars long"))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            out.errors.append(invalid(path, value, f"{where} in body should match "
                                                   f"'{schema['pattern']}'"))
        if schema.get("format") == "date-time" and not _RFC3339.match(value):
            out.errors.append(invalid(path, value, f"{where} in body must be of type "
                                                   f"date-time: {json.dumps(value)}"))
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            out.errors.append(invalid(path, value, f"{where} in body should be greater than or "
                                                   f"equal to {schema['minimum']}"))
        if "maximum" in schema and value > schema["maximum"]:
            out.errors.append(invalid(path, value, f"{where} in body should be less than or "
                                                   f"equal to {schema['maximum']}"))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            out.errors.append(FieldError("Too many", path, len(value),
                                         f"must have at most {schema['maxItems']} items"))
        if "minItems" in schema and len(value) < schema["minItems"]:
            out.errors.append(invalid(path, value, f"{where} in body should have at least "
                                                   f"{schema['minItems']} items"))
        if schema.get("x-kubernetes-list-type") == "map":
            keys = schema.get("x-kubernetes-list-map-keys") or []
            seen: set[str] = set()
            for index, item in enumerate(value):
                if isinstance(item, dict):
                    key = json.dumps({k: item.get(k) for k in keys}, sort_keys=True)
                    if key in seen:
                        out.errors.append(FieldError("Duplicate value", f"{path}[{index}]",
                                                     {k: item.get(k) for k in keys}))
                    seen.add(key)
    if isinstance(value, dict) and "maxProperties" in schema \
            and len(value) > schema["maxProperties"]:
        out.errors.append(FieldError("Too many", path, len(value),
                                     f"must have at most {schema['maxProperties']} items"))


def _validate(schema: Schema, value: Any, old: Any, path: str, out: _Result, *,
              ratchet: bool) -> None:
    if ratchet and value == old:
        return  # ratcheting: an unchanged value is not validated again
    if not _type_ok(schema, value):
        shown = _json_type(value)
        out.errors.append(invalid(path, shown, f"{path or 'body'} in body must be of type "
                                               f"{schema.get('type')}: {json.dumps(shown)}"))
        out.type_error = True
        return
    if value is None:
        return
    _keywords(schema, value, path, out)
    if isinstance(value, dict):
        for name in schema.get("required") or []:
            if name not in value:
                out.errors.append(required(_join(path, name)))
        properties = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        old_map = old if isinstance(old, dict) else {}
        for key, item in value.items():
            if key in properties:
                _validate(properties[key], item, old_map.get(key), _join(path, key), out,
                          ratchet=ratchet and key in old_map)
            elif isinstance(extra, dict):
                _validate(extra, item, old_map.get(key), f"{path}[{key}]", out,
                          ratchet=ratchet and key in old_map)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            previous = _correlated(schema, item, old)
            _validate(schema["items"], item, previous, f"{path}[{index}]", out,
                      ratchet=ratchet and previous is not None)
    _rules(schema, value, old, path, out)


def _correlated(schema: Schema, item: Any, old: Any) -> Any:
    """The old element an element of a `map` list corresponds to (by its keys); elements of
    other lists correlate to nothing (ratcheting and `oldSelf` need a correlation)."""
    if schema.get("x-kubernetes-list-type") != "map" or not isinstance(old, list) \
            or not isinstance(item, dict):
        return None
    keys = schema.get("x-kubernetes-list-map-keys") or []
    return next((candidate for candidate in old if isinstance(candidate, dict)
                 and all(candidate.get(k) == item.get(k) for k in keys)), None)


# --- CEL ---------------------------------------------------------------------------------------


@functools.cache
def _program(rule: str) -> celpy.Runner:
    return _CEL.program(_CEL.compile(rule))


def _evaluate(rule: str, value: Any, old: Any) -> Any:
    activation = {"self": celpy.json_to_cel(value)}
    if old is not None:
        activation["oldSelf"] = celpy.json_to_cel(old)
    result = _program(rule).evaluate(activation)
    if isinstance(result, celpy.CELEvalError):
        raise result
    return result


_RULE_REASONS = {"FieldValueInvalid": "Invalid value", "FieldValueRequired": "Required value",
                 "FieldValueForbidden": "Forbidden", "FieldValueDuplicate": "Duplicate value"}


def _rules(schema: Schema, value: Any, old: Any, path: str, out: _Result) -> None:
    for rule in schema.get("x-kubernetes-validations") or []:
        text = rule["rule"]
        if re.search(r"\boldSelf\b", text) and old is None:
            continue  # a transition rule: only when there is an old value
        where = path + (rule.get("fieldPath") or "")
        try:
            passed = _evaluate(text, value, old)
        except celpy.CELEvalError as exc:
            detail = exc.args[0] if exc.args else str(exc)
            if "undeclared reference" in str(detail):
                raise ApiError(500, "InternalError", f"the emulator cannot evaluate the CEL "
                               f"rule {text!r}: a Kubernetes CEL library function cel-python "
                               "does not have") from None
            out.cel.append(invalid(where, schema.get("type", "object"),
                                   f"{detail} evaluating rule: {text}"))
            continue
        if bool(passed):
            continue
        message = rule.get("message") or f"failed rule: {text}"
        if rule.get("messageExpression"):
            with contextlib.suppress(celpy.CELEvalError):
                message = str(_evaluate(rule["messageExpression"], value, old))
        kind = _RULE_REASONS.get(rule.get("reason") or "FieldValueInvalid", "Invalid value")
        if kind == "Invalid value":
            out.cel.append(invalid(where, schema.get("type", "object"), message))
        else:
            out.cel.append(FieldError(kind, where, None, message))


# --- The admission hook --------------------------------------------------------------------------


class CustomResourceSchema:
    """The structural schema of one served version of a CRD, applied to every write."""

    def __init__(self, crd: Body) -> None:
        spec = crd["spec"]
        version = next((v for v in spec["versions"] if v.get("storage")), spec["versions"][0])
        self.schema: Schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
        self.kind = spec["names"]["kind"]
        self.group = spec["group"]
        self.version = version["name"]

    def admit(self, obj: Body, old: Body | None) -> None:
        """Prune, default and validate `obj` in place (the store's admission hook)."""
        unknown: list[str] = []
        pruned = prune(obj, self.schema, "", unknown)
        if unknown and field_validation.get() == "Strict":
            fields = ", ".join(f'unknown field "{path}"' for path in unknown)
            raise ApiError(400, "BadRequest", f'{self.kind} in version "{self.version}" cannot '
                           f"be handled as a {self.kind}: strict decoding error: {fields}")
        obj.clear()
        obj.update(pruned)
        apply_defaults(obj, self.schema)
        errors = self.errors(obj, old)
        if errors:
            name = (obj.get("metadata") or {}).get("name", "")
            raise invalid_error(self.kind, self.group, name, errors)

    def errors(self, obj: Body, old: Body | None) -> list[FieldError]:
        out = _Result()
        errors = validate_object_meta(obj.get("metadata") or {}) if old is None else []
        body = {key: value for key, value in obj.items() if key not in _ROOT_KEPT}
        previous = None if old is None else \
            {key: value for key, value in old.items() if key not in _ROOT_KEPT}
        _validate(self.schema, body, previous, "", out, ratchet=previous is not None)
        errors += out.errors
        if out.type_error and self.has_rules():
            errors.append(invalid("<nil>", None, "some validation rules were not checked "
                                  "because the object was invalid; correct the existing errors "
                                  "to complete validation"))
        else:
            errors += out.cel
        return errors

    @functools.cached_property
    def _rule_count(self) -> int:
        return json.dumps(self.schema).count("x-kubernetes-validations")

    def has_rules(self) -> bool:
        return self._rule_count > 0

