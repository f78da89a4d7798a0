"""The hostile spec table: one `Case` per attack, as the raw bytes of a spec file and what the refusal must say.

Specs are built from three small valid ones (blue-green, canary, rolling) with one thing changed, so each case
fails for its own reason only. `tests/test_hostile_specs.py` feeds every case to the loader and to
`deployflow validate`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class Case:
    name: str
    content: bytes
    expect: tuple[str, ...]


def bluegreen(**top: Any) -> dict[str, Any]:
    return {
        "strategy": "blue-green",
        "target": {"cluster": "sim", "namespace": "demo", "app": "shop"},
        "workload": {"image": "registry.example.com/shop/web:2.0.0", "replicas": 2},
        **top,
    }


def canary(**top: Any) -> dict[str, Any]:
    return {
        "strategy": "canary",
        "target": {"cluster": "sim", "namespace": "demo", "app": "cart"},
        "workload": {"image": "registry.example.com/shop/cart:2.0.0", "replicas": 4},
        "steps": [{"set_weight": 20}, {"pause": {"duration": "1m"}}],
        **top,
    }


def rolling(**top: Any) -> dict[str, Any]:
    return {
        "strategy": "rolling",
        "target": {"cluster": "sim", "namespace": "demo", "app": "catalog"},
        "image": "registry.example.com/shop/catalog:2.0.0",
        **top,
    }


def with_workload(**fields: Any) -> dict[str, Any]:
    doc = bluegreen()
    doc["workload"].update(fields)
    return doc


def with_target(**fields: Any) -> dict[str, Any]:
    doc = bluegreen()
    doc["target"].update(fields)
    return doc


def deployment(pod_spec: dict[str, Any], **container: Any) -> dict[str, Any]:
    """A workload manifest whose pod has one container `shop` (with `container` fields) plus `pod_spec`."""
    main = {"name": "shop", "image": "registry.example.com/shop/web:2.0.0", **container}
    return with_workload(image=None, manifest={
        "apiVersion": "apps/v1", "kind": "Deployment",
        "spec": {"template": {"spec": {"containers": [main], **pod_spec}}},
    })


def job_hook(**fields: Any) -> dict[str, Any]:
    return bluegreen(hooks={"pre_deploy": [{"kind": "job", "name": "migrate", **fields}]})


def job_manifest_hook(pod_spec: dict[str, Any], **container: Any) -> dict[str, Any]:
    main = {"name": "migrate", "image": "registry.example.com/shop/migrate:1", **container}
    return job_hook(manifest={"apiVersion": "batch/v1", "kind": "Job",
                              "spec": {"template": {"spec": {"containers": [main], **pod_spec}}}})


def http_hook(**fields: Any) -> dict[str, Any]:
    return bluegreen(hooks={"post_deploy": [{"kind": "http", "name": "smoke", "service": "shop", **fields}]})


def env(name: str, value: str) -> dict[str, Any]:
    return with_workload(env=[{"name": name, "value": value}])


def metric(**fields: Any) -> dict[str, Any]:
    provider = {"kind": "prometheus", "address": "http://prometheus:9090", "query": "up"}
    return {"name": "error_rate", "provider": provider, "failure_condition": "result > 0.05", **fields}


def analysis_step(analysis: dict[str, Any]) -> dict[str, Any]:
    return canary(steps=[{"set_weight": 20}, {"analysis": analysis}])


def _dump(doc: dict[str, Any]) -> bytes:
    return yaml.safe_dump(doc, sort_keys=False).encode()


def _text(text: str) -> bytes:
    return text.encode()


BASE = _dump(bluegreen())
BASE_TEXT = BASE.decode()
PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA\n-----END RSA PRIVATE KEY-----\n"
_BOMB = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 10)}]\n" for i in range(8)
)


def _encoding_cases() -> list[Case]:
    return [
        Case("utf16-bom", BASE_TEXT.encode("utf-16"), ("UTF-16", "save it as UTF-8")),
        Case("utf16-no-bom", BASE_TEXT.encode("utf-16-le"), ("UTF-16", "without a byte-order mark")),
        Case("utf32-bom", BASE_TEXT.encode("utf-32"), ("UTF-32",)),
        Case("latin1-byte", ("# caf\u00e9\n" + BASE_TEXT).encode("latin-1"), ("not valid UTF-8", "0xe9", "offset 5")),
        Case("nul-byte", BASE + b"\x00\n", ("NUL byte",)),
        Case("control-character", _text("strategy: blue-green\x07\n"), ("not allowed in YAML",)),
        Case("over-2-mib", BASE + b"#" * (2 * 1024 * 1024), ("larger than 2 MiB",)),
        Case("empty-file", b"", ("must be a mapping", "strategy")),
        Case("top-level-list", _text("- strategy: blue-green\n"), ("must be a mapping",)),
        Case("top-level-scalar", _text("blue-green\n"), ("must be a mapping",)),
        Case("two-documents", BASE + b"---\n" + BASE, ("more than one YAML document",)),
        Case("syntax-error", _text("strategy: blue-green\ntarget: [sim\n"), ("YAML syntax error",)),
    ]


def _structure_cases() -> list[Case]:
    return [
        Case("deep-lists", _text("strategy: blue-green\nx: " + "[" * 5000 + "]" * 5000 + "\n"), ("nest",)),
        Case("deep-mappings", _text("strategy: blue-green\nx: " + "{a: " * 200 + "1" + "}" * 200 + "\n"),
             ("nested more than 64 levels",)),
        Case("deep-json", _text('{"strategy": "blue-green", "x": ' + "[" * 300 + "]" * 300 + "}"), ("nest",)),
        Case("alias-bomb", _text("strategy: blue-green\n" + _BOMB), ("aliases expand to more than",)),
        Case("alias-flood", _text("strategy: blue-green\na: &a x\nb: [" + ", ".join(["*a"] * 1500) + "]\n"),
             ("more than 1000 YAML aliases",)),
        Case("recursive-alias", _text("strategy: blue-green\na: &a [*a]\n"), ("recursive alias",)),
        Case("duplicate-target", BASE + b"target: {cluster: prod, namespace: demo, app: shop}\n",
             ("duplicate key 'target'", "first on line 2", "again on line 9")),
        Case("duplicate-nested", _text(BASE_TEXT.replace("  replicas: 2\n", "  replicas: 2\n  replicas: 9\n")),
             ("workload.replicas", "duplicate key 'replicas'")),
        Case("duplicate-json", _text('{"strategy": "blue-green", "target": {}, "target": {}}'),
             ("duplicate key 'target'", "column")),
        Case("duplicate-in-manifest-env", _text(BASE_TEXT + "x:\n  env:\n  - {name: A, name: B}\n"),
             ("duplicate key 'name'",)),
        Case("binary-tag", _text(BASE_TEXT.replace("replicas: 2", "replicas: !!binary aGk=")), ("YAML tag",)),
        Case("python-tag", _text("strategy: !!python/object/apply:os.system [id]\n"), ("YAML tag", "strategy")),
        Case("custom-tag", _text(BASE_TEXT.replace("replicas: 2", "replicas: !Ref count")), ("YAML tag",)),
        Case("set-tag", _text(BASE_TEXT + "x: !!set {a, b}\n"), ("YAML tag",)),
        Case("list-as-key", _text(BASE_TEXT + "? [a, b]\n: c\n"), ("mapping key",)),
        Case("infinite-number", _text(BASE_TEXT.replace("replicas: 2", "replicas: .inf")), ("finite",)),
        Case("nan", _text(BASE_TEXT.replace("replicas: 2", "replicas: .nan")), ("finite", "workload.replicas")),
        Case("float-overflow", _text(BASE_TEXT.replace("replicas: 2", "replicas: 1.0e+400")), ("finite",)),
        Case("giant-integer", _text(BASE_TEXT.replace("replicas: 2", "replicas: " + "9" * 5000)), ("too long",)),
        Case("int-over-64-bits", _text(BASE_TEXT.replace("replicas: 2", f"replicas: {2**70}")), ("64-bit",)),
        Case("tagged-garbage-int", _text(BASE_TEXT.replace("replicas: 2", "replicas: !!int abc")),
             ("not a valid int",)),
    ]


def _type_cases() -> list[Case]:
    return [
        Case("strategy-mapping", _dump(bluegreen(strategy={"name": "canary"})), ("strategy: unknown strategy",)),
        Case("strategy-list", _dump(bluegreen(strategy=["canary"])), ("strategy: unknown strategy",)),
        Case("strategy-number", _dump(bluegreen(strategy=3)), ("strategy: unknown strategy", "blue-green")),
        Case("strategy-missing", _text("target: {cluster: sim}\n"), ("strategy: required field is missing",)),
        Case("replicas-true", _dump(with_workload(replicas=True)), ("workload.replicas", "not true")),
        Case("replicas-text", _dump(with_workload(replicas="three")), ("workload.replicas",)),
        Case("attempts-false", _dump(bluegreen(smoke_tests=[{"attempts": False}])),
             ("smoke_tests[0].attempts", "not false")),
        Case("huge-go-duration", _dump(bluegreen(standby="99999999999999999999h")), ("standby", "at most 365d")),
        Case("huge-seconds", _text(BASE_TEXT + "standby: 1.0e+12\n"), ("standby", "at most 365d")),
        Case("huge-iso-duration", _dump(bluegreen(standby="P99999999DT1H")), ("standby", "365d")),
        Case("word-duration", _dump(bluegreen(standby="soon")), ("standby", "'1h30m'", "ISO 8601")),
        Case("list-duration", _dump(bluegreen(standby=[1, 2])), ("standby", "'1h30m'")),
        Case("negative-duration", _dump(bluegreen(standby="-5m")), ("standby", "negative")),
        Case("markup-app", _dump(with_target(app="[bold red]x[/]")), ("target.app", "[bold red]x[/]")),
        Case("emoji-code-app", _dump(with_target(app=":thumbs_up:")), ("target.app", "':thumbs_up:'")),
        Case("markup-version", _dump(with_workload(version="[link=http://evil]v[/link]")),
             ("workload.version", "[link=http://evil]v[/link]")),
    ]


def _name_cases() -> list[Case]:
    return [
        Case("cluster-with-space", _dump(with_target(cluster="prod eu")), ("target.cluster", "kubeconfig context")),
        Case("cluster-too-long", _dump(with_target(cluster="c" * 300)), ("target.cluster", "253")),
        Case("cluster-escape-sequence", _dump(with_target(cluster="\x1b[31mprod")), ("target.cluster",)),
        Case("cluster-empty", _dump(with_target(cluster="")), ("target.cluster",)),
        Case("host-upper-case", _dump(canary(traffic={"hosts": ["Shop.Example.com"]})), ("traffic.hosts[0]",)),
        Case("host-bare-star", _dump(canary(traffic={"hosts": ["*"]})), ("traffic.hosts[0]", "'*.'")),
        Case("host-empty-label", _dump(canary(traffic={"hosts": ["a..b"]})), ("traffic.hosts[0]",)),
        Case("ingress-class-space", _dump(canary(traffic={"router": "nginx", "ingress_class": "my class"})),
             ("traffic.ingress_class", "Kubernetes name")),
        Case("service-account", _dump(job_hook(image="registry.example.com/m:1", service_account="Bad_SA")),
             ("hooks.pre_deploy[0].service_account",)),
        Case("job-image-garbage", _dump(job_hook(image="Registry Example/IMG:: latest")),
             ("hooks.pre_deploy[0].image", "image reference")),
        Case("port-zero", _dump(http_hook(port=0)), ("hooks.post_deploy[0].port", "65535")),
        Case("port-name-underscore", _dump(http_hook(port="http_8080")), ("hooks.post_deploy[0].port", "port name")),
        Case("port-name-too-long", _dump(http_hook(port="averyveryverylongname")), ("hooks.post_deploy[0].port",)),
    ]


def _step_cases() -> list[Case]:
    big_annotation = {"note": "x" * (300 * 1024)}
    return [
        Case("step-unknown-kind", _dump(canary(steps=[{"wait": 5}])),
             ("steps[0]", "a step is one of set_weight, pause or analysis")),
        Case("step-weight-too-high", _dump(canary(steps=[{"set_weight": 150}])), ("steps[0].set_weight", "100")),
        Case("step-pause-bad-duration", _dump(canary(steps=[{"pause": {"duration": "later"}}])),
             ("steps[0].pause.duration", "'1h30m'")),
        Case("post-promotion-too-many", _dump(canary(
            error_rate={"prometheus_address": "http://prometheus:9090"},
            post_promotion={"window": "30d", "interval": "1s"})), ("post_promotion.window", "10000")),
        Case("stage-too-many", _dump(canary(
            steps=[], stages=[{"weight": 10, "duration": "30d", "max_error_rate": 0.01}],
            error_rate={"prometheus_address": "http://prometheus:9090", "interval": "1s"})),
             ("stages[0].duration", "10000")),
        Case("metric-count-times-interval", _dump(analysis_step({"metrics": [metric(count=10000, interval="1d")]})),
             ("steps[1].analysis.metrics[0].count", "365d")),
        Case("condition-too-long", _dump(analysis_step({"metrics": [metric(failure_condition="(" * 2000)]})),
             ("failure_condition",)),
        Case("condition-nested-deep", _dump(analysis_step({"metrics": [metric(failure_condition="-" * 1020 + "1")]})),
             ("failure_condition", "nested too deeply")),
        Case("annotations-over-256k", _dump(with_workload(pod_annotations=big_annotation)),
             ("workload.pod_annotations", "256 KiB")),
        Case("rolling-annotations-over-256k", _dump(rolling(pod_annotations=big_annotation)),
             ("pod_annotations", "256 KiB")),
        Case("manifest-spec-is-list", _dump(with_workload(image=None, manifest={"spec": ["x"]})),
             ("workload.manifest.spec.template.spec.containers",)),
        Case("manifest-labels-list", _dump(with_workload(image=None, manifest={"spec": {"template": {
            "metadata": {"labels": ["a"]}, "spec": {"containers": [{"name": "a", "image": "r/a:1"}]}}}})),
             ("labels",)),
        Case("job-manifest-spec-string", _dump(job_hook(manifest={"apiVersion": "batch/v1", "kind": "Job",
                                                                  "spec": "run"})), ("containers",)),
    ]


def _secret_cases() -> list[Case]:
    token_values = {
        "github": ("ghp_" + "a1" * 18, "GitHub token"), "slack": ("xoxb-1234-5678-abcdefgh", "Slack token"),
        "aws": ("AKIAIOSFODNN7EXAMPLE", "AWS access key"), "stripe": ("sk_live_" + "4" * 24, "Stripe"),
        "gitlab": ("glpat-" + "x" * 20, "GitLab token"), "pem": (PEM, "PEM private key"),
    }
    cases = [Case(f"env-{kind}-value", _dump(env("SETTING", value)), ("workload.env[0].value", what, "secretKeyRef"))
             for kind, (value, what) in token_values.items()]
    return cases + [
        Case("env-db-pass", _dump(env("DB_PASS", "hunter2")), ("workload.env[0].value", "DB_PASS", "secretKeyRef")),
        Case("env-database-url", _dump(env("DATABASE_URL", "postgres://app:hunter2@db:5432/app")),
             ("workload.env[0].value", "user:password@")),
        Case("env-aws-credentials", _dump(env("AWS_CREDENTIALS", "x")), ("AWS_CREDENTIALS", "looks like a secret")),
        Case("rolling-env-passwd", _dump(rolling(env=[{"name": "DB_PASSWD", "value": "x"}])), ("env[0].value",)),
        Case("manifest-init-container", _dump(deployment(
            {"initContainers": [{"name": "init", "image": "r/i:1", "env": [{"name": "API_TOKEN", "value": "t"}]}]})),
             ("initContainers[0].env[0].value", "API_TOKEN")),
        Case("manifest-args-password", _dump(deployment({}, args=["--password=hunter2"])),
             ("containers[0].args[0]", "password")),
        Case("job-args-token-pair", _dump(job_hook(image="registry.example.com/m:1", args=["--token", "abc123"])),
             ("hooks.pre_deploy[0].args[1]", "token")),
        Case("job-shell-password", _dump(job_hook(image="registry.example.com/m:1",
                                                  command=["sh", "-c", "mysql --password=hunter2 < x.sql"])),
             ("hooks.pre_deploy[0].command[2]",)),
        Case("job-env-secret-key", _dump(job_hook(image="registry.example.com/m:1",
                                                  env=[{"name": "SECRET_KEY", "value": "x"}])),
             ("hooks.pre_deploy[0].env[0]", "SECRET_KEY")),
        Case("job-manifest-env", _dump(job_manifest_hook({}, env=[{"name": "api-key", "value": "k"}])),
             ("hooks.pre_deploy[0].manifest.spec.template.spec.containers[0].env[0].value",)),
        Case("analysis-args-password", _dump(analysis_step({"metrics": [metric()], "args": {"db_password": "x"}})),
             ("steps[1].analysis.args.db_password",)),
        Case("prometheus-url-password", _dump(analysis_step({"metrics": [metric(provider={
            "kind": "prometheus", "address": "http://admin:hunter2@prometheus:9090", "query": "up"})]})),
             ("provider.address", "user:password")),
        Case("confirm-metadata-token", _dump(bluegreen(hooks={"pre_promote": [
            {"kind": "confirm", "name": "gate", "url_env": "GATE_URL", "metadata": {"api_token": "t0k3n"}}]})),
             ("hooks.pre_promote[0].metadata.api_token", "secretKeyRef")),
        Case("confirm-url-password", _dump(bluegreen(hooks={"pre_promote": [
            {"kind": "confirm", "name": "gate", "url": "https://bot:hunter2@ci.example.com/ok"}]})),
             ("hooks.pre_promote[0].url", "user:password")),
        Case("smoke-path-traversal", _dump(bluegreen(smoke_tests=[{"path": "/../../secrets/db"}])),
             ("smoke_tests[0].path", "proxy prefix")),
        Case("smoke-path-encoded-traversal", _dump(bluegreen(smoke_tests=[{"path": "/%2e%2e/%2e%2e/secrets"}])),
             ("smoke_tests[0].path", "proxy prefix")),
        Case("prometheus-address-metadata", _dump(canary(error_rate={
            "prometheus_address": "http://169.254.169.254/latest"}, post_promotion={"window": "10m"})),
             ("prometheus_address", "metadata")),
    ]


def _pod_cases() -> list[Case]:
    field = "workload.manifest.spec.template.spec"
    return [
        Case("privileged", _dump(deployment({}, securityContext={"privileged": True})),
             (f"{field}.containers[0].securityContext.privileged", "'privileged' rule", "Pod Security Admission")),
        Case("host-network", _dump(deployment({"hostNetwork": True})), (f"{field}.hostNetwork", "'hostNetwork'")),
        Case("host-pid", _dump(deployment({"hostPID": True})), (f"{field}.hostPID", "'hostPID'")),
        Case("host-ipc", _dump(deployment({"hostIPC": True})), (f"{field}.hostIPC", "'hostIPC'")),
        Case("host-path", _dump(deployment({"volumes": [{"name": "root", "hostPath": {"path": "/"}}]})),
             (f"{field}.volumes[0].hostPath", "'hostPath'")),
        Case("sys-admin", _dump(deployment({}, securityContext={"capabilities": {"add": ["SYS_ADMIN"]}})),
             ("capabilities.add", "SYS_ADMIN", "'capabilities'")),
        Case("host-port", _dump(deployment({}, ports=[{"containerPort": 80, "hostPort": 80}])),
             (f"{field}.containers[0].ports[0].hostPort", "'hostPort'")),
        Case("privileged-init", _dump(deployment(
            {"initContainers": [{"name": "i", "image": "r/i:1", "securityContext": {"privileged": True}}]})),
             ("initContainers[0].securityContext.privileged",)),
        Case("privileged-job", _dump(job_manifest_hook({}, securityContext={"privileged": True})),
             ("hooks.pre_deploy[0].manifest.spec.template.spec.containers[0].securityContext.privileged",
              "DEPLOYFLOW_ALLOW_POD_PRIVILEGES")),
        Case("host-network-job", _dump(job_manifest_hook({"hostNetwork": True})), ("hostNetwork",)),
    ]


CASES: list[Case] = [
    *_encoding_cases(), *_structure_cases(), *_type_cases(), *_name_cases(), *_step_cases(), *_secret_cases(),
    *_pod_cases(),
]


def json_bytes(doc: dict[str, Any]) -> bytes:
    return json.dumps(copy.deepcopy(doc)).encode()
