"""The SchemaMigration CRD: a structural schema that documents itself and rejects bad specs.

The CEL rules are evaluated for real with cel-python (RE2 regular expressions, like the API
server), together with the OpenAPI keywords the API server enforces (type, required, enum,
lengths, pattern, defaults), by the small validator below.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import celpy
import pytest
import yaml

from tests.revision_ids import ACCEPTED, MALFORMED, RELATIVE, TargetCase
from umt_operator import spec as spec_module

pytestmark = pytest.mark.unit

CRD_PATH = Path(__file__).resolve().parents[2] / "crds" / "schemamigrations.migrations.umt.dev.yaml"
CEL = celpy.Environment()


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    return yaml.safe_load(CRD_PATH.read_text())


@pytest.fixture(scope="module")
def version(crd: dict[str, Any]) -> dict[str, Any]:
    (only,) = crd["spec"]["versions"]
    return only


@pytest.fixture(scope="module")
def root_schema(version: dict[str, Any]) -> dict[str, Any]:
    return version["schema"]["openAPIV3Schema"]


# --- a small API-server-like validator ---------------------------------------------------------

_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "integer": int,
    "number": (int, float),
}


def _type_ok(schema: dict[str, Any], value: Any) -> bool:
    if schema.get("x-kubernetes-int-or-string"):
        return isinstance(value, (int, str)) and not isinstance(value, bool)
    expected = schema.get("type")
    if expected in ("integer", "number") and isinstance(value, bool):
        return False
    return expected is None or isinstance(value, _TYPES[expected])


def _cel_rules(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    errors = []
    for rule in schema.get("x-kubernetes-validations", []):
        program = CEL.program(CEL.compile(rule["rule"]))
        result = program.evaluate({"self": celpy.json_to_cel(value)})
        assert isinstance(result, celpy.celtypes.BoolType), f"rule {rule['rule']!r}: {result!r}"
        if not result:
            errors.append(f"{path}: {rule['message']}")
    return errors


def _scalar_keywords(schema: dict[str, Any], value: Any, path: str) -> list[str]:
    errors = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: Unsupported value: {value!r}")
    if isinstance(value, str):
        if len(value) > schema.get("maxLength", len(value)):
            errors.append(f"{path}: Too long")
        if len(value) < schema.get("minLength", 0):
            errors.append(f"{path}: Required value")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: should match {schema['pattern']!r}")
    if (isinstance(value, int) and not isinstance(value, bool)
            and not schema.get("minimum", value) <= value <= schema.get("maximum", value)):
        errors.append(f"{path}: out of range")
    return errors


def _apply_defaults(schema: dict[str, Any], value: dict[str, Any]) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in value and "default" in sub:
            value[key] = copy.deepcopy(sub["default"])


def _children(schema: dict[str, Any], value: Any, path: str) -> Iterator[tuple[dict, Any, str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in schema.get("properties", {}):
                yield schema["properties"][key], item, f"{path}.{key}"
            elif "additionalProperties" in schema:
                yield schema["additionalProperties"], item, f"{path}[{key}]"
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield schema["items"], item, f"{path}[{index}]"


def validate(schema: dict[str, Any], value: Any, path: str = "") -> list[str]:
    """Errors the API server would report for ``value`` (defaults applied in place first)."""
    if not _type_ok(schema, value):
        return [f"{path}: Invalid value: must be of type {schema.get('type')}"]
    errors = _scalar_keywords(schema, value, path)
    if isinstance(value, dict):
        _apply_defaults(schema, value)
        known = set(schema.get("properties", {}))
        if "additionalProperties" not in schema and "metadata" not in path:
            errors += [f"{path}.{key}: unknown field" for key in value if key not in known]
        errors += [f"{path}.{key}: Required value" for key in schema.get("required", [])
                   if key not in value]
        if len(value) > schema.get("maxProperties", len(value)):
            errors.append(f"{path}: Too many properties")
    if isinstance(value, list) and len(value) > schema.get("maxItems", len(value)):
        errors.append(f"{path}: Too many items")
    for sub_schema, item, sub_path in _children(schema, value, path):
        errors += validate(sub_schema, item, sub_path)
    if not errors:  # like the API server, CEL runs on values that passed the schema
        errors += _cel_rules(schema, value, path)
    return errors


def resource(**spec: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "targetRevision": "head",
        "database": {"urlSecretRef": {"name": "umt-db"}},
    }
    body.update(spec)
    return {
        "apiVersion": "migrations.umt.dev/v1alpha1",
        "kind": "SchemaMigration",
        "metadata": {"name": "umt-schema", "namespace": "umt"},
        "spec": body,
    }


def spec_errors(root_schema: dict[str, Any], **spec: Any) -> list[str]:
    return validate(root_schema, resource(**spec))


# --- the CRD's shape ---------------------------------------------------------------------------


def test_names_scope_and_version(crd: dict[str, Any], version: dict[str, Any]) -> None:
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == "schemamigrations.migrations.umt.dev"
    assert crd["spec"]["group"] == "migrations.umt.dev"
    assert crd["spec"]["scope"] == "Namespaced"
    names = crd["spec"]["names"]
    assert names["kind"] == "SchemaMigration"
    assert names["plural"] == "schemamigrations"
    assert names["singular"] == "schemamigration"
    assert names["shortNames"] == ["smig"]
    assert names["categories"] == ["umt"]
    assert version["name"] == "v1alpha1"
    assert version["served"] is True and version["storage"] is True
    assert version["subresources"] == {"status": {}}


def test_kubernetes_client_accepts_the_crd(crd: dict[str, Any]) -> None:
    """The official client's models check the required fields and types of the CRD object."""
    from kubernetes.client import V1CustomResourceDefinition

    model = V1CustomResourceDefinition.from_dict(crd)
    assert model.spec.names.kind == "SchemaMigration"
    schema = model.spec.versions[0].var_schema.open_apiv3_schema
    assert schema.properties["spec"].required == ["targetRevision", "database"]


