"""Literal secrets in a spec: refused, because a spec is workflow input, kept in Temporal's history and shown in its UI.

One rule decides, wherever a value sits (container env, init containers, Job command and args, hook env, analysis
args, manifests): `literal_secret(name, value)` says why a named value looks like a credential, or None. A value
that only refers to a secret (`$(DB_PASSWORD)`, `${TOKEN}`) is fine: Kubernetes or the shell fills it in later.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import Any

ADVICE = (
    "secrets must not travel in workflow payloads (Temporal keeps them in its history and shows them in its UI): "
    "use valueFrom.secretKeyRef to reference a Kubernetes Secret, or a credential source (a Secret reference or an "
    "environment variable of the worker)"
)

# Long, distinctive words match anywhere in a name (MYSQL_ROOT_PASSWORD, githubToken); short ones only as a whole
# word, so BYPASS_CACHE or KEYCLOAK_URL are not taken for credentials.
_NAME_SUBSTRINGS = ("PASSWORD", "PASSWD", "SECRET", "TOKEN", "CREDENTIAL", "PRIVATEKEY", "APIKEY", "ACCESSKEY")
_NAME_WORDS = frozenset({"PASS", "PWD", "KEY", "DSN", "CREDS", "PASSPHRASE"})
_REFERENCE_SUFFIXES = frozenset({"FILE", "PATH", "DIR", "NAME", "REF"})
_WORD_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")

_REFERENCE = re.compile(r"^\s*(\$\([A-Za-z_][A-Za-z0-9_]*\)|\$\{[A-Za-z_][A-Za-z0-9_]*\}|\$[A-Za-z_][A-Za-z0-9_]*)\s*$")
# Every pattern below is anchored where it starts (after '://', at a '-----BEGIN ', at the start of a word), so a
# check costs time in proportion to the value, however long and repetitive it is: a spec may be 2 MiB.
_AFTER_SCHEME = re.compile(r"://([^/\s@]*)@")
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]{0,40}PRIVATE KEY( BLOCK)?-----")
# One pass over the value: a token must start a word (nothing word-like just before it), so a long repetitive value
# gives the engine one starting point per word, not one per character.
_TOKENS = re.compile(
    r"(?<![A-Za-z0-9_.\-])(?:"
    r"(?P<github>gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"
    r"|(?P<slack>xox[abposr]-[A-Za-z0-9-]{8,})"
    r"|(?P<aws>(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9]))"
    r"|(?P<stripe>[sr]k_live_[A-Za-z0-9]{8,})"
    r"|(?P<gitlab>glpat-[A-Za-z0-9_-]{16,})"
    r"|(?P<google>AIza[0-9A-Za-z_-]{35}(?![A-Za-z0-9_-]))"
    r"|(?P<npm>npm_[A-Za-z0-9]{36}(?![A-Za-z0-9]))"
    r"|(?P<jwt>eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,})"
    r")"
)
_TOKEN_NAMES = {
    "github": "a GitHub token", "slack": "a Slack token", "aws": "an AWS access key id", "stripe": "a Stripe live key",
    "gitlab": "a GitLab token", "google": "a Google API key", "npm": "an npm token", "jwt": "a JSON Web Token",
}
# `--password=x` or `--db-token x` inside a shell string (`sh -c "..."`), and `PGPASSWORD=x cmd`; only names with a
# secret-like word are looked at twice.
_SECRET_HINT = r"[A-Za-z0-9_.-]*(?i:pass|pwd|secret|token|credential|creds|key|dsn)[A-Za-z0-9_.-]*"
_INLINE_FLAG = re.compile(rf"(?:^|\s)-{{1,2}}({_SECRET_HINT})[= ](\S+)")
_INLINE_ASSIGN = re.compile(rf"(?:^|\s)({_SECRET_HINT})=(\S+)")


def name_looks_secret(name: str) -> bool:
    upper = name.upper()
    words = [w.upper() for w in _WORD_SPLIT.split(name) if w]
    if words and words[-1] in _REFERENCE_SUFFIXES:
        return False  # PASSWORD_FILE, TOKEN_PATH, SECRET_NAME: where the secret is, not the secret
    squashed = re.sub(r"[^A-Z0-9]", "", upper)
    if any(word in squashed for word in _NAME_SUBSTRINGS):
        return True
    return bool(set(words) & _NAME_WORDS)


def is_reference(value: str) -> bool:
    return bool(_REFERENCE.match(value))


def value_looks_secret(value: str) -> str | None:
    """Why a value is a credential whatever its name (a URL with a password, a private key, a known token)."""
    for match in _AFTER_SCHEME.finditer(value):
        _, colon, password = match.group(1).partition(":")
        if colon and password and not is_reference(password):
            return "holds a URL with a password (user:password@)"
    if "PRIVATE KEY" in value and _PEM.search(value):
        return "holds a PEM private key"
    if "hooks.slack.com/services/" in value:
        return "holds what looks like a Slack webhook URL"
    token = _TOKENS.search(value)
    if token and token.lastgroup:
        return f"holds what looks like {_TOKEN_NAMES[token.lastgroup]}"
    return None


def literal_secret(name: str | None, value: object) -> str | None:
    """Why `name: value` looks like a literal credential, or None. The one rule every check below uses."""
    if value is None or isinstance(value, bool | int | float):
        return None
    text = str(value)
    if not text.strip() or is_reference(text):
        return None
    if name and name_looks_secret(name):
        return f"{name!r} looks like a secret and has a literal value"
    return value_looks_secret(text)


def _command_line_secret(text: str) -> str | None:
    for pattern in (_INLINE_FLAG, _INLINE_ASSIGN):
        for flag, value in pattern.findall(text):
            reason = literal_secret(flag, value.strip("'\""))
            if reason:
                return reason
    return None


def args_secret(args: Sequence[object]) -> tuple[int, str] | None:
    """The first argument that carries a literal secret: `--password=x`, `--token x`, a URL with a password..."""
    items = [str(a) for a in args]
    for i, item in enumerate(items):
        flag, sep, value = item.partition("=")
        if item.startswith("-") and sep:
            reason = literal_secret(flag.lstrip("-"), value)
        elif item.startswith("-") and i + 1 < len(items) and not items[i + 1].startswith("-"):
            reason = literal_secret(item.lstrip("-"), items[i + 1])
            if reason:
                return i + 1, reason
        else:
            reason = value_looks_secret(item) or _command_line_secret(item)
        if reason:
            return i, reason
    return None


def secret_error(field: str, reason: str) -> str:
    return f"{field}: {reason}; {ADVICE}" if field else f"{reason}; {ADVICE}"


def check_env(env: object, field: str) -> None:
    """A raw container env list (as in a manifest): literal values checked by name and content."""
    if not isinstance(env, list):
        return
    for i, item in enumerate(env):
        if isinstance(item, dict) and "value" in item:
            reason = literal_secret(str(item.get("name", "")), item["value"])
            if reason:
                raise ValueError(secret_error(f"{field}[{i}].value", reason))


def check_args(args: object, field: str) -> None:
    if isinstance(args, list):
        found = args_secret(args)
        if found:
            raise ValueError(secret_error(f"{field}[{found[0]}]", found[1]))


def check_mapping(values: dict[str, Any], field: str) -> None:
    """Named values (analysis args, annotations): each checked as `name: value`; `field` may be empty."""
    for name, value in values.items():
        reason = literal_secret(name, value)
        if reason:
            raise ValueError(secret_error(f"{field}.{name}" if field else name, reason))


def check_containers(pod_spec: object, field: str, kinds: Iterable[str] = ("containers", "initContainers",
                                                                            "ephemeralContainers")) -> None:
    """Every container of a pod spec: env values, command and args."""
    if not isinstance(pod_spec, dict):
        return
    for kind in kinds:
        containers = pod_spec.get(kind)
        if not isinstance(containers, list):
            continue
        for i, container in enumerate(containers):
            if not isinstance(container, dict):
                continue
            where = f"{field}.{kind}[{i}]"
            check_env(container.get("env"), f"{where}.env")
            check_args(container.get("command"), f"{where}.command")
            check_args(container.get("args"), f"{where}.args")
