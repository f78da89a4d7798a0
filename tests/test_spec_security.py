"""The two security checks of specs on their own: literal secrets (deployflow.security.secrets) and pod privileges
(deployflow.security.pods), and the pod check where it matters most, a workflow started with a raw payload."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from deployflow.security import pods
from deployflow.security.secrets import args_secret, literal_secret, name_looks_secret
from tests.bluegreen_support import running_worker
from tests.hostile.cases import deployment


@pytest.mark.parametrize("name", ["DB_PASS", "db_password", "MYSQL_ROOT_PASSWORD", "AWS_CREDENTIALS", "githubToken",
                                  "API_KEY", "apiKey", "SENTRY_DSN", "PRIVATE_KEY", "client-secret", "PASSPHRASE"])
def test_secret_names(name: str) -> None:
    assert name_looks_secret(name)


@pytest.mark.parametrize("name", ["PASSWORD_FILE", "TOKEN_PATH", "SECRET_NAME", "BYPASS_CACHE", "KEYCLOAK_URL",
                                  "LOG_LEVEL", "COMPASS_HOST", "MONKEY_MODE"])
def test_names_that_only_resemble_secrets(name: str) -> None:
    assert not name_looks_secret(name)


@pytest.mark.parametrize(("value", "words"), [
    ("mongodb+srv://app:s3cr3t@cluster0.example.net/db", "user:password@"),
    ("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Bl\n-----END OPENSSH PRIVATE KEY-----", "PEM private key"),
    ("xoxp-1111-2222-abcdefgh", "Slack"),
    ("ASIAIOSFODNN7EXAMPLE", "AWS"),
    ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "JSON Web Token"),
    ("https://hooks.slack.com/services/T000/B000/XXXX", "Slack webhook"),
])
def test_secret_values_under_any_name(value: str, words: str) -> None:
    reason = literal_secret("SETTING", value)
    assert reason is not None and words in reason


@pytest.mark.parametrize("value", ["$(DB_PASSWORD)", "${TOKEN}", "$API_KEY", "", "  "])
def test_references_and_empty_values_are_not_secrets(value: str) -> None:
    assert literal_secret("DB_PASSWORD", value) is None


@pytest.mark.parametrize(("args", "index"), [
    (["--password=hunter2"], 0), (["migrate", "--db-token", "abc"], 2), (["-secret", "x"], 1),
    (["sh", "-c", "PGPASSWORD=x psql -h db"], 2), (["run", "--url=redis://:pw@cache:6379"], 1),
])
def test_arguments_carrying_secrets(args: list[str], index: int) -> None:
    found = args_secret(args)
    assert found is not None and found[0] == index


def test_arguments_without_secrets() -> None:
    assert args_secret(["--password=$(DB_PASSWORD)", "--to", "2.0.0", "-v", "--token-file", "/run/token"]) is None


def test_every_baseline_rule_is_found_in_one_pod_in_a_stable_order() -> None:
    pod = {
        "hostNetwork": True, "hostPID": True, "hostIPC": True,
        "volumes": [{"name": "docker", "hostPath": {"path": "/var/run/docker.sock"}}, {"name": "tmp", "emptyDir": {}}],
        "containers": [{"name": "a", "securityContext": {"privileged": True, "capabilities": {"add": ["CHOWN",
                                                                                                  "NET_ADMIN"]}},
                        "ports": [{"containerPort": 80, "hostPort": 8080}, {"containerPort": 81}]}],
    }
    found = pods.find_violations(pod, "spec")
    assert [v.rule for v in found] == ["hostNetwork", "hostPID", "hostIPC", "hostPath", "privileged", "capabilities",
                                       "hostPort"]
    assert found[3].field == "spec.volumes[0].hostPath"
    assert "NET_ADMIN" in found[5].what and "CHOWN" not in found[5].what
    assert found[6].field == "spec.containers[0].ports[0].hostPort"


def test_the_allowance_is_parsed_by_rule_name_and_unknown_names_are_reported() -> None:
    assert pods.parse_allowance(" HostNetwork,privileged ,, bogus") == frozenset({"hostNetwork", "privileged"})
    assert pods.unknown_rules("hostPID, bogus") == ["bogus"]


def test_the_environment_is_read_once_at_import_not_at_each_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Workers validate inputs while replaying; a check that read the environment each time could change its mind."""
    monkeypatch.setenv(pods.ENV_VAR, ",".join(pods.RULES))
    with pytest.raises(ValueError, match="'hostPID' rule"):
        pods.check_pod_spec({"hostPID": True}, "spec")


def _privileged_payload(namespace: str) -> dict[str, Any]:
    doc = deployment({}, securityContext={"privileged": True})
    doc["target"] = {"cluster": "no-such-cluster", "namespace": namespace, "app": "web"}
    return doc


async def test_a_workflow_started_with_a_privileged_pod_fails_as_invalid_spec(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """The payload as the temporal CLI or the UI would send it: refused by the worker's converter before any
    activity, naming the field and the rule, not retried."""
    client = time_skipping_env.client
    namespace = f"t-{uuid.uuid4().hex[:8]}"
    async with running_worker(client) as queue:
        handle = await client.start_workflow(
            "BlueGreenDeployment", _privileged_payload(namespace), id=f"deploy/x/{namespace}/web", task_queue=queue
        )
        with pytest.raises(WorkflowFailureError) as failure:
            await handle.result()
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    assert cause.type == "InvalidSpec" and cause.non_retryable
    assert "securityContext.privileged" in cause.message and "'privileged' rule" in cause.message, cause.message
