"""The CI examples in deploy/ci/ run as written: the `run:` steps of github-actions.yml (and of the composite action
it uses) and the `script:` of gitlab-ci.yml are read from the files and run in order with bash, against the dev
server, a worker and the simulator, for a good release (the job passes) and a bad one (it fails with the reason).

Only what cannot run offline is replaced: a step marked `# ci-test: install` becomes a check that the project's own
virtualenv (on PATH) has `deployflow` and `temporal`; `actions/checkout` and `actions/setup-python` are the prepared
workspace and that virtualenv. GitHub expressions `${{ ... }}` come from the table below, `env.*` and `inputs.*` from
the job; a step or expression this runner does not know fails the test, so the files cannot outgrow it unnoticed.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import CancelledError

from deployflow.dev import DevPorts, DevStack

ROOT = Path(__file__).resolve().parent.parent
CI = ROOT / "deploy" / "ci"
INSTALL_MARKER = "# ci-test: install"
INSTALLED = "command -v deployflow && command -v temporal"  # what the install step must leave on PATH
EXPRESSION = re.compile(r"\$\{\{\s*(.+?)\s*\}\}")
STEP_TIMEOUT = 300  # bounds a hung step (not a speed assertion)
# The examples name the cluster prod-eu and the namespace shop; here both are the simulator's.
CLUSTER, NAMESPACE = "prod-eu", "shop"

TEMPLATE = f"""\
strategy: blue-green
target: {{cluster: {CLUSTER}, namespace: {NAMESPACE}, app: shop}}
workload:
  image: registry.example.com/shop/web:__VERSION__
  replicas: 2
standby: 0s
"""
# A build whose containers crash at start: the simulator reads the annotation.
BAD_TEMPLATE = TEMPLATE.replace("  replicas: 2\n",
                                '  replicas: 2\n  pod_annotations: {"sim.deployflow.io/crash-loop": "true"}\n')


@dataclass
class Job:
    """One CI job's state as a runner keeps it: the environment, whether a step failed, and all output in order."""

    workspace: Path
    env: dict[str, str]
    expressions: dict[str, str] = field(default_factory=dict)
    failed: bool = False
    output: list[str] = field(default_factory=list)
    cancel_at: str | None = None  # the job is cancelled when it reaches a command containing this
    cancelled: bool = False

    def bash(self, script: str, env: dict[str, str] | None = None) -> int:
        if INSTALL_MARKER in script:
            script = INSTALLED
        if self.cancel_at and self.cancel_at in script and not self.cancelled:
            self.cancelled = True
            self.output.append(f"$ {script}\n(the job is cancelled here)")
            return 130
        proc = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", script],
                              cwd=self.workspace, env={**self.env, **(env or {})}, capture_output=True, text=True,
                              timeout=STEP_TIMEOUT)
        self.output.append(f"$ {script}\n{proc.stdout}{proc.stderr}")
        return proc.returncode

    @property
    def log(self) -> str:
        return "\n".join(self.output)