def test_schema_uses_only_known_keywords(root_schema: dict[str, Any]) -> None:
    """A misspelt keyword (``descripton``, ``maxlength``) would be silently ignored."""
    from kubernetes.client import V1JSONSchemaProps

    known = set(V1JSONSchemaProps.attribute_map.values())
    unknown = [(path, key) for path, node in _walk(root_schema) for key in node if key not in known]
    assert unknown == []


def _walk(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _walk(sub, f"{path}.{key}")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from _walk(schema["additionalProperties"], f"{path}[*]")
    if "items" in schema:
        yield from _walk(schema["items"], f"{path}[]")


def test_every_field_has_a_description(root_schema: dict[str, Any]) -> None:
    missing = [path or "<root>" for path, node in _walk(root_schema) if not node.get("description")]
    assert missing == [".metadata"]


def test_metadata_schema_is_left_to_the_api_server(root_schema: dict[str, Any]) -> None:
    """Anything but name/generateName rules under metadata (a description included) makes the
    API server reject the CRD: "metadata is implicitly specified"."""
    assert root_schema["properties"]["metadata"] == {"type": "object"}


def test_schema_is_structural(root_schema: dict[str, Any]) -> None:
    for path, node in _walk(root_schema):
        if node.get("x-kubernetes-int-or-string"):
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}], path
            continue
        assert node.get("type") in _TYPES, f"{path} has no type"
        if "properties" in node or "additionalProperties" in node:
            assert node["type"] == "object", path
        if node["type"] == "array":
            assert "items" in node, path


def test_list_maps_declare_their_keys(root_schema: dict[str, Any]) -> None:
    list_maps = [(p, n) for p, n in _walk(root_schema) if n.get("x-kubernetes-list-type") == "map"]
    assert [p for p, _ in list_maps] == [".status.conditions"]
    for _, node in list_maps:
        assert node["x-kubernetes-list-map-keys"] == ["type"]
        assert set(node["x-kubernetes-list-map-keys"]) <= set(node["items"]["required"])


def test_status_defaults_observed_generation(root_schema: dict[str, Any]) -> None:
    status = root_schema["properties"]["status"]
    assert status["default"] == {"observedGeneration": -1}
    conditions = status["properties"]["conditions"]["items"]["properties"]
    assert conditions["status"]["enum"] == ["True", "False", "Unknown"]
    assert status["properties"]["phase"]["enum"] == ["Pending", "Running", "Succeeded", "Failed"]
    assert status["properties"]["direction"]["enum"] == ["upgrade", "downgrade", "none"]


def test_printer_columns(version: dict[str, Any]) -> None:
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Ready", "Reason", "Target", "Current", "Age", "Job", "Message"]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Reason"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].reason'
    assert columns["Target"]["jsonPath"] == ".spec.targetRevision"
    assert columns["Current"]["jsonPath"] == ".status.currentRevision"
    assert columns["Age"]["type"] == "date"
    assert columns["Job"]["priority"] == 1 and columns["Message"]["priority"] == 1
    assert all("priority" not in columns[n] for n in ("Ready", "Reason", "Target", "Current"))


