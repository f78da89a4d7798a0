"""`deployflow demo`: a local stack, then real releases of demo apps shown live, then a summary.

Non-interactive and bounded: every step has a timeout, and a step that overruns is cancelled (which rolls it back)
and reported, so the demo ends by itself whatever happens. The releases are the example specs from `examples/`,
adjusted only where a throwaway stack differs (namespace, Prometheus address, short standby).
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from rich.console import Console
from rich.table import Table

from deployflow.cli import CliError, Outcome, follow, start_deployment, validate_spec
from deployflow.demo_report import demo_releases, show_report
from deployflow.dev import DevPorts, DevStack, StackError
from deployflow.status import DeploymentStatus, Phase, format_percent

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMESPACE = "demo"
DEV_PROMETHEUS = "http://127.0.0.1:9090"


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


@dataclass
class DemoStep:
    title: str
    example: str  # file in examples/
    expect: Phase  # SUCCEEDED, or ROLLED_BACK for the release that is meant to fail
    overrides: dict[str, Any] = field(default_factory=dict)
    narrative: str = ""
    manifests: str | None = None  # applied first (examples/manifests/...): an app as a team already runs it


@dataclass
class StepResult:
    step: DemoStep
    workflow_id: str = ""
    run_id: str = ""
    strategy: str = ""
    version: str = ""
    phase: str = "-"
    seconds: float = 0.0
    detail: str = ""
    ok: bool = False
    no_backend: int | None = None  # requests that found no ready backend while this release ran
    weights: str = ""  # the canary weights set, each with the share it really got ("5%→20%, 25%, ...")


def demo_plan(prometheus_url: str | None) -> list[DemoStep]:
    """The releases the demo runs: canary analysis needs Prometheus, so the canary releases run only with it."""
    ns = {"target": {"namespace": NAMESPACE}}
    steps = [
        DemoStep(
            "shop v1: first release", "bluegreen.yaml", Phase.SUCCEEDED,
            deep_merge(ns, {"workload": {"image": "registry.example.com/shop/web:1.0.0"}, "standby": "0s"}),
            "Nothing runs yet: the first release creates the blue colour and the Services.",
        ),
        DemoStep(
            "shop v1 → v2: blue-green", "bluegreen.yaml", Phase.SUCCEEDED,
            deep_merge(ns, {"standby": "5s"}),
            "v2 starts beside v1, is smoke-tested through the preview Service, then the active Service switches in "
            "one step; v1 stays on standby for an instant rollback.",
        ),
    ]
    if prometheus_url:
        canary = ns
        steps += [
            DemoStep("cart v1: first release", "canary.yaml", Phase.SUCCEEDED,
                     deep_merge(canary, {"workload": {"image": "registry.example.com/shop/cart:1.0.0"}}),
                     "The first canary release has nothing to compare against and goes straight to 100%."),
            DemoStep("cart v1 → v2: canary 5/25/50/100%", "canary.yaml", Phase.SUCCEEDED, canary,
                     "A good v2 is set to 5, 25, 50 then 100% of traffic while Prometheus measures its error rate. "
                     "Without a mesh the split is the pod ratio: 5% of 4 pods becomes 1 canary pod beside 7 stable "
                     "(12.5%); the summary shows the share each step really got."),
            DemoStep("cart v2 → v3: a bad canary", "canary-bad.yaml", Phase.ROLLED_BACK, canary,
                     "v3 answers 20% of requests with errors: analysis fails at 5% and the release rolls back."),
        ]
    steps.append(
        DemoStep("catalog v1 → v2: rolling + migration", "rolling.yaml", Phase.SUCCEEDED, ns,
                 "catalog v1 runs as a plain 4-replica Deployment. Its database migration Job runs first, "
                 "then the pods move to v2 one batch at a time, each batch healthy before the next.",
                 manifests="manifests/catalog.yaml"),
    )
    return steps


def no_backend_requests(sim_url: str, namespace: str) -> int | None:
    """Requests that found no ready backend, from the simulator's /metrics (None when it does not export them)."""
    try:
        text = httpx.get(f"{sim_url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return None
    total = 0.0
    seen = False
    pattern = re.compile(r'^sim_no_backend_requests_total\{([^}]*)\}\s+([0-9.eE+-]+)', re.M)
    for labels, value in pattern.findall(text):
        if f'namespace="{namespace}"' in labels:
            total += float(value)
            seen = True
    return int(total) if seen or "sim_no_backend_requests_total" in text else None


def requests_by_version(sim_url: str, namespace: str) -> dict[str, tuple[int, int]]:
    """{version: (requests, 5xx)} served in a namespace, from the simulator's /metrics."""
    try:
        text = httpx.get(f"{sim_url}/metrics", timeout=5).text
    except httpx.HTTPError:
        return {}
    out: dict[str, list[int]] = {}
    for labels, value in re.findall(r'^http_requests_total\{([^}]*)\}\s+([0-9.eE+-]+)', text, re.M):
        parsed = dict(re.findall(r'(\w+)="([^"]*)"', labels))
        if parsed.get("namespace") != namespace:
            continue
        key = f"{parsed.get('service', '?')} {parsed.get('version', '?')}"
        counts = out.setdefault(key, [0, 0])
        counts[0] += int(float(value))
        if parsed.get("code", "").startswith("5"):
            counts[1] += int(float(value))
    return {k: (v[0], v[1]) for k, v in sorted(out.items())}


def apply_manifests(kubeconfig: Path, path: Path, namespace: str, timeout: float) -> None:
    """Creates the objects of a manifest file (what `kubectl apply -f` would do for a new app) and waits until its
    Deployments are ready, so the release starts from an app that serves."""
    from kubernetes import client, config, utils

    api = config.new_client_from_config(config_file=str(kubeconfig), context="sim")
    deployments = []
    for doc in yaml.safe_load_all(path.read_text()):
        if doc:
            doc.setdefault("metadata", {})["namespace"] = namespace
            utils.create_from_dict(api, doc, namespace=namespace)
            if doc.get("kind") == "Deployment":
                deployments.append(doc["metadata"]["name"])
    apps = client.AppsV1Api(api)
    deadline = time.monotonic() + timeout
    for name in deployments:
        while True:
            dep = apps.read_namespaced_deployment(name, namespace)
            ready = dep.status.ready_replicas if dep.status else 0
            if (ready or 0) >= ((dep.spec.replicas if dep.spec else 0) or 0):
                break
            if time.monotonic() > deadline:
                raise CliError(f"{path.name}: Deployment {name} did not become ready within {timeout:.0f}s")
            time.sleep(0.2)


def create_namespace(kubeconfig: Path, name: str) -> None:
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig), context="sim"))
    try:
        api.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    except ApiException as err:
        if err.status != 409:
            raise


