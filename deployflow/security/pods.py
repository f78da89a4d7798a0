"""Pods from specs: the Pod Security "baseline" rules that a deployment tool could otherwise carry into a cluster.

A spec may carry whole manifests (a Deployment, a hook's Job). This checker refuses the privileges the Kubernetes
"baseline" profile forbids (privileged containers, host namespaces, hostPath volumes, capabilities beyond the
baseline set, host ports) unless the operator of the process that validates allows them by rule name in
DEPLOYFLOW_ALLOW_POD_PRIVILEGES (a comma list, e.g. `hostNetwork,hostPort`). It is an early, readable refusal, not a
security boundary: Pod Security Admission on the namespace stays the real control.

The allowance is read once, when this module is imported. Specs are also validated inside workflows (the worker's
data converter), where reading the environment at each check could differ between workers and replays; a test or
embedding code states its allowance explicitly with `pod_privileges_allowed(...)`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

ENV_VAR = "DEPLOYFLOW_ALLOW_POD_PRIVILEGES"
RULES = ("privileged", "hostNetwork", "hostPID", "hostIPC", "hostPath", "capabilities", "hostPort")
BASELINE_CAPABILITIES = frozenset({
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
})
_CONTAINER_KINDS = ("containers", "initContainers", "ephemeralContainers")
_BY_LOWER = {rule.lower(): rule for rule in RULES}


@dataclass(frozen=True)
class Violation:
    field: str
    rule: str
    what: str

    def message(self) -> str:
        return (
            f"{self.field}: {self.what} is refused by the '{self.rule}' rule (Pod Security baseline); if this "
            f"workload really needs it, set {ENV_VAR}={self.rule} in the environment of the process that validates "
            "specs (the CLI and the worker). Pod Security Admission on the namespace stays the real control"
        )


def parse_allowance(text: str) -> frozenset[str]:
    """Rule names from a comma list, case-insensitive; unknown names are ignored (see `unknown_rules`)."""
    names = (part.strip().lower() for part in text.split(","))
    return frozenset(_BY_LOWER[name] for name in names if name in _BY_LOWER)


def unknown_rules(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip() and part.strip().lower() not in _BY_LOWER]


_FROM_ENVIRONMENT = parse_allowance(os.environ.get(ENV_VAR, ""))
_override: ContextVar[frozenset[str] | None] = ContextVar("deployflow_pod_privileges", default=None)


def allowed_rules() -> frozenset[str]:
    override = _override.get()
    return _FROM_ENVIRONMENT if override is None else override


@contextmanager
def pod_privileges_allowed(rules: Iterable[str]) -> Iterator[None]:
    """Validates with exactly these rules allowed (none: `pod_privileges_allowed(())`), whatever the environment."""
    token = _override.set(parse_allowance(",".join(rules)))
    try:
        yield
    finally:
        _override.reset(token)


def _true(value: object) -> bool:
    # The API server would refuse a string here, but a checker errs on the side of refusing.
    return value is True or (isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"))


def _containers(pod_spec: dict[str, object]) -> Iterator[tuple[str, dict[str, object]]]:
    for kind in _CONTAINER_KINDS:
        items = pod_spec.get(kind)
        if isinstance(items, list):
            for i, container in enumerate(items):
                if isinstance(container, dict):
                    yield f"{kind}[{i}]", container


def find_violations(pod_spec: object, field: str) -> list[Violation]:
    """Every baseline rule a pod spec breaks, in a stable order; `field` is the dotted path of the pod spec."""
    if not isinstance(pod_spec, dict):
        return []
    found: list[Violation] = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        if _true(pod_spec.get(key)):
            found.append(Violation(f"{field}.{key}", key, f"{key}: true (the node's namespace)"))
    volumes = pod_spec.get("volumes")
    for i, volume in enumerate(volumes if isinstance(volumes, list) else []):
        if isinstance(volume, dict) and volume.get("hostPath") is not None:
            what = "a hostPath volume (the node's files)"
            found.append(Violation(f"{field}.volumes[{i}].hostPath", "hostPath", what))
    for where, container in _containers(pod_spec):
        context = container.get("securityContext")
        context = context if isinstance(context, dict) else {}
        if _true(context.get("privileged")):
            what = "a privileged container"
            found.append(Violation(f"{field}.{where}.securityContext.privileged", "privileged", what))
        capabilities = context.get("capabilities")
        added = capabilities.get("add") if isinstance(capabilities, dict) else None
        extra = sorted({str(c) for c in added if str(c).upper().removeprefix("CAP_") not in BASELINE_CAPABILITIES}
                       if isinstance(added, list) else set())
        if extra:
            found.append(Violation(f"{field}.{where}.securityContext.capabilities.add", "capabilities",
                                   f"adding capabilities beyond the baseline set ({', '.join(extra)})"))
        ports = container.get("ports")
        for j, port in enumerate(ports if isinstance(ports, list) else []):
            if isinstance(port, dict) and port.get("hostPort") not in (None, 0):
                found.append(Violation(f"{field}.{where}.ports[{j}].hostPort", "hostPort", "a hostPort"))
    return found


def check_pod_spec(pod_spec: object, field: str, allowed: frozenset[str] | None = None) -> None:
    """Raises ValueError (a pydantic validation error inside a model) for the first rule broken and not allowed."""
    allowed = allowed_rules() if allowed is None else allowed
    for violation in find_violations(pod_spec, field):
        if violation.rule not in allowed:
            raise ValueError(violation.message())
