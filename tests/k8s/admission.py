"""Validating admission of pods: PodSecurity and ResourceQuota, as the API server runs them.

Both run after the pod's own validation (tests/k8s/validation.py) and refuse with 403
Forbidden, `pods "<name>" is forbidden: <why>` (`admission.NewForbidden`,
k8s.io/apiserver/pkg/admission/errors.go), the name being the generated one for a
`generateName` pod (`rest.AdmissionToValidateObjectFunc`, "in case the generated name is
populated"). They apply to every pod, whoever creates it: a client or the Job controller,
whose refused creations become `FailedCreate` Events on the Job (tests/k8s/job_controller.py).

- **PodSecurity** (k8s.io/pod-security-admission): the namespace's
  `pod-security.kubernetes.io/enforce` label (`privileged` when absent, the cluster default)
  and `enforce-version` (`latest`); the `baseline` and `restricted` checks of
  `policy/check_*.go` that a pod of this project can meet, in the order of their check IDs,
  each as `<forbidden reason> (<forbidden detail>)`, joined by `, ` behind
  `violates PodSecurity "<level>:<version>": ` (admission/admission.go).
- **ResourceQuota** (plugin/pkg/admission/resourcequota/controller.go): every unscoped quota
  of the namespace; the pod's usage (pkg/quota/v1/evaluator/core/pods.go: `pods`,
  `count/pods`, `requests.*`/`limits.*` of cpu, memory, ephemeral-storage; `cpu`/`memory` as
  requests) plus what the namespace's running pods use must stay within `spec.hard`:
  `exceeded quota: <name>, requested: <r>, used: <u>, limited: <l>`; a quota on a compute
  resource the pod does not state is `failed quota: <name>: must specify <resources>`.

The AppArmor check reads the pod's `container.apparmor.security.beta.kubernetes.io/*`
annotations only (policy/check_appArmorProfile.go as of 1.29: `runtime/default`, `localhost/*`
or empty are allowed), not the 1.30+ `securityContext.appArmorProfile` fields.

Not copied: the SELinux, procMount, sysctl and Windows checks; PodSecurity warnings
and audit annotations (and its evaluation of Jobs, which only warns); quota scopes and
`status.used` (the usage is computed from the live pods instead of the quota controller's
last count); LimitRange.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from fractions import Fraction
from typing import Any

from tests.k8s.apimachinery import ApiError
from tests.k8s.validation import format_quantity, is_binary, parse_quantity

Body = dict[str, Any]
Lister = Callable[[str, str | None], list[Body]]  # (resource, namespace) -> live objects
Getter = Callable[[str, str | None, str], Body | None]  # (resource, namespace, name)

ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
ENFORCE_VERSION_LABEL = "pod-security.kubernetes.io/enforce-version"
LEVELS = ("privileged", "baseline", "restricted")
#: policy/check_capabilities_baseline.go: what a baseline pod may add.
BASELINE_CAPABILITIES = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
    "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}
#: policy/check_restrictedVolumes.go: the volume sources a restricted pod may use.
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral",
                      "persistentVolumeClaim", "projected", "secret"}


def forbidden(name: str, why: str) -> ApiError:
    return ApiError(403, "Forbidden", f'pods "{name}" is forbidden: {why}',
                    name=name, kind="pods")


# --- PodSecurity ------------------------------------------------------------------------------


def _containers(spec: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def _named(names: list[str], *, pod_or: bool = False) -> str:
    """`container "a"` / `containers "a", "b"` (policy/helpers.go `pluralize`, `joinQuote`)."""
    word = "container" if len(names) == 1 else "containers"
    quoted = ", ".join(f'"{name}"' for name in names)
    return f"{'pod or ' if pod_or else ''}{word} {quoted}"


def _security(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    return obj.get("securityContext") or {}


Check = Callable[[Mapping[str, Any]], "tuple[str, str] | None"]


def _allow_privilege_escalation(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    bad = [c["name"] for c in _containers(spec)
           if _security(c).get("allowPrivilegeEscalation") is not False]
    if bad:
        return ("allowPrivilegeEscalation != false",
                f"{_named(bad)} must set securityContext.allowPrivilegeEscalation=false")
    return None


def _capabilities_baseline(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    details = []
    for container in _containers(spec):
        added = (_security(container).get("capabilities") or {}).get("add") or []
        extra = [cap for cap in added if cap not in BASELINE_CAPABILITIES]
        if extra:
            quoted = ", ".join(f'"{cap}"' for cap in extra)
            details.append(f'{_named([container["name"]])} must not include {quoted} in '
                           "securityContext.capabilities.add")
    return ("non-default capabilities", "; ".join(details)) if details else None


def _capabilities_restricted(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    no_drop, adds = [], []
    for container in _containers(spec):
        capabilities = _security(container).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            no_drop.append(container["name"])
        extra = [cap for cap in capabilities.get("add") or [] if cap != "NET_BIND_SERVICE"]
        if extra:
            quoted = ", ".join(f'"{cap}"' for cap in extra)
            adds.append(f'{_named([container["name"]])} must not include {quoted} in '
                        "securityContext.capabilities.add")
    details = ([f'{_named(no_drop)} must set securityContext.capabilities.drop=["ALL"]']
               if no_drop else []) + adds
    return ("unrestricted capabilities", "; ".join(details)) if details else None


def _host_namespaces(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    set_ = [f"{key}=true" for key in ("hostNetwork", "hostPID", "hostIPC") if spec.get(key)]
    return ("host namespaces", ", ".join(set_)) if set_ else None


def _host_path_volumes(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    bad = [v["name"] for v in spec.get("volumes") or [] if "hostPath" in v]
    if bad:
        word = "volume" if len(bad) == 1 else "volumes"
        quoted = ", ".join(f'"{name}"' for name in bad)
        return "hostPath volumes", f"{word} {quoted}"
    return None


def _host_ports(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    details = []
    for container in _containers(spec):
        ports = [str(p["hostPort"]) for p in container.get("ports") or [] if p.get("hostPort")]
        if ports:
            word = "hostPort" if len(ports) == 1 else "hostPorts"
            details.append(f'{_named([container["name"]])} uses {word} {", ".join(ports)}')
    return ("hostPort", "; ".join(details)) if details else None


def _privileged(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    bad = [c["name"] for c in _containers(spec) if _security(c).get("privileged")]
    if bad:
        return "privileged", f"{_named(bad)} must not set securityContext.privileged=true"
    return None


def _restricted_volumes(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    details = []
    for volume in spec.get("volumes") or []:
        sources = [key for key in volume if key != "name"]
        bad = [source for source in sources if source not in RESTRICTED_VOLUMES]
        if bad:
            details.append(f'volume "{volume["name"]}" uses restricted volume type "{bad[0]}"')
    return ("restricted volume types", ", ".join(details)) if details else None


def _run_as_non_root(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    pod = _security(spec).get("runAsNonRoot")
    details = []
    if pod is False:
        details.append("pod must not set securityContext.runAsNonRoot=false")
    explicit_false = [c["name"] for c in _containers(spec)
                      if _security(c).get("runAsNonRoot") is False]
    if explicit_false:
        details.append(f"{_named(explicit_false)} must not set "
                       "securityContext.runAsNonRoot=false")
    if pod is not True:
        unset = [c["name"] for c in _containers(spec) if _security(c).get("runAsNonRoot") is None]
        if unset:
            details.append(f"{_named(unset, pod_or=True)} must set "
                           "securityContext.runAsNonRoot=true")
    return ("runAsNonRoot != true", "; ".join(details)) if details else None


def _run_as_user(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    details = []
    if _security(spec).get("runAsUser") == 0:
        details.append("pod must not set runAsUser=0")
    bad = [c["name"] for c in _containers(spec) if _security(c).get("runAsUser") == 0]
    if bad:
        details.append(f"{_named(bad)} must not set runAsUser=0")
    return ("runAsUser=0", "; ".join(details)) if details else None


def _seccomp_type(obj: Mapping[str, Any]) -> str | None:
    return (_security(obj).get("seccompProfile") or {}).get("type")


def _seccomp_baseline(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    details = []
    if _seccomp_type(spec) == "Unconfined":
        details.append('pod must not set securityContext.seccompProfile.type to "Unconfined"')
    bad = [c["name"] for c in _containers(spec) if _seccomp_type(c) == "Unconfined"]
    if bad:
        details.append(f'{_named(bad)} must not set securityContext.seccompProfile.type to '
                       '"Unconfined"')
    return ("seccompProfile", "; ".join(details)) if details else None


def _seccomp_restricted(spec: Mapping[str, Any]) -> tuple[str, str] | None:
    allowed = ("RuntimeDefault", "Localhost")
    pod = _seccomp_type(spec)
    details = []
    if pod is not None and pod not in allowed:
        details.append(f'pod must not set securityContext.seccompProfile.type to "{pod}"')
    for container in _containers(spec):
        kind = _seccomp_type(container)
        if kind is not None and kind not in allowed:
            details.append(f"{_named([container['name']])} must not set "
                           f'securityContext.seccompProfile.type to "{kind}"')
    if pod is None:
        unset = [c["name"] for c in _containers(spec) if _seccomp_type(c) is None]
        if unset:
            details.append(f'{_named(unset, pod_or=True)} must set securityContext.seccompProfile'
                           '.type to "RuntimeDefault" or "Localhost"')
    return ("seccompProfile", "; ".join(details)) if details else None


#: (check ID, level, the baseline check a restricted one overrides), sorted by ID as the
#: registry of k8s.io/pod-security-admission/policy orders them.
CHECKS: tuple[tuple[str, str, Check, str | None], ...] = (
    ("allowPrivilegeEscalation", "restricted", _allow_privilege_escalation, None),
    ("capabilities_baseline", "baseline", _capabilities_baseline, None),
    ("capabilities_restricted", "restricted", _capabilities_restricted, "capabilities_baseline"),
    ("hostNamespaces", "baseline", _host_namespaces, None),
    ("hostPathVolumes", "baseline", _host_path_volumes, None),
    ("hostPorts", "baseline", _host_ports, None),
    ("privileged", "baseline", _privileged, None),
    ("restrictedVolumes", "restricted", _restricted_volumes, "hostPathVolumes"),
    ("runAsNonRoot", "restricted", _run_as_non_root, None),
    ("runAsUser", "restricted", _run_as_user, None),
    ("seccompProfile_baseline", "baseline", _seccomp_baseline, None),
    ("seccompProfile_restricted", "restricted", _seccomp_restricted, "seccompProfile_baseline"),
)


#: corev1.AppArmorBetaContainerAnnotationKeyPrefix, AppArmorBetaProfileRuntimeDefault and
#: AppArmorBetaProfileNamePrefix (k8s.io/api/core/v1/annotation_key_constants.go).
APPARMOR_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def _app_armor(annotations: Mapping[str, str]) -> tuple[str, str] | None:
    """policy/check_appArmorProfile.go (baseline): only the default or a localhost profile."""
    bad = sorted(f'{key}="{value}"' for key, value in annotations.items()
                 if key.startswith(APPARMOR_PREFIX) and value
                 and value != "runtime/default" and not value.startswith("localhost/"))
    if not bad:
        return None
    reason = "forbidden AppArmor profile" if len(bad) == 1 else "forbidden AppArmor profiles"
    return (reason, ", ".join(bad))


def pod_security_violations(level: str, spec: Mapping[str, Any],
                            annotations: Mapping[str, str] | None = None) -> list[str]:
    """`<reason> (<detail>)` for every check of `level` the pod fails (its spec, and the
    annotations the AppArmor check reads), in check-ID order."""
    if level == "privileged":
        return []
    active = [check for check in CHECKS
              if check[1] == "baseline" or level == "restricted"]
    overridden = {check[3] for check in active if check[3]}
    results = [(check_id, check(spec)) for check_id, _, check, _ in active
               if check_id not in overridden]
    results.append(("appArmorProfile", _app_armor(annotations or {})))  # a baseline check
    return [f"{result[0]} ({result[1]})" for _, result in sorted(results, key=lambda r: r[0])
            if result is not None]


def pod_security(get: Getter) -> Callable[[Body, Body | None], None]:
    """The PodSecurity admission hook: enforce the namespace's level on new pods."""
    def hook(pod: Body, old: Body | None) -> None:
        if old is not None:
            return  # only creates (and a few updates this emulator does not serve)
        meta = pod["metadata"]
        namespace = get("v1/namespaces", None, meta.get("namespace") or "") or {}
        labels = (namespace.get("metadata") or {}).get("labels") or {}
        level = labels.get(ENFORCE_LABEL, "privileged")
        level = level if level in LEVELS else "restricted"  # an invalid level: the strictest
        version = labels.get(ENFORCE_VERSION_LABEL, "latest")
        violations = pod_security_violations(level, pod.get("spec") or {},
                                             meta.get("annotations") or {})
        if violations:
            raise forbidden(meta["name"], f'violates PodSecurity "{level}:{version}": '
                                          f"{', '.join(violations)}")

    return hook