async def run_step(console: Console, stack: DevStack, step: DemoStep, timeout: float) -> StepResult:
    result = StepResult(step)
    if step.manifests:
        await asyncio.to_thread(apply_manifests, stack.kubeconfig, EXAMPLES / step.manifests, NAMESPACE, timeout)
        console.print(f"[dim]applied examples/{step.manifests}; its pods are ready[/dim]")
    before = no_backend_requests(stack.sim_url, NAMESPACE)
    source = (EXAMPLES / step.example).read_text()
    if stack.prometheus_url:  # the examples name `deployflow dev`'s default Prometheus; this stack has its own port
        source = source.replace(DEV_PROMETHEUS, stack.prometheus_url)
    doc = deep_merge(yaml.safe_load(source), step.overrides)
    try:
        loaded = validate_spec(doc, origin=f"examples/{step.example}")
    except CliError as err:
        result.detail = str(err)
        return result
    result.strategy = loaded.strategy
    result.version = getattr(loaded.spec, "version", None) or getattr(loaded.spec, "resolved_version", None) or ""
    result.workflow_id = loaded.workflow_id
    client = await stack.client()
    started = time.monotonic()
    handle = await start_deployment(client, loaded)
    result.run_id = handle.result_run_id or ""
    link = stack.ui_workflow_url(handle.id, handle.result_run_id)
    console.print(f"[dim]workflow[/dim] {handle.id}   [dim]UI[/dim] {link}")
    try:
        outcome: Outcome = await asyncio.wait_for(follow(handle, console), timeout=timeout)
    except TimeoutError:
        result.seconds = time.monotonic() - started
        result.detail = (f"did not finish within {timeout:.0f}s; cancelled (which rolls it back). "
                         f"See `deployflow status {handle.id}` and {stack.state_dir}/worker.log")
        console.print(f"[red]timeout:[/red] {step.title} {result.detail}")
        with contextlib.suppress(Exception):
            await handle.cancel()
        return result
    result.seconds = time.monotonic() - started
    after = no_backend_requests(stack.sim_url, NAMESPACE)
    if before is not None and after is not None:
        result.no_backend = after - before
    phase = outcome.status.phase if outcome.status else None
    if phase is None:
        phase = Phase.SUCCEEDED if outcome.succeeded else Phase.FAILED
    result.phase = str(phase)
    if outcome.status is not None:
        result.weights = canary_weights(outcome.status)
    verdicts = [m for m in (outcome.status.measurements if outcome.status else []) if m.verdict != "Successful"]
    if outcome.status and outcome.status.message:
        result.detail = outcome.status.message  # says what happened and why, verdicts included
    elif outcome.failure:
        result.detail = outcome.failure
    elif verdicts:
        m = verdicts[-1]
        result.detail = f"{m.metric}={m.value} {m.condition} → {m.verdict}"
    result.ok = (phase == step.expect and (step.expect != Phase.SUCCEEDED or outcome.succeeded)
                 and not result.no_backend)
    colour = "green" if result.ok else "red"
    expected = "" if result.ok else f" (expected {step.expect})"
    console.print(f"[{colour}]{result.phase}{expected}[/{colour}] in {result.seconds:.1f}s"
                  + (f": {result.detail}" if result.detail else ""))
    return result


