"""Hostile specs (tests/hostile/cases.py): each is refused by the loader with a message naming its field or rule, and by
`deployflow validate` with exit code 2, the same words, and no traceback. Valid specs that look like attacks (a
secret by reference, a baseline capability, a wildcard host) still pass: a validator that refuses everything would
satisfy the first half alone."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from deployflow.cli import app
from deployflow.security.pods import pod_privileges_allowed
from deployflow.spec.loader import LoadedSpec, SpecError, load_spec_bytes, load_spec_file
from tests.hostile.cases import (
    BASE_TEXT,
    CASES,
    Case,
    bluegreen,
    canary,
    deployment,
    env,
    http_hook,
    job_hook,
    json_bytes,
    with_target,
)

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


@pytest.mark.timeout(20)  # a hang guard: the loader must answer, not spin
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_loader_refuses_naming_the_field_or_rule(case: Case) -> None:
    with pytest.raises(SpecError) as refused:
        load_spec_bytes(case.content, "spec.yaml")
    message = str(refused.value)
    for words in case.expect:
        assert words in message, message


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_validate_command_exits_2_with_the_reason_and_no_traceback(case: Case, tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(case.content)
    for args in (["validate", str(spec)], ["validate", "--json", str(spec)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, result.output
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        assert "Traceback" not in result.output
        flat = " ".join(result.output.split())  # the console may wrap long lines
        for words in case.expect:
            assert " ".join(words.split()) in flat, result.output


@pytest.mark.parametrize("name", ["alias-bomb", "duplicate-target", "privileged", "env-database-url"])
def test_start_refuses_before_connecting(name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")  # nothing listens there: a refusal must come first
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(next(c for c in CASES if c.name == name).content)
    result = runner.invoke(app, ["start", str(spec)])
    assert result.exit_code == 2, result.output
    assert "cannot connect" not in result.output and "Traceback" not in result.output


def test_there_are_at_least_sixty_hostile_specs_in_every_class() -> None:
    assert len(CASES) >= 60
    names = {c.name for c in CASES}
    for sample in ("utf16-bom", "alias-bomb", "duplicate-json", "replicas-true", "markup-app", "host-bare-star",
                   "step-unknown-kind", "post-promotion-too-many", "env-database-url", "job-args-token-pair",
                   "privileged-job"):
        assert sample in names


# --- what the refusals do not touch ------------------------------------------------------------------------------

SECRET_BY_REFERENCE = {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}}
LOOKALIKES: dict[str, dict[str, Any]] = {
    "secret-by-reference": bluegreen(workload={"image": "r.example.com/a/b:1", "env": [SECRET_BY_REFERENCE]}),
    "password-file-path": env("PASSWORD_FILE", "/etc/secrets/password"),
    "url-without-password": env("DATABASE_URL", "postgres://app@db:5432/app"),
    "args-by-variable": deployment({}, args=["--password=$(DB_PASSWORD)", "--url", "https://example.com"]),
    "baseline-capability": deployment({}, securityContext={"capabilities": {"add": ["NET_BIND_SERVICE"]}}),
    "host-network-false": deployment({"hostNetwork": False}),
    "container-port-only": deployment({}, ports=[{"containerPort": 8080}]),
    "wildcard-host": canary(traffic={"router": "nginx", "hosts": ["*.example.com", "shop.example.com"]}),
    "named-port": http_hook(port="http"),
    "eks-context": with_target(cluster="arn:aws:eks:eu-west-1:123456789012:cluster/prod"),
    "service-account": job_hook(image="registry.example.com/m:1", service_account="migrations.v2"),
    "job-args": job_hook(image="registry.example.com/m:1", args=["--to", "2.0.0", "--dry-run"]),
}


@pytest.mark.parametrize("name", sorted(LOOKALIKES))
def test_valid_specs_that_look_like_attacks_pass(name: str) -> None:
    loaded = load_spec_bytes(yaml.safe_dump(LOOKALIKES[name]).encode(), name)
    assert isinstance(loaded, LoadedSpec)


@pytest.mark.timeout(30)  # a hang guard: every check is linear in the size of the value it reads
@pytest.mark.parametrize("value", ["eyJ" * 600_000, "a:" * 900_000, "-----BEGIN " + "A" * 1_800_000, "AKIA" * 450_000])
def test_a_long_repetitive_value_near_the_size_limit_is_read_through(value: str) -> None:
    text = yaml.safe_dump(env("SETTING", value), width=10**9)
    assert load_spec_bytes(text.encode(), "long.yaml").strategy == "blue-green"


@pytest.mark.timeout(30)
def test_thousands_of_problems_are_all_kept_and_twenty_shown() -> None:
    text = BASE_TEXT + "  env:\n" + "".join(f"  - {{name: '{i} bad', value: x}}\n" for i in range(5000))
    with pytest.raises(SpecError) as refused:
        load_spec_bytes(text.encode(), "many.yaml")
    assert len(refused.value.problems) == 5000
    assert "workload.env[0].name" in str(refused.value) and "... and 4980 more problems" in str(refused.value)
    assert len(str(refused.value).splitlines()) == 22


def test_a_utf8_byte_order_mark_and_json_are_read_like_yaml() -> None:
    assert load_spec_bytes(b"\xef\xbb\xbf" + BASE_TEXT.encode(), "bom.yaml").workflow_id == "deploy/sim/demo/shop"
    assert load_spec_bytes(json_bytes(bluegreen()), "spec.json").workflow_id == "deploy/sim/demo/shop"


def test_json_escapes_of_characters_beyond_the_basic_plane_are_read() -> None:
    """json.dumps writes an emoji as a surrogate pair of escapes, which YAML alone would refuse."""
    doc = bluegreen(smoke_tests=[{"name": "caf\u00e9 \U0001F600 \\ud83d", "path": "/a"}])
    raw = json_bytes(doc).replace(b'"/a"', b'"\\/a"')  # JSON's optional escape of '/'
    loaded = load_spec_bytes(raw, "spec.json")
    assert loaded.spec.smoke_tests[0].name == "caf\u00e9 \U0001F600 \\ud83d"  # type: ignore[attr-defined]
    assert loaded.spec.smoke_tests[0].path == "/a"  # type: ignore[attr-defined]


def test_anchors_and_merge_keys_still_work_and_explicit_keys_win() -> None:
    text = (
        "strategy: blue-green\n"
        "target: &t {cluster: sim, namespace: demo, app: shop}\n"
        "workload:\n"
        "  <<: {image: 'registry.example.com/shop/web:2.0.0', replicas: 5}\n"
        "  replicas: 3\n"
    )
    loaded = load_spec_bytes(text.encode(), "merge.yaml")
    assert loaded.spec.workload.replicas == 3  # type: ignore[attr-defined]
    for example in sorted(EXAMPLES.glob("*.yaml")):
        loaded = load_spec_file(example)
        expected = "train/" if loaded.spec.strategy == "train" else "deploy/sim/"
        assert loaded.workflow_id.startswith(expected), example


def test_dates_and_base_60_numbers_stay_as_written() -> None:
    doc = bluegreen()
    doc["workload"]["version"] = "PLACEHOLDER"
    text = yaml.safe_dump(doc).replace("PLACEHOLDER", "2024-01-31")
    loaded = load_spec_bytes(text.encode(), "date.yaml")
    assert loaded.spec.workload.version == "2024-01-31"  # type: ignore[attr-defined]


def test_an_allowed_rule_lets_exactly_that_privilege_through() -> None:
    host_network = yaml.safe_dump(deployment({"hostNetwork": True})).encode()
    with pod_privileges_allowed(["hostnetwork"]):
        assert load_spec_bytes(host_network, "spec.yaml").strategy == "blue-green"
        with pytest.raises(SpecError, match="'hostPID' rule"):
            load_spec_bytes(yaml.safe_dump(deployment({"hostNetwork": True, "hostPID": True})).encode(), "spec.yaml")
    with pod_privileges_allowed(()), pytest.raises(SpecError, match="'hostNetwork' rule"):
        load_spec_bytes(host_network, "spec.yaml")


def test_the_environment_variable_allows_rules_in_a_fresh_process(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(deployment({"hostNetwork": True, "hostIPC": True})))
    root = Path(__file__).resolve().parent.parent

    def run(allow: str) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, "DEPLOYFLOW_ALLOW_POD_PRIVILEGES": allow, "COLUMNS": "400"}
        return subprocess.run([sys.executable, "-m", "deployflow.cli", "validate", str(spec)], cwd=root,
                              env=environment, capture_output=True, text=True, timeout=60)

    allowed = run("hostNetwork, hostIPC")
    assert allowed.returncode == 0 and "valid blue-green spec" in allowed.stdout, allowed.stderr
    refused = run("hostNetwork,no-such-rule")
    assert refused.returncode == 2 and "'hostIPC' rule" in refused.stderr and "Traceback" not in refused.stderr


def test_the_cli_prints_values_literally_not_as_markup(tmp_path: Path) -> None:
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(with_target(app="[red]x[/red]")))
    result = runner.invoke(app, ["validate", str(spec)])
    assert result.exit_code == 2
    assert "[red]x[/red]" in result.output