# --- ResourceQuota ----------------------------------------------------------------------------

_COMPUTE = ("cpu", "memory", "ephemeral-storage")


def pod_usage(pod: Mapping[str, Any]) -> dict[str, Fraction]:
    """What one pod counts against a quota (pkg/quota/v1/evaluator/core/pods.go `PodUsageFunc`:
    the sum over containers, or the largest init container when that is more)."""
    spec = pod.get("spec") or {}
    usage: dict[str, Fraction] = {"pods": Fraction(1), "count/pods": Fraction(1)}
    for part in ("requests", "limits"):
        for resource in _COMPUTE:
            total = Fraction(0)
            for container in spec.get("containers") or []:
                resources = container.get("resources") or {}
                values = {**(resources.get("limits") or {}), **(resources.get(part) or {})} \
                    if part == "requests" else resources.get("limits") or {}
                total += parse_quantity(values.get(resource, 0)) or 0
            for container in spec.get("initContainers") or []:
                resources = container.get("resources") or {}
                values = {**(resources.get("limits") or {}), **(resources.get(part) or {})} \
                    if part == "requests" else resources.get("limits") or {}
                total = max(total, parse_quantity(values.get(resource, 0)) or Fraction(0))
            usage[f"{part}.{resource}"] = total
            if part == "requests":
                usage[resource] = total
    return usage