def canary_weights(status: DeploymentStatus) -> str:
    """The weights a canary's steps set, in order, each with the share of requests it really got when that differs:
    "5%→12.5%, 25%, 50%, 100%" (a replicas router cannot give 5% of 4 pods)."""
    shown = []
    for step in status.traffic_history:
        text = f"{step.requested}%"
        if step.actual is not None and abs(step.actual - step.requested) >= 0.05:
            text += f"→{format_percent(step.actual)}"
        shown.append(text)
    return ", ".join(shown)


def summary_table(results: list[StepResult]) -> Table:
    table = Table(title="deployflow demo: summary", title_justify="left")
    columns = ("release", "strategy", "version", "outcome", "expected", "took", "canary weight set→actual",
               "no-backend requests")
    for col in columns:
        table.add_column(col)
    for r in results:
        no_backend = "-" if r.no_backend is None else str(r.no_backend)
        table.add_row(r.step.title, r.strategy or "-", r.version or "-",
                      f"[{'green' if r.ok else 'red'}]{r.phase}[/]", str(r.step.expect), f"{r.seconds:.1f}s",
                      r.weights or "-", f"[{'green' if not r.no_backend else 'red'}]{no_backend}[/]")
    return table


async def run_demo(
    console: Console,
    *,
    time_factor: float = 20.0,
    step_timeout: float = 180.0,
    keep_running: bool = False,
    state_dir: Path = Path(".deployflow/demo"),
    plan: Callable[[str | None], list[DemoStep]] = demo_plan,
) -> bool:
    """Runs the demo; True when every release ended as expected and no request found the app without a backend."""
    shutil.rmtree(state_dir, ignore_errors=True)
    stack = DevStack(DevPorts.free(), state_dir=state_dir, time_factor=time_factor, persistent=False,
                     namespaces=(NAMESPACE,))
    console.rule("[bold]deployflow demo")
    console.print(f"Starting the local stack (Temporal dev server, simulator ×{time_factor:g}, Prometheus, worker)…")
    began = time.monotonic()
    began_at = datetime.now(UTC)
    try:
        await asyncio.wait_for(stack.start(), timeout=step_timeout)
    except (StackError, TimeoutError) as err:
        await stack.stop()
        raise CliError(f"the demo stack did not start: {err or 'timed out'}") from None
    results: list[StepResult] = []
    try:
        stack.print_addresses(console)
        os.environ.update(stack.child_env())
        steps = plan(stack.prometheus_url)
        if not stack.prometheus_url:
            console.print("[yellow]Prometheus is not installed: the canary releases are skipped[/yellow]")
        for step in steps:
            console.rule(f"[bold]{step.title}")
            if step.narrative:
                console.print(step.narrative)
            result = await run_step(console, stack, step, step_timeout)
            results.append(result)
            if not result.ok and step.expect == Phase.SUCCEEDED:
                console.print("[red]stopping the demo: the next releases build on this one[/red]")
                break
        console.rule()
        console.print(summary_table(results))
        for r in results:
            if r.detail:
                console.print(f"  [bold]{r.step.title}[/bold]: {r.detail}")
        traffic = requests_by_version(stack.sim_url, NAMESPACE)
        if traffic:
            t = Table(title=f"traffic served in namespace {NAMESPACE}", title_justify="left", show_edge=False)
            t.add_column("service version")
            t.add_column("requests", justify="right")
            t.add_column("5xx", justify="right")
            for key, (n, errors) in traffic.items():
                t.add_row(key, str(n), str(errors))
            console.print(t)
        counted = [r.no_backend for r in results if r.no_backend is not None]
        if not counted:
            console.print("requests that found no ready backend: not exported by this simulator build")
        else:
            total = sum(counted)
            style = "green" if total == 0 else "red"
            console.print(f"requests that found no ready backend during the releases: [{style}]{total}[/{style}]")
        releases = await demo_releases(await stack.client(), began_at, {r.run_id for r in results if r.run_id})
        show_report(console, releases, began_at, datetime.now(UTC), state_dir / "report.png")
        console.print(f"Temporal UI: {stack.ui_url}/namespaces/default/workflows   "
                      f"(total {time.monotonic() - began:.0f}s)")
        ok = bool(results) and all(r.ok for r in results) and len(results) == len(steps)
        if keep_running:
            console.print("The stack keeps running (Ctrl-C stops it):")
            console.print(f"  export {' '.join(f'{k}={v}' for k, v in stack.child_env().items())}")
            stop = asyncio.Event()
            import signal

            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stack.wait(stop)
        return ok
    finally:
        await stack.stop()