def expand(text: str, job: Job, inputs: dict[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        expr = match.group(1)
        scope, _, name = expr.partition(".")
        if scope == "env" and name in job.env:
            return job.env[name]
        if scope == "inputs" and name in inputs:
            return inputs[name]
        assert expr in job.expressions, f"the test has no value for ${{{{ {expr} }}}}"
        return job.expressions[expr]

    return EXPRESSION.sub(value, text)


def should_run(step: dict[str, Any], failed: bool, cancelled: bool) -> bool:
    condition = str(step.get("if", "success()")).strip()
    known = {"success()": not failed and not cancelled, "always()": True, "failure()": failed and not cancelled,
             "cancelled()": cancelled}
    assert condition in known, f"this runner does not evaluate `if: {condition}`"
    return known[condition]


def run_github_steps(job: Job, steps: list[dict[str, Any]], inputs: dict[str, str]) -> bool:
    """Runs steps as the GitHub runner does; True when one failed. GITHUB_ENV lines reach the steps after."""
    failed = False
    for step in steps:
        if not should_run(step, failed or job.failed, job.cancelled):
            continue
        env = {k: expand(str(v), job, inputs) for k, v in (step.get("env") or {}).items()}
        uses = step.get("uses")
        if uses is None:
            code = job.bash(expand(step["run"], job, inputs), env)
        elif uses.split("@")[0] in ("actions/checkout", "actions/setup-python"):
            code = 0  # the workspace and the project's virtualenv
        elif uses.startswith("./"):
            action = yaml.safe_load((job.workspace / uses / "action.yml").read_text())
            assert action["runs"]["using"] == "composite", uses
            given = {k: expand(str(v), job, inputs) for k, v in (step.get("with") or {}).items()}
            unknown = set(given) - set(action["inputs"])
            assert not unknown, f"{uses} has no inputs {unknown}"
            args = {k: given.get(k, str(spec.get("default", ""))) for k, spec in action["inputs"].items()}
            missing = [k for k, spec in action["inputs"].items() if spec.get("required") and not args[k]]
            assert not missing, f"{uses} needs {missing}"
            code = int(run_github_steps(job, action["runs"]["steps"], args))
        else:
            raise AssertionError(f"this runner cannot run `uses: {uses}`")
        for line in Path(job.env["GITHUB_ENV"]).read_text().splitlines():
            name, _, val = line.partition("=")
            job.env[name] = val
        if code != 0:
            failed = True
            job.failed = True
    return failed


def run_github(job: Job) -> Job:
    doc = yaml.safe_load((job.workspace / "deploy" / "ci" / "github-actions.yml").read_text())
    (spec,) = doc["jobs"].values()
    job.env.update({k: expand(str(v), job, {}) for k, v in (spec.get("env") or {}).items()})
    run_github_steps(job, spec["steps"], {})
    return job


def run_gitlab(job: Job) -> Job:
    """before_script and script in one shell that stops at the first failing command; after_script in another,
    always, told the job's status."""
    doc = yaml.safe_load((job.workspace / "deploy" / "ci" / "gitlab-ci.yml").read_text())
    (spec,) = [v for k, v in doc.items() if isinstance(v, dict) and "script" in v]
    job.env.update({k: str(v) for k, v in (spec.get("variables") or {}).items()})
    commands = [INSTALLED if INSTALL_MARKER in c else c for c in [*spec.get("before_script", []), *spec["script"]]]
    stop = next((i for i, c in enumerate(commands) if job.cancel_at and job.cancel_at in c), len(commands))
    job.failed = job.bash("\n".join(commands[:stop])) != 0
    job.cancelled = stop < len(commands)
    status = "canceled" if job.cancelled else "failed" if job.failed else "success"
    job.bash("\n".join(spec.get("after_script", [])) + "\ntrue", {"CI_JOB_STATUS": status})
    return job


@pytest.fixture(scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[DevStack]:
    """Dev server, simulator and a worker on task queue `deployments`, as the examples expect; the kubeconfig also
    names the simulator `prod-eu` (the worker reads the kubeconfig when a spec first names a cluster)."""
    state = tmp_path_factory.mktemp("ci-stack")
    async with DevStack(ports=DevPorts.free(), state_dir=state, time_factor=20.0, prometheus=False,
                        persistent=False, namespaces=(NAMESPACE,)) as dev:
        config = yaml.safe_load(dev.kubeconfig.read_text())
        config["contexts"].append({"name": CLUSTER, "context": dict(config["contexts"][0]["context"])})
        dev.kubeconfig.write_text(yaml.safe_dump(config))
        yield dev


def new_job(stack: DevStack, tmp_path: Path, template: str, tag: str) -> Job:
    """A checkout of the repository as CI sees it: deploy/ci/ as committed, and the app's spec template."""
    workspace = tmp_path / "workspace"
    shutil.copytree(CI, workspace / "deploy" / "ci")
    (workspace / "deploy" / "shop.yaml").write_text(template)
    runner_temp = tmp_path / "runner-temp"
    runner_temp.mkdir()
    github_env = runner_temp / "github-env"
    github_env.touch()
    env = {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "HOME": str(tmp_path),
        "CI": "true",
        # The runners' own variables.
        "GITHUB_REF_NAME": tag, "GITHUB_ENV": str(github_env), "RUNNER_TEMP": str(runner_temp),
        "GITHUB_WORKSPACE": str(workspace), "CI_COMMIT_TAG": tag,
        # GitLab's CI/CD variables (GitHub's come through the expressions below).
        "TEMPORAL_ADDRESS": stack.temporal_address, "TEMPORAL_NAMESPACE": "default",
    }
    expressions = {
        "vars.TEMPORAL_ADDRESS": stack.temporal_address,
        "vars.TEMPORAL_NAMESPACE": "default",
        "secrets.TEMPORAL_API_KEY": "",  # the dev server takes no key
    }
    return Job(workspace=workspace, env=env, expressions=expressions)


RUNNERS = {"github": run_github, "gitlab": run_gitlab}


@pytest.mark.parametrize("ci", RUNNERS)
async def test_a_good_release_passes_the_job(ci: str, stack: DevStack, tmp_path: Path) -> None:
    job = RUNNERS[ci](new_job(stack, tmp_path, TEMPLATE, "v2.0.0"))
    assert not job.failed, job.log
    assert "Succeeded" in job.log, job.log  # the live status and the final one say how it ended
    client = await stack.client()
    handle = client.get_workflow_handle(f"deploy/{CLUSTER}/{NAMESPACE}/shop")
    status = await handle.query("status")
    assert status["phase"] == "Succeeded" and status["version"] == "2.0.0", status


@pytest.mark.parametrize("ci", RUNNERS)
async def test_a_bad_release_fails_the_job_with_the_reason(ci: str, stack: DevStack, tmp_path: Path) -> None:
    job = RUNNERS[ci](new_job(stack, tmp_path, BAD_TEMPLATE, "v2.0.1"))
    assert job.failed, job.log
    assert "failed: rolled back" in job.log and "CrashLoopBackOff" in job.log, job.log
    client = await stack.client()
    status = await client.get_workflow_handle(f"deploy/{CLUSTER}/{NAMESPACE}/shop").query("status")
    assert status["version"] == "2.0.1" and status["phase"] == "RolledBack", status


@pytest.mark.parametrize("ci", RUNNERS)
async def test_a_spec_error_fails_before_anything_starts(ci: str, stack: DevStack, tmp_path: Path) -> None:
    client = await stack.client()
    before = await client.count_workflows()
    job = RUNNERS[ci](new_job(stack, tmp_path, TEMPLATE.replace("replicas: 2", "replicas: -1"), "v2.0.2"))
    assert job.failed, job.log
    assert "workload.replicas" in job.log, job.log
    assert (await client.count_workflows()).count == before.count


@pytest.mark.parametrize("ci", RUNNERS)
async def test_a_cancelled_job_cancels_the_release_which_rolls_back(ci: str, stack: DevStack, tmp_path: Path) -> None:
    gated = TEMPLATE + "promotion: {mode: manual}\n"  # it waits for a promotion that never comes
    job = new_job(stack, tmp_path, gated, "v2.0.3")
    job.cancel_at = "deployflow wait"
    RUNNERS[ci](job)
    assert job.cancelled, job.log
    assert "temporal workflow cancel" in job.log, job.log
    client = await stack.client()
    handle = client.get_workflow_handle(f"deploy/{CLUSTER}/{NAMESPACE}/shop")
    with pytest.raises(WorkflowFailureError) as ended:
        await asyncio.wait_for(handle.result(), timeout=STEP_TIMEOUT)
    assert isinstance(ended.value.cause, CancelledError), ended.value
    status = await handle.query("status")
    assert status["version"] == "2.0.3" and status["phase"] == "RolledBack", status
