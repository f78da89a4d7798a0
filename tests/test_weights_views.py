"""Every view of a canary shows the weight asked for and the one the canary really gets; the step line and a
rollback's reason are said once. Unit tests of the renderers and the CLI's --strict exit codes."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from temporalio.exceptions import ApplicationError
from typer.testing import CliRunner

from deployflow.cli import app
from deployflow.cli.output import failure_text, status_table
from deployflow.demo import DemoStep, StepResult, canary_weights, summary_table
from deployflow.notify.slack import SlackSender
from deployflow.spec.notify import Notifier, NotifyEvent, NotifyMessage
from deployflow.status import DeploymentStatus, Measurement, Phase, TrafficStep, step_text, traffic_text

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def canary_status(**fields: Any) -> DeploymentStatus:
    status = DeploymentStatus(
        strategy="canary", app="cart", namespace="demo", cluster="sim", version="2.0.0", previous_version="1.0.0",
        phase=Phase.WAITING_PROMOTION, step="pause until promoted", step_index=2, step_count=3,
        weights={"stable": 95, "canary": 5}, actual_weights={"stable": 80.0, "canary": 20.0},
        details={"stable_pods": 4, "canary_pods": 1},
    )
    status.details["traffic"] = traffic_text(status)
    return status.model_copy(update=fields)


def rendered(status: DeploymentStatus) -> str:
    console = Console(width=160, record=True)
    console.print(status_table(status, "deploy/sim/demo/cart"))
    return console.export_text()


def test_traffic_text_says_requested_and_actual() -> None:
    status = canary_status()
    assert traffic_text(status) == "stable 95%, canary 5% requested; actual stable 80%, canary 20%"
    same = status.model_copy(update={"weights": {"stable": 75, "canary": 25},
                                     "actual_weights": {"stable": 75.0, "canary": 25.0}})
    assert traffic_text(same) == "stable 75%, canary 25% (requested and actual)"
    unknown = status.model_copy(update={"actual_weights": {}})
    assert traffic_text(unknown) == "stable 95%, canary 5%"


def test_status_table_shows_both_splits_and_the_step_once() -> None:
    lines = rendered(canary_status()).splitlines()
    (set_row,) = [line for line in lines if line.startswith("traffic set")]
    (actual_row,) = [line for line in lines if line.startswith("traffic actual")]
    assert "stable" in set_row and "95%" in set_row and "5%" in set_row
    assert "80%" in actual_row and "20%" in actual_row and "not the requested split" in actual_row
    (step_row,) = [line for line in lines if line.startswith("step")]
    assert step_row.split(None, 1)[1].strip() == "2/3 pause until promoted"
    assert not [line for line in lines if line.startswith("traffic ") and "requested;" in line]  # no text duplicate


def test_steps_that_carry_their_number_are_not_numbered_twice() -> None:
    # The canary names its steps "2/3 pause until promoted"; other strategies name them without the number.
    numbered = canary_status(step="2/3 pause until promoted")
    assert step_text(numbered) == "2/3 pause until promoted"
    lines = rendered(numbered).splitlines()
    (step_row,) = [line for line in lines if line.startswith("step")]
    assert step_row.split(None, 1)[1].strip() == "2/3 pause until promoted"
    assert step_text(canary_status(step="validate", step_index=0)) == "validate"


def test_analysis_table_shows_the_weight_of_each_measurement() -> None:
    measurement = Measurement(time=T0, metric="error_rate", value=0.1872, condition="result > 0.05",
                              verdict="Failed", weight=20.0)
    text = rendered(canary_status(measurements=[measurement]))
    (row,) = [line for line in text.splitlines() if "0.1872" in line]
    assert row.rstrip().endswith("20%")


def test_a_rollback_reason_is_said_once() -> None:
    reason = "error_rate 0.1872 > 0.05, 1 of 1 measurement failed"
    cause = ApplicationError(reason, type="AnalysisFailed")
    outer = ApplicationError(f"rolled back at step 2 (5%): {reason}; traffic is back on 1.0.0", type="RolledBack")
    outer.__cause__ = cause
    assert failure_text(outer) == f"rolled back at step 2 (5%): {reason}; traffic is back on 1.0.0"
    other = ApplicationError("rollback failed", type="RollbackFailed")
    other.__cause__ = ApplicationError("stable not ready", type="HealthTimeout")
    assert failure_text(other) == "rollback failed: stable not ready"


def test_slack_message_carries_the_traffic_in_its_text() -> None:
    status = canary_status()
    message = NotifyMessage(
        event=NotifyEvent.WAITING_APPROVAL, time=T0, workflow_id="deploy/sim/demo/cart", strategy="canary",
        cluster="sim", namespace="demo", app="cart", version="2.0.0", previous_version="1.0.0",
        phase="WaitingPromotion", reason="paused at 5%: waiting for promote",
        details={k: str(v) for k, v in status.details.items()},
    )
    body = SlackSender().payload(Notifier(kind="slack", url_env="DEPLOYFLOW_CRED_X"), message)
    assert body["text"].endswith("\ntraffic: stable 95%, canary 5% requested; actual stable 80%, canary 20%")
    titles = [f["title"] for f in body["attachments"][0]["fields"]]
    assert "traffic" not in titles and "canary_pods" in titles


def test_demo_summary_prints_the_weight_each_step_really_got() -> None:
    steps = [(5, 12.5), (25, 25.0), (50, 50.0), (100, 100.0)]
    history = [TrafficStep(time=T0, requested=w, actual=a) for w, a in steps]
    status = canary_status(traffic_history=history)
    assert canary_weights(status) == "5%→12.5%, 25%, 50%, 100%"
    result = StepResult(DemoStep("cart v1 → v2", "canary.yaml", Phase.SUCCEEDED), phase="Succeeded", ok=True,
                        weights=canary_weights(status))
    console = Console(width=200, record=True)
    console.print(summary_table([result]))
    assert "5%→12.5%, 25%, 50%, 100%" in console.export_text()


def write_canary(tmp_path: Path, **traffic: Any) -> Path:
    spec = {
        "strategy": "canary",
        "target": {"cluster": "sim", "namespace": "demo", "app": "cart"},
        "workload": {"image": "registry.example.com/cart:2.0.0", "replicas": 4},
        "traffic": {"router": "replicas", **traffic},
        "steps": [{"set_weight": 5}, {"set_weight": 50}],
    }
    path = tmp_path / "canary.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_validate_warns_and_strict_refuses(tmp_path: Path) -> None:
    runner = CliRunner()
    path = write_canary(tmp_path)
    warned = runner.invoke(app, ["validate", str(path)])
    assert warned.exit_code == 0, warned.output
    assert "step 1 set_weight 5" in warned.output and "12.5%" in warned.output
    strict = runner.invoke(app, ["validate", "--strict", str(path)])
    assert strict.exit_code == 2 and "step 1 set_weight 5" in strict.output
    assert "step 2" not in strict.output  # 50% of 4 pods is exact
    mesh = runner.invoke(app, ["validate", "--strict", str(write_canary(tmp_path, router="istio"))])
    assert mesh.exit_code == 0, mesh.output


def test_start_strict_refuses_before_connecting(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "127.0.0.1:1")  # nothing listens: reaching Temporal would exit 1
    result = CliRunner().invoke(app, ["start", "--strict", str(write_canary(tmp_path))])
    assert result.exit_code == 2 and "step 1 set_weight 5" in result.output