def test_cel_rules_use_the_operator_patterns(root_schema: dict[str, Any]) -> None:
    """spec.py re-checks what the CRD checks, with the very same regular expressions."""
    target = root_schema["properties"]["spec"]["properties"]["targetRevision"]
    rules = " ".join(r["rule"] for r in target["x-kubernetes-validations"])
    assert f"'{spec_module.RELATIVE_REVISION_PATTERN}'" in rules
    assert f"'{spec_module.REVISION_PATTERN}'" in rules
    assert f"!self.endsWith('{spec_module.BRANCH_BASE_SUFFIX}')" in rules
    resources = root_schema["properties"]["spec"]["properties"]["job"]["properties"]["resources"]
    for section in ("requests", "limits"):
        quantity = resources["properties"][section]["additionalProperties"]
        assert quantity["pattern"] == spec_module.QUANTITY_PATTERN
    messages = [r["message"] for r in target["x-kubernetes-validations"]]
    assert messages == [spec_module.RELATIVE_REVISION_MESSAGE, spec_module.REVISION_FORMAT_MESSAGE]


# --- good and bad resources -------------------------------------------------------------------


@pytest.mark.parametrize("case", ACCEPTED, ids=str)
def test_valid_targets_are_accepted(root_schema: dict[str, Any], case: TargetCase) -> None:
    assert spec_errors(root_schema, targetRevision=case.target) == [], case.why


@pytest.mark.parametrize("case", RELATIVE, ids=str)
def test_relative_targets_are_rejected(root_schema: dict[str, Any], case: TargetCase) -> None:
    assert spec_errors(root_schema, targetRevision=case.target) == [
        f".spec.targetRevision: {spec_module.RELATIVE_REVISION_MESSAGE}"
    ], case.why


@pytest.mark.parametrize("case", MALFORMED, ids=str)
def test_malformed_targets_are_rejected(root_schema: dict[str, Any], case: TargetCase) -> None:
    assert spec_errors(root_schema, targetRevision=case.target) == [
        f".spec.targetRevision: {spec_module.REVISION_FORMAT_MESSAGE}"
    ], case.why


def test_target_revision_is_required(root_schema: dict[str, Any]) -> None:
    body = resource()
    del body["spec"]["targetRevision"]
    assert validate(root_schema, body) == [".spec.targetRevision: Required value"]


def test_defaults_are_applied(root_schema: dict[str, Any]) -> None:
    body = resource()
    assert validate(root_schema, body) == []
    assert body["spec"]["allowDowngrade"] is False
    assert body["spec"]["database"]["urlSecretRef"]["key"] == "url"
    assert body["status"] == {"observedGeneration": -1}  # never Ready before it is observed


@pytest.mark.parametrize("name", ["", "UMT-DB", "umt_db", "-umt", "umt-", "a" * 254])
def test_bad_secret_names_are_rejected(root_schema: dict[str, Any], name: str) -> None:
    errors = spec_errors(root_schema, database={"urlSecretRef": {"name": name}})
    expected = f".spec.database.urlSecretRef.name: {spec_module.SECRET_NAME_MESSAGE}"
    assert errors == [expected] or errors == [".spec.database.urlSecretRef.name: Too long"]


@pytest.mark.parametrize("name", ["umt-db", "db.umt.example", "a", "a" * 253])
def test_good_secret_names_are_accepted(root_schema: dict[str, Any], name: str) -> None:
    database = {"urlSecretRef": {"name": name, "key": "db.url"}}
    assert spec_errors(root_schema, database=database) == []


@pytest.mark.parametrize("key", ["", "a/b", "u r l"])
def test_bad_secret_keys_are_rejected(root_schema: dict[str, Any], key: str) -> None:
    errors = spec_errors(root_schema, database={"urlSecretRef": {"name": "umt-db", "key": key}})
    assert errors == [f".spec.database.urlSecretRef.key: {spec_module.SECRET_KEY_MESSAGE}"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("backoffLimit", 99, "job.backoffLimit must be between 0 and 10"),
        ("backoffLimit", -1, "job.backoffLimit must be between 0 and 10"),
        ("activeDeadlineSeconds", 0, "job.activeDeadlineSeconds must be between 1 and 86400"),
        ("ttlSecondsAfterFinished", 700000,
         "job.ttlSecondsAfterFinished must be between 0 and 604800"),
    ],
)
def test_job_ranges_are_enforced(
    root_schema: dict[str, Any], field: str, value: int, message: str
) -> None:
    assert spec_errors(root_schema, job={field: value}) == [f".spec.job.{field}: {message}"]


@pytest.mark.parametrize("name", ["DATABASE_URL", "TERMINATION_MESSAGE_PATH"])
def test_reserved_env_names_are_rejected(root_schema: dict[str, Any], name: str) -> None:
    errors = spec_errors(root_schema, job={"env": [{"name": "OK", "value": "1"}, {"name": name}]})
    assert errors == [f".spec.job.env[1]: {spec_module.RESERVED_ENV_MESSAGE}"]