def _missing(pod: Mapping[str, Any], hard: Iterable[str]) -> list[str]:
    """`podComputeUsageHelper` constraints: a quota on requests.X / limits.X (or X) needs
    every container to state it."""
    missing = set()
    for container in _containers(pod.get("spec") or {}):
        resources = container.get("resources") or {}
        requests = {**(resources.get("limits") or {}), **(resources.get("requests") or {})}
        limits = resources.get("limits") or {}
        for name in hard:
            part, _, resource = name.rpartition(".")
            if resource not in ("cpu", "memory"):
                continue
            stated = limits if part == "limits" else requests
            if resource not in stated:
                missing.add(name)
    return sorted(missing)


def _pretty(values: Mapping[str, Fraction], hard: Mapping[str, Any]) -> str:
    return ",".join(f"{key}={format_quantity(values[key], is_binary(hard.get(key)))}"
                    for key in sorted(values))


def resource_quota(list_: Lister) -> Callable[[Body, Body | None], None]:
    """The ResourceQuota admission hook for new pods."""
    def hook(pod: Body, old: Body | None) -> None:
        if old is not None:
            return
        meta = pod["metadata"]
        namespace = meta.get("namespace")
        quotas = [q for q in list_("v1/resourcequotas", namespace)
                  if not (q.get("spec") or {}).get("scopes")
                  and not (q.get("spec") or {}).get("scopeSelector")]
        if not quotas:
            return
        running = [p for p in list_("v1/pods", namespace)
                   if (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
        requested = pod_usage(pod)
        for quota in sorted(quotas, key=lambda q: q["metadata"]["name"]):
            hard = (quota.get("spec") or {}).get("hard") or {}
            missing = _missing(pod, hard)
            if missing:
                raise forbidden(meta["name"], f"failed quota: {quota['metadata']['name']}: "
                                              f"must specify {','.join(missing)}")
            used = {key: sum((pod_usage(p).get(key, Fraction(0)) for p in running), Fraction(0))
                    for key in hard if key in requested}
            over = [key for key in used
                    if used[key] + requested[key] > (parse_quantity(hard[key]) or 0)]
            if over:
                limits = {key: parse_quantity(hard[key]) or Fraction(0) for key in over}
                raise forbidden(meta["name"], (
                    f"exceeded quota: {quota['metadata']['name']}, "
                    f"requested: {_pretty({k: requested[k] for k in over}, hard)}, "
                    f"used: {_pretty({k: used[k] for k in over}, hard)}, "
                    f"limited: {_pretty(limits, hard)}"))

    return hook
