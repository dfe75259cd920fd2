"""Validation of built-in kinds, with the API server's messages and its 422 `Status` shape.

The checks are those of `pkg/apis/core/validation/validation.go` (object metadata, pod spec)
and `pkg/apis/batch/validation/validation.go` (Jobs) that a client of this project can trip
over; each function names its Go counterpart. Errors are `FieldError`s as in
`k8s.io/apimachinery/pkg/util/validation/field/errors.go`, and a refusal is the `StatusError`
of `errors.NewInvalid` (k8s.io/apimachinery/pkg/api/errors/errors.go):

    code 422, reason Invalid, message `<Kind>[.<group>] "<name>" is invalid: <errors>`
    (one error as is, several as `[e1, e2]`), details {name, group, kind, causes: [{reason
    FieldValueInvalid|FieldValueRequired|..., message <the error without its field>, field}]}

Not copied: the checks of fields this project never sets (probes, lifecycle hooks, ports,
volume sources other than emptyDir/secret/configMap/projected/downwardAPI, affinity,
topology spread...), which are accepted as they come.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from fractions import Fraction
from typing import Any

from tests.k8s.apimachinery import ApiError

Body = dict[str, Any]

# --- field.Error ------------------------------------------------------------------------------

_REASONS = {
    "Invalid value": "FieldValueInvalid",
    "Required value": "FieldValueRequired",
    "Unsupported value": "FieldValueNotSupported",
    "Forbidden": "FieldValueForbidden",
    "Duplicate value": "FieldValueDuplicate",
    "Not found": "FieldValueNotFound",
    "Too long": "FieldValueTooLong",
    "Too many": "FieldValueTooMany",
}


def _value_text(value: Any) -> str:
    """How field.Error prints a bad value: strings quoted (Go's %q), numbers bare."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:  # field.Error prints a nil value as the string "null"
        return '"null"'
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class FieldError:
    """One `*field.Error`: its type, field path, bad value and detail."""

    type: str
    field: str
    value: Any = None
    detail: str = ""

    def body(self) -> str:
        """`ErrorBody()`: the message without the field path."""
        if self.type in ("Required value", "Forbidden", "Too long"):
            text = self.type
        elif self.type == "Unsupported value":
            text = f"{self.type}: {_value_text(self.value)}"
        else:
            text = f"{self.type}: {_value_text(self.value)}"
        return f"{text}: {self.detail}" if self.detail else text

    def __str__(self) -> str:
        return f"{self.field}: {self.body()}"


def invalid(field: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid value", field, value, detail)


def required(field: str, detail: str = "") -> FieldError:
    return FieldError("Required value", field, None, detail)


def unsupported(field: str, value: Any, supported: Iterable[str]) -> FieldError:
    listed = ", ".join(json.dumps(item) for item in supported)
    return FieldError("Unsupported value", field, value, f"supported values: {listed}")


def forbidden(field: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field, None, detail)


def invalid_error(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiError:
    """`errors.NewInvalid(qualifiedKind, name, errs)`: 422 with one cause per error; the
    message aggregates them (`utilerrors.NewAggregate`, duplicates dropped)."""
    unique = list(dict.fromkeys(str(error) for error in errors))
    qualified = f"{kind}.{group}" if group else kind
    text = unique[0] if len(unique) == 1 else f"[{', '.join(unique)}]"
    details: dict[str, Any] = {"name": name, "kind": kind}
    if group:
        details["group"] = group
    details["causes"] = [{"reason": _REASONS[error.type], "message": error.body(),
                          "field": error.field} for error in errors]
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {text}', **details)


# --- k8s.io/apimachinery/pkg/util/validation/validation.go ------------------------------------

_DNS1123_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = rf"{_DNS1123_LABEL}(\.{_DNS1123_LABEL})*"
_QUALIFIED_NAME = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_CONFIG_KEY = "[-._a-zA-Z0-9]+"


def _regex_message(what: str, regex: str, examples: Iterable[str]) -> str:
    shown = ",  or ".join(f"'{example}'" for example in examples)
    return f"{what} (e.g. {shown}, regex used for validation is '{regex}')"


def is_dns1123_label(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not re.fullmatch(_DNS1123_LABEL, value):
        errors.append(_regex_message(
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
            "'-', and must start and end with an alphanumeric character", _DNS1123_LABEL,
            ("my-name", "123-abc")))
    return errors


def is_dns1123_subdomain(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        errors.append(_regex_message(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
            "characters, '-' or '.', and must start and end with an alphanumeric character",
            _DNS1123_SUBDOMAIN, ("example.com",)))
    return errors


def is_qualified_name(value: str) -> list[str]:
    """`IsQualifiedName`: an optional DNS-1123 subdomain prefix, `/`, a name part."""
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            return ["prefix part must be non-empty"]
        errors = [f"prefix part {msg}" for msg in is_dns1123_subdomain(prefix)]
        if errors:
            return errors
    else:
        return [_regex_message(
            "a qualified name must consist of alphanumeric characters, '-', '_' or '.', and "
            "must start and end with an alphanumeric character", _QUALIFIED_NAME,
            ("MyName", "my.name", "123-abc"))
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        return ["name part must be non-empty"]
    errors = []
    if len(name) > 63:
        errors.append("name part must be no more than 63 characters")
    if not re.fullmatch(_QUALIFIED_NAME, name):
        errors.append("name part " + _regex_message(
            "must consist of alphanumeric characters, '-', '_' or '.', and must start and end "
            "with an alphanumeric character", _QUALIFIED_NAME,
            ("MyName", "my.name", "123-abc")))
    return errors


def is_label_value(value: str) -> list[str]:
    errors = []
    if len(value) > 63:
        errors.append("must be no more than 63 characters")
    if not re.fullmatch(_LABEL_VALUE, value):
        errors.append(_regex_message(
            "a valid label must be an empty string or consist of alphanumeric characters, "
            "'-', '_' or '.', and must start and end with an alphanumeric character",
            _LABEL_VALUE, ("MyValue", "my_value", "12345")))
    return errors


def is_config_map_key(value: str) -> list[str]:
    errors = []
    if len(value) > 253:
        errors.append("must be no more than 253 characters")
    if not re.fullmatch(_CONFIG_KEY, value):
        errors.append(_regex_message(
            "a valid config key must consist of alphanumeric characters, '-', '_' or '.'",
            _CONFIG_KEY, ("key.name", "KEY_NAME", "key-name")))
    if value in (".", "..") or value.startswith(".."):
        errors.append("must not be '.' or '..'" if value in (".", "..")
                      else "must not start with '..'")
    return errors


def is_env_var_name(value: str) -> list[str]:
    """`IsRelaxedEnvVarName` (RelaxedEnvironmentVariableValidation, GA in 1.34)."""
    if any(not (" " <= char <= "~") or char == "=" for char in value):
        return ["a valid environment variable name must consist only of printable ASCII "
                "characters other than '='"]
    return []


# --- Quantities (k8s.io/apimachinery/pkg/api/resource/quantity.go) ------------------------

_QUANTITY = re.compile(r"^([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
                       r"(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?$")
_SUFFIXES: dict[str, int | Fraction] = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": Fraction(1, 10**9), "u": Fraction(1, 10**6), "m": Fraction(1, 1000),
    "": 1, "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12, "P": 10**15, "E": 10**18,
}


def parse_quantity(text: Any) -> Fraction | None:
    """The value of a quantity (`500m`, `128Mi`, `1e3`, 2), or None if it is not one."""
    if isinstance(text, bool):
        return None
    if isinstance(text, int | float):
        return Fraction(str(text))
    match = _QUANTITY.match(str(text))
    if match is None:
        return None
    number, suffix = match[1], match[2] or ""
    if suffix[:1] in ("e", "E"):
        return Fraction(number) * Fraction(10) ** int(suffix[1:])
    return Fraction(number) * _SUFFIXES[suffix]


def format_quantity(value: Fraction, binary: bool = False) -> str:
    """`Quantity.String()` in canonical form: binary suffixes for binary quantities
    (memory written as `Mi`), else the largest decimal suffix that keeps an integer
    (`500m`, `2`, `1500m`, `1k`)."""
    if value == 0:
        return "0"
    if binary and value.denominator == 1:
        for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
            if value % _SUFFIXES[suffix] == 0:
                return f"{value // _SUFFIXES[suffix]}{suffix}"
    for suffix in ("E", "P", "T", "G", "M", "k", "", "m", "u", "n"):
        scaled = value / _SUFFIXES[suffix]
        if scaled.denominator == 1:
            return f"{scaled.numerator}{suffix}"
    return f"{-(-value.numerator * 10**9 // value.denominator)}n"


def decode_quantities(obj: Body, kind: str, containers: Iterable[Any]) -> None:
    """A quantity that does not parse fails the JSON decoding, before any validation: 400
    `<Kind> in version "v1" cannot be handled as a <Kind>: quantities must match the regular
    expression ...` (k8s.io/apimachinery/pkg/api/resource/quantity.go `ErrFormatWrong`;
    the decoding error of k8s.io/apiserver/pkg/endpoints/handlers/create.go)."""
    for container in containers:
        resources = container.get("resources") or {}
        for part in ("limits", "requests"):
            for quantity in (resources.get(part) or {}).values():
                if parse_quantity(quantity) is None:
                    raise ApiError(400, "BadRequest", f'{kind} in version "v1" cannot be '
                                   f"handled as a {kind}: quantities must match the regular "
                                   "expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")


def is_binary(text: Any) -> bool:
    return isinstance(text, str) and text[-2:] in _SUFFIXES and text[-1:] == "i"


# --- ObjectMeta (k8s.io/apimachinery/pkg/api/validation/objectmeta.go) --------------------------


def validate_labels(labels: Mapping[str, Any] | None, field: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for key, value in (labels or {}).items():
        errors += [invalid(field, key, msg) for msg in is_qualified_name(key)]
        errors += [invalid(field, value, msg) for msg in is_label_value(str(value))]
    return errors


def validate_annotations(annotations: Mapping[str, Any] | None, field: str) -> list[FieldError]:
    """`ValidateAnnotations`: keys are qualified names (checked lower-cased), 256 KiB total."""
    errors: list[FieldError] = []
    total = 0
    for key, value in (annotations or {}).items():
        errors += [invalid(field, key, msg) for msg in is_qualified_name(key.lower())]
        total += len(key) + len(str(value))
    if total > 256 * 1024:
        errors.append(FieldError("Too long", field, None,
                                 f"must have at most {256 * 1024} bytes"))
    return errors


def validate_object_meta(meta: Mapping[str, Any], field: str = "metadata", *,
                         name_check: Any = is_dns1123_subdomain) -> list[FieldError]:
    errors: list[FieldError] = []
    name = meta.get("name")
    if name:
        errors += [invalid(f"{field}.name", name, msg) for msg in name_check(name)]
    elif meta.get("generateName") is None:
        errors.append(required(f"{field}.name", "name or generateName is required"))
    errors += validate_labels(meta.get("labels"), f"{field}.labels")
    errors += validate_annotations(meta.get("annotations"), f"{field}.annotations")
    return errors


# --- PodSpec (pkg/apis/core/validation/validation.go) -------------------------------------------

_FIELD_REF_PATHS = ("metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                    "spec.serviceAccountName", "status.hostIP", "status.hostIPs",
                    "status.podIP", "status.podIPs")
_STANDARD_RESOURCES = ("cpu", "memory", "ephemeral-storage")


def _validate_env_from_source(source: Mapping[str, Any], field: str) -> list[FieldError]:
    """`validateEnvVarValueFrom`: exactly one source, each well formed."""
    kinds = [key for key in ("fieldRef", "resourceFieldRef", "configMapKeyRef",
                             "secretKeyRef", "fileKeyRef") if source.get(key) is not None]
    if not kinds:
        return [invalid(field, "", "must specify one of: `fieldRef`, `resourceFieldRef`, "
                                   "`configMapKeyRef` or `secretKeyRef`")]
    if len(kinds) > 1:
        return [invalid(field, "", "may not have more than one field specified at a time")]
    kind = kinds[0]
    ref = source[kind]
    path = f"{field}.{kind}"
    errors: list[FieldError] = []
    if kind in ("configMapKeyRef", "secretKeyRef"):
        if not ref.get("name"):
            errors.append(required(f"{path}.name"))
        else:
            errors += [invalid(f"{path}.name", ref["name"], msg)
                       for msg in is_dns1123_subdomain(str(ref["name"]))]
        if not ref.get("key"):
            errors.append(required(f"{path}.key"))
        else:
            errors += [invalid(f"{path}.key", ref["key"], msg)
                       for msg in is_config_map_key(str(ref["key"]))]
    elif kind == "fieldRef":
        field_path = ref.get("fieldPath")
        if not field_path:
            errors.append(required(f"{path}.fieldPath"))
        elif not re.fullmatch(r"metadata\.(labels|annotations)\['.+'\]", str(field_path)) \
                and field_path not in _FIELD_REF_PATHS:
            errors.append(unsupported(f"{path}.fieldPath", field_path, (
                "metadata.name", "metadata.namespace", "metadata.uid", "spec.nodeName",
                "spec.serviceAccountName", "status.hostIP", "status.hostIPs", "status.podIP",
                "status.podIPs")))
    return errors


def _validate_env(env: list[Any], field: str) -> list[FieldError]:
    errors: list[FieldError] = []
    for index, item in enumerate(env):
        path = f"{field}[{index}]"
        name = item.get("name")
        if not name:
            errors.append(required(f"{path}.name"))
        else:
            errors += [invalid(f"{path}.name", name, msg) for msg in is_env_var_name(name)]
        if item.get("valueFrom") is not None:
            if item.get("value"):
                errors.append(invalid(f"{path}.valueFrom", "",
                                      "may not be specified when `value` is not empty"))
            errors += _validate_env_from_source(item["valueFrom"], f"{path}.valueFrom")
    return errors


def _validate_resources(resources: Mapping[str, Any], field: str) -> list[FieldError]:
    """`ValidateResourceRequirements`: names, quantities >= 0, requests <= limits."""
    errors: list[FieldError] = []
    limits = resources.get("limits") or {}
    requests = resources.get("requests") or {}
    for part, values in (("limits", limits), ("requests", requests)):
        for name, quantity in values.items():
            key = f"{field}.{part}[{name}]"
            if name not in _STANDARD_RESOURCES and not name.startswith("hugepages-") \
                    and "/" not in name:
                errors.append(invalid(key, name, "must be a standard resource type or fully "
                                                 "qualified"))
            value = parse_quantity(quantity)
            if value is not None and value < 0:
                errors.append(invalid(key, str(quantity), "must be greater than or equal to 0"))
    for name, quantity in requests.items():
        request, limit = parse_quantity(quantity), parse_quantity(limits.get(name))
        if request is not None and limit is not None and request > limit:
            errors.append(invalid(f"{field}.requests", str(quantity),
                                  f"must be less than or equal to {name} limit of "
                                  f"{limits[name]}"))
    return errors


def _validate_container(container: Mapping[str, Any], field: str, volumes: set[str], *,
                        for_pod: bool) -> list[FieldError]:
    errors: list[FieldError] = []
    name = container.get("name")
    if not name:
        errors.append(required(f"{field}.name"))
    else:
        errors += [invalid(f"{field}.name", name, msg) for msg in is_dns1123_label(name)]
    image = container.get("image")
    if not image and for_pod:
        errors.append(required(f"{field}.image"))
    elif image and for_pod and image != image.strip():
        # validateContainersOnlyForPod: a pod template may carry whitespace, a pod may not
        errors.append(invalid(f"{field}.image", image,
                              "must not have leading or trailing whitespace"))
    policy = container.get("imagePullPolicy")
    if policy is not None and policy not in ("Always", "IfNotPresent", "Never"):
        errors.append(unsupported(f"{field}.imagePullPolicy", policy,
                                  ("Always", "IfNotPresent", "Never")))
    message_policy = container.get("terminationMessagePolicy")
    if message_policy is not None and message_policy not in ("File", "FallbackToLogsOnError"):
        errors.append(unsupported(f"{field}.terminationMessagePolicy", message_policy,
                                  ("File", "FallbackToLogsOnError")))
    errors += _validate_env(container.get("env") or [], f"{field}.env")
    errors += _validate_resources(container.get("resources") or {}, f"{field}.resources")
    for index, mount in enumerate(container.get("volumeMounts") or []):
        if mount.get("name") not in volumes:
            errors.append(FieldError("Not found", f"{field}.volumeMounts[{index}].name",
                                     mount.get("name")))
    return errors


def _validate_tolerations(tolerations: list[Any], field: str) -> list[FieldError]:
    """`ValidateTolerations`."""
    errors: list[FieldError] = []
    for index, toleration in enumerate(tolerations):
        path = f"{field}[{index}]"
        key = toleration.get("key")
        if key:
            errors += [invalid(f"{path}.key", key, msg) for msg in is_qualified_name(key)]
        operator = toleration.get("operator") or "Equal"
        if not key and operator != "Exists":
            errors.append(invalid(f"{path}.operator", operator,
                                  "operator must be Exists when `key` is empty, which means "
                                  '"match all values and all keys"'))
        if operator == "Exists" and toleration.get("value"):
            errors.append(invalid(f"{path}.operator", toleration,
                                  "value must be empty when `operator` is 'Exists'"))
        elif operator not in ("Equal", "Exists"):
            errors.append(unsupported(f"{path}.operator", operator, ("Equal", "Exists")))
        effect = toleration.get("effect")
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errors.append(unsupported(f"{path}.effect", effect,
                                      ("NoSchedule", "PreferNoSchedule", "NoExecute")))
    return errors


def validate_pod_spec(spec: Mapping[str, Any], field: str, *, for_pod: bool) -> list[FieldError]:
    """`ValidatePodSpec` (and, `for_pod`, `validateContainersOnlyForPod`)."""
    errors: list[FieldError] = []
    volumes: set[str] = set()
    for index, volume in enumerate(spec.get("volumes") or []):
        name = volume.get("name") or ""
        if not name:
            errors.append(required(f"{field}.volumes[{index}].name"))
        errors += [invalid(f"{field}.volumes[{index}].name", name, msg)
                   for msg in (is_dns1123_label(name) if name else [])]
        if name in volumes:
            errors.append(FieldError("Duplicate value", f"{field}.volumes[{index}].name", name))
        volumes.add(name)
    containers = spec.get("containers") or []
    if not containers:
        errors.append(required(f"{field}.containers"))
    seen: set[str] = set()
    for kind in ("initContainers", "containers"):
        for index, container in enumerate(spec.get(kind) or []):
            path = f"{field}.{kind}[{index}]"
            errors += _validate_container(container, path, volumes, for_pod=for_pod)
            if container.get("name") in seen:
                errors.append(FieldError("Duplicate value", f"{path}.name", container["name"]))
            seen.add(container.get("name", ""))
    account = spec.get("serviceAccountName")
    if account:
        errors += [invalid(f"{field}.serviceAccountName", account, msg)
                   for msg in is_dns1123_subdomain(account)]
    policy = spec.get("restartPolicy")
    if policy is not None and policy not in ("Always", "OnFailure", "Never"):
        errors.append(unsupported(f"{field}.restartPolicy", policy,
                                  ("Always", "OnFailure", "Never")))
    errors += validate_labels(spec.get("nodeSelector"), f"{field}.nodeSelector")
    errors += _validate_tolerations(spec.get("tolerations") or [], f"{field}.tolerations")
    for key in ("activeDeadlineSeconds",):
        if spec.get(key) is not None and spec[key] < 1:
            errors.append(invalid(f"{field}.{key}", spec[key],
                                  "must be between 1 and 2147483647, inclusive"))
    return errors


def _all_containers(spec: Mapping[str, Any]) -> list[Any]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def validate_pod(pod: Body) -> None:
    """`ValidatePodCreate`: metadata (a DNS-1123 subdomain name) and the spec; 422."""
    decode_quantities(pod, "Pod", _all_containers(pod.get("spec") or {}))
    errors = validate_object_meta(pod.get("metadata") or {})
    errors += validate_pod_spec(pod.get("spec") or {}, "spec", for_pod=True)
    if errors:
        raise invalid_error("Pod", "", pod["metadata"].get("name", ""), errors)


# --- Job (pkg/apis/batch/validation/validation.go) -------------------------------------------


def _nonnegative(spec: Mapping[str, Any], key: str, field: str) -> list[FieldError]:
    """`ValidateNonnegativeField`."""
    value = spec.get(key)
    if value is not None and value < 0:
        return [invalid(f"{field}.{key}", value, "must be greater than or equal to 0")]
    return []


def validate_job(job: Body) -> None:
    """`ValidateJob` on create: metadata, the spec's numbers, the pod template (labels,
    annotations and `ValidatePodSpec`, without the checks only pods get), the restart policy."""
    meta = job.get("metadata") or {}
    name = meta.get("name", "")
    spec = job.get("spec") or {}
    decode_quantities(job, "Job", _all_containers(
        (spec.get("template") or {}).get("spec") or {}))
    errors = validate_object_meta(meta)
    for key in ("parallelism", "completions", "backoffLimit", "ttlSecondsAfterFinished"):
        errors += _nonnegative(spec, key, "spec")
    errors += _nonnegative(spec, "activeDeadlineSeconds", "spec")
    template = spec.get("template") or {}
    template_meta = template.get("metadata") or {}
    errors += validate_labels(template_meta.get("labels"), "spec.template.metadata.labels")
    errors += validate_annotations(template_meta.get("annotations"),
                                   "spec.template.metadata.annotations")
    pod_spec = template.get("spec") or {}
    errors += validate_pod_spec(pod_spec, "spec.template.spec", for_pod=False)
    policy = pod_spec.get("restartPolicy")
    if policy not in ("OnFailure", "Never"):
        errors.append(unsupported("spec.template.spec.restartPolicy", policy,
                                  ("OnFailure", "Never")))
    elif spec.get("podFailurePolicy") and policy != "Never":
        errors.append(invalid("spec.template.spec.restartPolicy", policy,
                              'only "Never" is supported when podFailurePolicy is specified'))
    if errors:
        raise invalid_error("Job", "batch", name, errors)
