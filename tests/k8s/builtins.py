"""Built-in resources the emulator serves, and the defaulting the apiserver applies to them.

Discovery data (kinds, verbs, short names) comes from kmock's bundled K3s catalogue, so
`kubectl get po`/`jobs`/`secrets` resolve exactly as against a real cluster.
"""

from __future__ import annotations

import base64
import copy
import warnings
from typing import Any

import kmock

from tests.k8s.apimachinery import ApiError
from tests.k8s.crd_validation import CustomResourceSchema
from tests.k8s.store import Body, Hook
from tests.k8s.validation import parse_quantity, validate_job, validate_pod

#: Built-in resources served by default (group/version/plural, as kmock spells them).
BUILTIN_RESOURCES = (
    "v1/namespaces",
    "v1/pods",
    "v1/secrets",
    "v1/configmaps",
    "v1/serviceaccounts",
    "v1/resourcequotas",
    "v1/events",
    "events.k8s.io/v1/events",
    "batch/v1/jobs",
    "coordination.k8s.io/v1/leases",
    "apiextensions.k8s.io/v1/customresourcedefinitions",
)

#: Kinds without `metadata.generation`: their strategies' `PrepareForCreate` never set it
#: (pkg/registry/core/{namespace,secret,configmap,serviceaccount,event}/strategy.go,
#: pkg/registry/coordination/lease/strategy.go), unlike Pods, Jobs, CRDs and custom resources.
WITHOUT_GENERATION = (
    "v1/namespaces",
    "v1/secrets",
    "v1/configmaps",
    "v1/serviceaccounts",
    "v1/resourcequotas",
    "v1/events",
    "events.k8s.io/v1/events",
    "coordination.k8s.io/v1/leases",
)

#: What kmock's catalogue lacks: kopf's own peering resources (used unless standalone).
KOPF_PEERINGS = (
    ("kopf.dev/v1/kopfpeerings", "KopfPeering", True),
    ("kopf.dev/v1/clusterkopfpeerings", "ClusterKopfPeering", False),
)

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


def bundled_catalogue() -> kmock.ResourcesArray:
    catalogue = kmock.ResourcesArray()
    with warnings.catch_warnings():  # kmock 0.8 uses the deprecated importlib.resources API
        warnings.simplefilter("ignore", DeprecationWarning)
        catalogue.load_bundled()
    return catalogue


# --- Admission (defaulting and validation the apiserver does for built-in kinds) -----------


def default_secret(secret: Body, old: Body | None) -> None:
    """`stringData` is write-only: the apiserver folds it into base64 `data`."""
    string_data = secret.pop("stringData", None) or {}
    data = secret.setdefault("data", {})
    for key, value in string_data.items():
        data[key] = base64.b64encode(str(value).encode()).decode()
    secret.setdefault("type", "Opaque")


def _default_containers(pod_spec: Body) -> None:
    for container in pod_spec.get("containers", []) + pod_spec.get("initContainers", []):
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        image = str(container.get("image", ""))
        tag = image.rsplit("/", 1)[-1].partition(":")[2]
        pull = "Always" if tag in ("", "latest") and "@" not in image else "IfNotPresent"
        container.setdefault("imagePullPolicy", pull)
    pod_spec.setdefault("restartPolicy", "Always")
    pod_spec.setdefault("terminationGracePeriodSeconds", 30)
    pod_spec.setdefault("dnsPolicy", "ClusterFirst")
    pod_spec.setdefault("schedulerName", "default-scheduler")


def _qos_class(pod_spec: Body) -> str:
    """The pod's QoS class, as `GetPodQOS` (pkg/apis/core/helper/qos/qos.go) decides it:
    no requests or limits anywhere is BestEffort; cpu and memory limits on every container,
    equal to their requests, is Guaranteed; anything else is Burstable."""
    containers = pod_spec.get("containers", []) + pod_spec.get("initContainers", [])
    resources = [c.get("resources") or {} for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in resources):
        return "BestEffort"
    for r in resources:
        # A container with limits and no requests requests its limits (SetDefaults_Pod).
        limits = r.get("limits") or {}
        requests = {**limits, **(r.get("requests") or {})}
        if any(k not in limits or parse_quantity(requests.get(k)) != parse_quantity(limits[k])
               for k in ("cpu", "memory")):
            return "Burstable"
    return "Guaranteed"


def default_pod(pod: Body, old: Body | None) -> None:
    """A new pod starts `Pending`, whatever the client sent: `PrepareForCreate` in
    pkg/registry/core/pod/strategy.go resets the status to `{phase: Pending, qosClass}`;
    then it is validated (tests/k8s/validation.py), whoever creates it."""
    if old is None:
        spec = pod.setdefault("spec", {})
        _default_containers(spec)
        pod["status"] = {"phase": "Pending", "qosClass": _qos_class(spec)}
        validate_pod(pod)  # pkg/registry/core/pod/strategy.go `Validate` (ValidatePodCreate)


def default_job(job: Body, old: Body | None) -> None:
    """Defaults and labels of a new Job, then its validation (tests/k8s/validation.py); its
    pod template is immutable afterwards."""
    name = job["metadata"]["name"]
    if old is not None:
        if job.get("spec", {}).get("template") != old.get("spec", {}).get("template"):
            raise ApiError(422, "Invalid", f'Job.batch "{name}" is invalid: spec.template: '
                           "Invalid value: field is immutable", name=name)
        return
    spec = job.setdefault("spec", {})
    template = spec.setdefault("template", {})
    pod_spec = template.setdefault("spec", {})
    _default_containers(pod_spec)
    for key, value in (("backoffLimit", 6), ("completions", 1), ("parallelism", 1),
                       ("suspend", False), ("completionMode", "NonIndexed"),
                       ("manualSelector", False)):
        spec.setdefault(key, value)
    uid = job["metadata"]["uid"]
    labels = {
        "batch.kubernetes.io/controller-uid": uid,
        "batch.kubernetes.io/job-name": name,
        "controller-uid": uid,
        "job-name": name,
    }
    spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}})
    template.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
    if not job["metadata"].get("labels"):
        job["metadata"]["labels"] = copy.deepcopy(template["metadata"]["labels"])
    # Validation follows defaulting (pkg/registry/batch/job/strategy.go `Validate`): a
    # template without restartPolicy was defaulted to Always, which a Job refuses.
    validate_job(job)


ADMISSION: dict[str, list[Hook]] = {
    "v1/secrets": [default_secret],
    "v1/pods": [default_pod],
    "batch/v1/jobs": [default_job],
}


def crd_registration(crd: Body) -> dict[str, Any]:
    """Keyword arguments for `Emulator.register()` read from a CustomResourceDefinition."""
    spec = crd["spec"]
    names = spec["names"]
    version = next((v for v in spec["versions"] if v.get("storage")), spec["versions"][0])
    schema = (version.get("schema") or {}).get("openAPIV3Schema") or {}
    return {
        "resource": f"{spec['group']}/{version['name']}/{names['plural']}",
        "kind": names["kind"],
        "namespaced": spec.get("scope", "Namespaced") == "Namespaced",
        "status_subresource": "status" in (version.get("subresources") or {}),
        "singular": names.get("singular"),
        "short_names": tuple(names.get("shortNames") or ()),
        "categories": tuple(names.get("categories") or ()),
        "admission": (CustomResourceSchema(crd).admit,) if schema else (),
        "printer_columns": tuple(version.get("additionalPrinterColumns") or ()),
    }