def test_env_value_and_value_from_are_exclusive(root_schema: dict[str, Any]) -> None:
    env = [{"name": "X", "value": "1", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    assert spec_errors(root_schema, job={"env": env}) == [
        ".spec.job.env[0]: job.env entries take either value or valueFrom, not both"
    ]


def test_a_spec_with_every_knob_is_accepted(root_schema: dict[str, Any]) -> None:
    job = {
        "backoffLimit": 0,
        "activeDeadlineSeconds": 600,
        "ttlSecondsAfterFinished": 0,
        "serviceAccountName": "migrator",
        "resources": {"requests": {"cpu": "100m", "memory": 1073741824}, "limits": {"cpu": 1}},
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db",
                         "effect": "NoSchedule"}],
        "podLabels": {"team": "marketing"},
        "podAnnotations": {"example.com/note": "anything: goes"},
        "env": [
            {"name": "LOG_LEVEL", "value": "debug"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "t", "key": "k"}}},
        ],
    }
    errors = spec_errors(
        root_schema,
        targetRevision="3f2a9c1e7b42",
        allowDowngrade=True,
        image="registry.example/umt:1.4.0",
        imagePullPolicy="Always",
        alembic={"config": "/srv/alembic.ini", "workingDir": "/srv"},
        job=job,
    )
    assert errors == []


@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ({"imagePullPolicy": "Sometimes"}, ".spec.imagePullPolicy: Unsupported value: 'Sometimes'"),
        ({"allowDowngrade": "yes"}, ".spec.allowDowngrade: Invalid value: must be of type boolean"),
        ({"job": {"podLabels": {"team": "not valid!"}}}, ".spec.job.podLabels[team]: should match"),
        ({"job": {"tolerations": [{"operator": "Maybe"}]}},
         ".spec.job.tolerations[0].operator: Unsupported value: 'Maybe'"),
        ({"targetRevision": "a" * 129}, ".spec.targetRevision: Too long"),
        ({"alembic": {"workingDir": "srv/app"}},
         f".spec.alembic.workingDir: {spec_module.WORKING_DIR_MESSAGE}"),
        ({"alembic": {"workingDir": ""}}, ".spec.alembic.workingDir: Required value"),
        ({"job": {"resources": {"limits": {"memory": "1 GB"}}}},
         ".spec.job.resources.limits[memory]: should match"),
    ],
)
def test_schema_keywords_reject(root_schema: dict[str, Any], spec: dict, error: str) -> None:
    errors = spec_errors(root_schema, **spec)
    assert len(errors) == 1 and errors[0].startswith(error)


def test_status_written_by_the_operator_is_valid(root_schema: dict[str, Any]) -> None:
    body = resource()
    body["status"] = {
        "observedGeneration": 3,
        "phase": "Succeeded",
        "currentRevision": "d4e5f6a7b8c9",
        "targetRevision": "d4e5f6a7b8c9",
        "direction": "upgrade",
        "appliedRevisions": ["b1", "d4e5f6a7b8c9"],
        "appliedImage": "registry/umt:1.4.0",
        "jobName": "umt-schema-3-x2k4",
        "startTime": "2025-01-01T00:00:00Z",
        "completionTime": "2025-01-01T00:00:02Z",
        "message": "migrated a1b2c3→d4e5f6a7b8c9, 2 steps, 1.2 s",
        "conditions": [
            {"type": t, "status": s, "observedGeneration": 3, "reason": "Succeeded",
             "message": "", "lastTransitionTime": "2025-01-01T00:00:02Z"}
            for t, s in (("Ready", "True"), ("Reconciling", "False"), ("Stalled", "False"))
        ],
    }
    assert validate(root_schema, body) == []
    body["status"]["conditions"][0]["reason"] = "not a reason"
    assert validate(root_schema, body)[0].startswith(".status.conditions[0].reason: should match")


# --- issue 13, finding 5: refuse at apply time what the cluster would refuse later ----------


@pytest.mark.parametrize("image", ["registry.example/umt:2.0.0 ", " registry.example/umt:2.0.0",
                                   "registry.example/umt:2.0.0\n", "registry.example/ umt:2"])
def test_images_with_whitespace_are_rejected(root_schema: dict[str, Any], image: str) -> None:
    """A pod whose image has leading or trailing whitespace is refused by the API server (the
    Job controller's FailedCreate), long after the Job was accepted: the CRD refuses it."""
    assert any("image must not contain whitespace" in e
               for e in spec_errors(root_schema, image=image))


@pytest.mark.parametrize("account", ["Bad_Name", "-x", "ops admin", "a" * 254, "ops."])
def test_service_account_names_must_be_dns_subdomains(root_schema: dict[str, Any],
                                                      account: str) -> None:
    errors = spec_errors(root_schema, job={"serviceAccountName": account})
    assert errors, account


@pytest.mark.parametrize("account", ["default", "umt-migrator", "ops.team-a"])
def test_service_account_names_are_accepted(root_schema: dict[str, Any], account: str) -> None:
    assert spec_errors(root_schema, job={"serviceAccountName": account}) == []
