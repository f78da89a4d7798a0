"""The train spec (refusals name the field; dependency order; the rollback release) and `deployflow dev --clusters`,
several simulated clusters in one kubeconfig, run as a user runs it."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as kube_client
from kubernetes import config as kube_config
from pydantic import ValidationError

from deployflow.cli.stack import cluster_names
from deployflow.dev import DevPorts, port_in_use
from deployflow.spec import describe_validation_error, parse_spec
from deployflow.spec.train import TrainRequest
from tests.stack_support import READY_TIMEOUT, deployflow_cmd, wait_until
from tests.train_support import train

# --- the spec ---------------------------------------------------------------------------------------------------


def _spec(**changes: Any) -> dict[str, Any]:
    doc = train("shop", "2.0", apps=[{"name": "api"}, {"name": "web", "depends_on": ["api"]}]).model_dump(
        mode="json", exclude_unset=True)
    return {**doc, **changes}


@pytest.mark.parametrize(("change", "named"), [
    ({"apps": [{**_spec()["apps"][0], "depends_on": ["web"]}, _spec()["apps"][1]]}, "apps.depends_on: a cycle"),
    ({"apps": [{**_spec()["apps"][0], "depends_on": ["db"]}]}, "apps.0.depends_on: unknown apps ['db']"),
    ({"apps": [{"name": "web", "release": {**_spec()["apps"][0]["release"], "target": {"cluster": "x"}}}]},
     "apps.0.release: target: ['cluster'] are set by the train"),
    ({"apps": [{"name": "web", "release": {"strategy": "blue-green", "workload": {"image": "BAD"}}}]},
     "apps.0.release (in waves.0.targets.0): workload.image"),
    ({"waves": [{"name": "prod", "targets": []}]}, "waves.0.targets"),
    ({"max_concurrent_per_cluster": 0}, "max_concurrent_per_cluster"),
    ({"waves": [{"name": f"w{i}", "targets": [{"cluster": f"c{j}", "namespace": "shop"} for j in range(50)]}
                for i in range(6)]}, "600 releases (apps x targets); a train makes at most 500"),
])
def test_a_bad_train_is_refused_naming_the_field(change: dict[str, Any], named: str) -> None:
    with pytest.raises(ValidationError) as err:
        TrainRequest.model_validate(_spec(**change))
    assert named in describe_validation_error(err.value)


def test_train_is_a_strategy_whose_apps_run_in_dependency_order() -> None:
    spec = parse_spec(_spec())
    assert isinstance(spec, TrainRequest) and spec.workflow_id() == "train/shop-shop"
    assert spec.order() == ["api", "web"]
    back = spec.apps[1].previous_release("prod-1", "shop", "1.0")
    assert back.workload.image == "registry.example.com/shop/web:1.0"  # type: ignore[attr-defined]
    assert back.target.workflow_id() == "deploy/prod-1/shop/web"  # type: ignore[attr-defined]


# --- several clusters on a laptop -------------------------------------------------------------------------------


def test_dev_stack_runs_one_simulator_per_cluster_in_one_kubeconfig(tmp_path: Path) -> None:
    ports = DevPorts.free()
    while port_in_use("127.0.0.1", ports.sim + 1) or ports.sim + 1 in (ports.temporal, ports.ui):
        ports = DevPorts.free()
    state = tmp_path / "state"
    proc = subprocess.Popen(
        [*deployflow_cmd(), "dev", "--clusters", "staging,prod-1", "--no-prometheus",
         "--temporal-port", str(ports.temporal), "--ui-port", str(ports.ui), "--sim-port", str(ports.sim),
         "--state-dir", str(state)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        wait_until(lambda: (state / "worker.log").exists() and "worker polling" in (state / "worker.log").read_text(),
                   READY_TIMEOUT, proc, "the worker polling")
        kubeconfig = yaml.safe_load((state / "kubeconfig").read_text())
        servers = {c["name"]: c["cluster"]["server"] for c in kubeconfig["clusters"]}
        assert [c["name"] for c in kubeconfig["contexts"]] == ["staging", "prod-1"]
        assert servers == {"staging": f"http://127.0.0.1:{ports.sim}", "prod-1": f"http://127.0.0.1:{ports.sim + 1}"}
        for context in ("staging", "prod-1"):
            api = kube_client.CoreV1Api(kube_config.new_client_from_config(str(state / "kubeconfig"), context=context))
            names = {ns.metadata.name for ns in api.list_namespace().items if ns.metadata}
            assert "demo" in names  # each cluster got its own
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, out
    assert "context staging" in out and "context prod-1" in out


def test_dev_refuses_a_bad_cluster_list(tmp_path: Path) -> None:
    result = subprocess.run([*deployflow_cmd(), "dev", "--clusters", "a,a"], capture_output=True, text=True,
                            timeout=60, cwd=tmp_path)
    assert result.returncode == 1 and "--clusters" in result.stdout + result.stderr
    assert cluster_names("3") == ("sim", "sim-2", "sim-3")
