r"""Field selectors as the API server evaluates them: per kind, only the fields it declares.

A real apiserver does not evaluate a field selector against arbitrary JSON paths. Each kind
registers a *field label conversion* (the labels a client may select on) and its registry
strategy computes the selectable values (`ToSelectableFields`); anything else is refused with
400 Bad Request before any object is read (k8s.io/apiserver/pkg/endpoints/handlers/get.go,
`ListResource`: `opts.FieldSelector.Transform(... ConvertFieldLabel ...)` →
`errors.NewBadRequest(err.Error())`, for lists and watches alike).

| kind | selectable (besides `metadata.name`, `metadata.namespace`) | source |
| --- | --- | --- |
| core/v1 Event | `involvedObject.{kind,namespace,name,uid,apiVersion,resourceVersion,fieldPath}`, `reason`, `reportingComponent`, `source`, `type` | pkg/apis/core/v1/conversion.go `AddFieldLabelConversionsForEvent`; pkg/registry/core/event/strategy.go `ToSelectableFields` |
| events.k8s.io/v1 Event | `regarding.*`, `reason`, `reportingController`, `type` | pkg/apis/events/v1/conversion.go `AddFieldLabelConversionsForEvent` |
| Pod | `spec.nodeName`, `spec.restartPolicy`, `spec.schedulerName`, `spec.serviceAccountName`, `spec.hostNetwork`, `status.phase`, `status.podIP`, `status.nominatedNodeName` | pkg/apis/core/v1/conversion.go `AddFieldLabelConversionsForPod`; pkg/registry/core/pod/strategy.go `ToSelectableFields` |
| Secret | `type` | `AddFieldLabelConversionsForSecret`; pkg/registry/core/secret/strategy.go |
| Namespace | `status.phase` | `AddFieldLabelConversionsForNamespace`; pkg/registry/core/namespace/strategy.go |
| batch/v1 Job | `status.successful` | pkg/apis/batch/v1/conversion.go; pkg/registry/batch/job/strategy.go `JobToSelectableFields` |
| every other kind, custom resources without `selectableFields` | none | k8s.io/apimachinery/pkg/runtime/conversion.go `DefaultMetaV1FieldSelectorConversion` |

The selector's syntax is `fields.ParseSelector` (k8s.io/apimachinery/pkg/fields/selector.go):
terms split on unescaped commas, operators `!=`, `==`, `=` (no set operators), values escaped
with `\\`, `\,`, `\=`; a field the object lacks selects as the empty string.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tests.k8s.apimachinery import ApiError

Obj = Mapping[str, Any]
Getter = Callable[[Obj], str]
Predicate = Callable[[Obj], bool]

_META = ("metadata.name", "metadata.namespace")


def _path(obj: Obj, path: str) -> Any:
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def _text(path: str) -> Getter:
    def get(obj: Obj) -> str:
        value = _path(obj, path)
        return "" if value is None else str(value)
    return get


def _flag(path: str) -> Getter:
    """`strconv.FormatBool` of a bool that defaults to false."""
    return lambda obj: "true" if _path(obj, path) is True else "false"


def _event_source(obj: Obj) -> str:
    # pkg/registry/core/event/strategy.go: `source` is source.component, else the
    # reportingController (core/v1 `reportingComponent`).
    return str(_path(obj, "source.component") or obj.get("reportingComponent") or "")


def _job_succeeded(obj: Obj) -> str:
    # pkg/registry/batch/job/strategy.go: "status.successful": strconv.Itoa(Succeeded)
    return str(int(_path(obj, "status.succeeded") or 0))


_INVOLVED = ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")

#: (api version, kind) -> (selectable label -> getter, error message format for an unknown one)
_SELECTABLE: dict[tuple[str, str], tuple[dict[str, Getter], str]] = {
    ("v1", "Event"): ({
        **{f"involvedObject.{field}": _text(f"involvedObject.{field}") for field in _INVOLVED},
        "reason": _text("reason"),
        "reportingComponent": _text("reportingComponent"),
        "source": _event_source,
        "type": _text("type"),
    }, "field label not supported: {label}"),
    ("events.k8s.io/v1", "Event"): ({
        **{f"regarding.{field}": _text(f"regarding.{field}") for field in _INVOLVED},
        "reason": _text("reason"),
        "reportingController": _text("reportingController"),
        "type": _text("type"),
    }, "field label not supported: {label}"),
    ("v1", "Pod"): ({
        **{path: _text(path) for path in (
            "spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
            "spec.serviceAccountName", "status.phase", "status.podIP",
            "status.nominatedNodeName")},
        "spec.hostNetwork": _flag("spec.hostNetwork"),
    }, "field label not supported: {label}"),
    ("v1", "Secret"): ({"type": _text("type")}, "field label not supported: {label}"),
    ("v1", "Namespace"): ({"status.phase": _text("status.phase")},
                          "field label not supported: {label}"),
    ("batch/v1", "Job"): ({"status.successful": _job_succeeded},
                          'field label "{label}" not supported for batchv1.Job'),
}
_DEFAULT_ERROR = '"{label}" is not a known field selector: only "metadata.name", ' \
                 '"metadata.namespace"'


def selectable_fields(api_version: str, kind: str) -> tuple[str, ...]:
    """The field labels a selector may name for this kind."""
    getters, _ = _SELECTABLE.get((api_version, kind), ({}, _DEFAULT_ERROR))
    return (*_META, *getters)


def _split_terms(selector: str) -> list[str]:
    """Terms separated by commas not escaped with a backslash (fields/selector.go)."""
    terms, current, escaped = [], "", False
    for char in selector:
        if escaped:
            current += "\\" + char
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ",":
            terms.append(current)
            current = ""
        else:
            current += char
    if escaped:
        current += "\\"
    terms.append(current)
    return terms


def _split_term(term: str) -> tuple[str, str, str]:
    """`splitTerm`: the first unescaped operator, `!=` and `==` before `=`."""
    index = 0
    while index < len(term):
        if term[index] == "\\":
            index += 2
            continue
        for operator in ("!=", "==", "="):
            if term.startswith(operator, index):
                return term[:index], operator, term[index + len(operator):]
        index += 1
    return term, "", ""


def _unescape(value: str) -> str:
    """`fields.UnescapeValue`: `\\\\`, `\\,` and `\\=` only."""
    out, index = "", 0
    while index < len(value):
        char = value[index]
        if char == "\\":
            if index + 1 >= len(value) or value[index + 1] not in "\\,=":
                raise _parse_error(f"invalid escape sequence: {value}")
            out += value[index + 1]
            index += 2
            continue
        if char in ",=":
            raise _parse_error(f"unescaped character in value: {value}")
        out += char
        index += 1
    return out


def _parse_error(detail: str) -> ApiError:
    """fields.UnescapeValue's errors (`InvalidEscapeSequence`, `UnescapedRune`)."""
    return ApiError(400, "BadRequest", f"invalid field selector: {detail}")


def compile_field_selector(api_version: str, kind: str, selector: str | None) -> Predicate:
    """The selector as a predicate on objects of this kind; 400 for what the kind does not
    let a client select on, with the apiserver's message."""
    getters, error = _SELECTABLE.get((api_version, kind), ({}, _DEFAULT_ERROR))
    every = {"metadata.name": _text("metadata.name"),
             "metadata.namespace": _text("metadata.namespace"), **getters}
    checks: list[tuple[Getter, bool, str]] = []
    for term in _split_terms(selector or ""):
        if not term:
            continue
        label, operator, value = _split_term(term)
        if not operator:
            raise ApiError(400, "BadRequest", f"invalid selector: '{selector}'; "
                           f"can't understand '{term}'")
        label = label.strip()
        if label not in every:
            raise ApiError(400, "BadRequest", error.format(label=label))
        checks.append((every[label], operator == "!=", _unescape(value)))

    def matches(obj: Obj) -> bool:
        return all((getter(obj) != value) if negated else (getter(obj) == value)
                   for getter, negated, value in checks)

    return matches
