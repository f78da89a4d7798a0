"""Where credentials may come from: only the sources the worker's operator set aside for them.

Whoever may start a workflow chooses the spec, so a spec must not be able to name *any* environment variable of the
worker (its Temporal API key is one) or *any* Secret of the target namespace as a header value or a webhook URL:
that would send them to a URL of the spec author's choosing. So:

- environment variables must start with a prefix (``DEPLOYFLOW_CRED_`` unless ``DEPLOYFLOW_CREDENTIAL_ENV_PREFIX``
  sets another); names starting with ``TEMPORAL`` (the worker's own connection) are refused whatever the prefix;
- Secrets must carry a label (``deployflow.io/credential=true`` unless ``DEPLOYFLOW_CREDENTIAL_SECRET_LABEL`` sets
  another ``key=value``); a Secret without it is read, refused, and its value never used.

Names are checked when the spec is read wherever the rule can be known then, and again when the value is fetched.
Every value fetched is handed to the activity's `Redactor`, so it is masked in whatever message follows.
"""

from __future__ import annotations

import base64
import binascii
import os
import re

from deployflow.security.redact import Redactor

ENV_PREFIX_SETTING = "DEPLOYFLOW_CREDENTIAL_ENV_PREFIX"
SECRET_LABEL_SETTING = "DEPLOYFLOW_CREDENTIAL_SECRET_LABEL"
DEFAULT_ENV_PREFIX = "DEPLOYFLOW_CRED_"
DEFAULT_SECRET_LABEL = "deployflow.io/credential=true"
_RESERVED_PREFIX = "TEMPORAL"

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class CredentialRefused(Exception):
    """The spec names a credential source the worker does not allow: no retry changes that."""


class CredentialMissing(Exception):
    """An allowed source is missing (variable unset, Secret or key absent): a person must create it."""


def env_prefix() -> str:
    """The configured prefix; an empty one would allow every variable, so it counts as unset."""
    return os.environ.get(ENV_PREFIX_SETTING, "").strip() or DEFAULT_ENV_PREFIX


def secret_label() -> tuple[str, str]:
    raw = os.environ.get(SECRET_LABEL_SETTING, "").strip() or DEFAULT_SECRET_LABEL
    key, sep, value = raw.partition("=")
    if not sep or not key.strip():
        raise CredentialRefused(
            f"{SECRET_LABEL_SETTING}={raw!r} is not a label 'key=value': no Secret is allowed until it is fixed"
        )
    return key.strip(), value.strip()


def env_rule(prefix: str | None = None) -> str:
    prefix = prefix or DEFAULT_ENV_PREFIX
    return (
        f"credentials come only from environment variables starting with {prefix} (the worker's "
        f"{ENV_PREFIX_SETTING}), never from {_RESERVED_PREFIX}_* connection settings"
    )


def check_env_name(name: str, *, runtime: bool = False) -> str:
    """Raises ValueError naming the rule unless `name` is a credential variable the worker may read.

    When the spec is read (runtime=False) both the default and the configured prefix are accepted, since the
    process reading the spec may not share the worker's settings; the worker checks its own prefix (runtime=True).
    Inside a workflow only what does not depend on the worker's settings is checked: the workflow must decide the
    same way on every worker and on replay, and the activity checks the prefix when it reads the variable.
    """
    if not _ENV_NAME.match(name):
        raise ValueError("must be an environment variable name (letters, digits, '_')")
    if name.upper().startswith(_RESERVED_PREFIX):
        raise ValueError(f"{name} is refused: {env_rule()}")
    if not runtime and _in_workflow():
        return name
    configured = env_prefix()
    allowed = (configured,) if runtime else (DEFAULT_ENV_PREFIX, configured)
    if not name.startswith(allowed) or name in allowed:
        raise ValueError(f"{name} is refused: {env_rule(configured)}")
    return name


def _in_workflow() -> bool:
    from temporalio import workflow

    return workflow.in_workflow() or workflow.unsafe.in_sandbox()


class Credentials:
    """Fetches credential values for one activity attempt and hands each to its redactor."""

    def __init__(self, redactor: Redactor | None = None) -> None:
        self.redactor = redactor or Redactor()

    def env(self, name: str, field: str) -> str:
        """The value of an allowed environment variable of the worker; `field` names where the spec asked."""
        try:
            check_env_name(name, runtime=True)
        except ValueError as err:
            raise CredentialRefused(f"{field}: {err}") from None
        value = os.environ.get(name, "").strip()
        if not value:
            raise CredentialMissing(f"{field}: environment variable {name} is not set in the worker's environment")
        return self.redactor.add(value)

    def secret(self, cluster: str, namespace: str, name: str, key: str, field: str) -> str:
        """The value under `key` of a labelled Secret in `namespace`; a Secret without the label is refused
        before its data is looked at."""
        label_key, label_value = secret_label()
        secret = _read_secret(cluster, namespace, name, field)
        labels = (secret.get("metadata") or {}).get("labels") or {}
        if labels.get(label_key) != label_value:
            raise CredentialRefused(
                f"{field}: Secret {namespace}/{name} is refused: credentials come only from Secrets labelled "
                f"{label_key}={label_value} (the worker's {SECRET_LABEL_SETTING})"
            )
        raw = (secret.get("data") or {}).get(key)
        if raw is None:
            raise CredentialMissing(f"{field}: Secret {namespace}/{name} has no key {key}")
        try:
            value = base64.b64decode(raw, validate=True).decode().strip()
        except (binascii.Error, UnicodeDecodeError):
            raise CredentialMissing(f"{field}: Secret {namespace}/{name} key {key!r} is not UTF-8 text") from None
        if not value:
            raise CredentialMissing(f"{field}: Secret {namespace}/{name} key {key!r} is empty")
        return self.redactor.add(value)


def _read_secret(cluster: str, namespace: str, name: str, field: str) -> dict:
    # Imported here: spec validators import this module, and the workflow sandbox need not load the API client.
    from deployflow import kube

    try:
        secret = kube.get(cluster, kube.core_path(namespace, "secrets", name))
    except kube.KubeError as err:
        if err.status in (401, 403):
            raise CredentialMissing(
                f"{field}: reading Secret {namespace}/{name} was refused ({err.status}); check the worker's RBAC"
            ) from None
        raise
    if secret is None:
        raise CredentialMissing(f"{field}: Secret {namespace}/{name} does not exist")
    return secret
