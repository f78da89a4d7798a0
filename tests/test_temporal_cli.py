"""The README's `temporal` CLI commands, run verbatim with the real binary against the dev server and a worker.

The commands are read from the README block marked `temporal-cli-commands`, so the documentation cannot drift from
what works. Only the workflow id, the input file and `--address` are substituted.
"""

from __future__ import annotations

import asyncio
import json
import shlex
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from deployflow.spec import BlueGreenRequest
from deployflow.status import DeploymentStatus, Phase
from deployflow.temporal import DEFAULT_TASK_QUEUE, temporal_cli_path

README = Path(__file__).resolve().parent.parent / "README.md"
README_ID = "deploy/sim/demo/shop"
WAIT = 60.0  # seconds a condition may take before the test gives up (bounds a hang; not a speed assertion)


def readme_commands() -> list[list[str]]:
    text = README.read_text()
    marker = text.index("<!-- temporal-cli-commands")
    block = text[text.index("```sh", marker) + len("```sh"): text.index("```", text.index("```sh", marker) + 5)]
    return [shlex.split(line) for line in block.strip().splitlines() if line.strip()]


def command(commands: list[list[str]], *words: str) -> list[str]:
    """The README command starting `temporal workflow <words...>` (e.g. "signal", "--name", "pause")."""
    for argv in commands:
        if argv[2:2 + 1] == [words[0]] and all(w in argv for w in words[1:]):
            return argv
    raise AssertionError(f"the README has no `temporal workflow {' '.join(words)}` command")


async def run_temporal(argv: list[str], address: str, workflow_id: str, spec_file: Path,
                       queue: str = DEFAULT_TASK_QUEUE) -> tuple[int, str]:
    assert argv[:2] == ["temporal", "workflow"], argv
    # --address goes right after the subcommand ("update execute" has two words).
    sub = 4 if argv[2] == "update" else 3
    args = [temporal_cli_path(), *argv[1:sub], "--address", address, *argv[sub:]]
    subst = {README_ID: workflow_id, "spec.json": str(spec_file), DEFAULT_TASK_QUEUE: queue}
    args = [subst.get(a, a) for a in args]
    proc = await asyncio.create_subprocess_exec(
        *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=WAIT)
    return proc.returncode or 0, out.decode()


def spec(namespace: str, version: str, **extra: Any) -> BlueGreenRequest:
    return BlueGreenRequest.model_validate({
        "strategy": "blue-green",
        "target": {"cluster": "sim", "namespace": namespace, "app": "shop"},
        "workload": {"image": f"registry.example.com/shop/web:{version}", "replicas": 2},
        **extra,
    })


async def eventually(check: Callable[[], Awaitable[bool]], what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"never happened: {what}")


def served_version(sim_url: str, namespace: str, service: str = "shop") -> str:
    resp = httpx.get(f"{sim_url}/api/v1/namespaces/{namespace}/services/{service}/proxy/", timeout=10)
    assert resp.status_code == 200, resp.text
    return str(resp.json()["version"])


async def test_readme_temporal_cli_commands(dev_env: WorkflowEnvironment, worker: str, sim: Any, namespace: str,
                                            tmp_path: Path) -> None:
    client = dev_env.client
    address = client.service_client.config.target_host
    workflow_id = f"deploy/sim/{namespace}/shop"
    commands = readme_commands()

    async def run(argv: list[str]) -> tuple[int, str]:
        return await run_temporal(argv, address, workflow_id, spec_file, worker)

    # v1 is live first, so the release under test has a stable version to return to.
    v1 = await client.execute_workflow("BlueGreenDeployment", spec(namespace, "1.0.0", standby="0s"),
                                       id=workflow_id, task_queue=worker,
                                       result_type=DeploymentStatus)
    assert v1.phase == Phase.SUCCEEDED
    assert served_version(sim.url, namespace) == "1.0.0"

    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec(namespace, "2.0.0", promotion={"mode": "manual"}, standby="10m").model_dump_json())
    handle = client.get_workflow_handle(workflow_id)

    async def status() -> DeploymentStatus:
        return await handle.query("status", result_type=DeploymentStatus)

    code, out = await run(command(commands, "start"))
    assert code == 0, out
    code, out = await run(command(commands, "start"))
    assert code == 1, f"a second start with --fail-existing must fail:\n{out}"

    code, out = await run(command(commands, "signal", "pause"))
    assert code == 0, out

    async def paused() -> bool:
        return (await status()).paused

    await eventually(paused, "the pause signal took effect")
    code, out = await run(command(commands, "query", "status"))
    assert code == 0, out
    assert '"paused":true' in out.replace(" ", ""), out

    code, out = await run(command(commands, "signal", "resume"))
    assert code == 0, out

    async def waiting() -> bool:
        st = await status()
        return not st.paused and st.phase == Phase.WAITING_PROMOTION

    await eventually(waiting, "v2 healthy and waiting at the manual gate")
    assert served_version(sim.url, namespace) == "1.0.0"  # nothing switched before promotion

    code, out = await run(command(commands, "update", "execute", "promote"))
    assert code == 0, out

    async def switched() -> bool:
        return (await status()).phase == Phase.STANDBY

    await eventually(switched, "the switch to v2 (standby holds v1)")
    assert served_version(sim.url, namespace) == "2.0.0"

    code, out = await run(command(commands, "signal", "abort"))
    assert code == 0, out
    code, out = await run(command(commands, "result"))
    assert code != 0, f"a rolled-back deployment must make `temporal workflow result` fail:\n{out}"
    assert "error rate above 5%" in out, out

    # The cluster is back on v1: the stable version serves, and the status says so.
    final = await status()
    assert final.phase == Phase.ROLLED_BACK, final
    for _ in range(5):
        assert served_version(sim.url, namespace) == "1.0.0"


async def test_refused_update_exits_non_zero_with_the_reason(dev_env: WorkflowEnvironment, worker: str,
                                                             namespace: str, tmp_path: Path) -> None:
    client = dev_env.client
    address = client.service_client.config.target_host
    workflow_id = f"deploy/sim/{namespace}/shop"
    spec_file = tmp_path / "spec.json"
    spec_file.write_text(spec(namespace, "1.0.0", promotion={"mode": "manual"}).model_dump_json())
    handle = await client.start_workflow("BlueGreenDeployment", json.loads(spec_file.read_text()),
                                         id=workflow_id, task_queue=worker)
    try:
        # resume when nothing is paused makes no sense: the update is refused, the CLI says why and exits 1.
        code, out = await run_temporal(
            ["temporal", "workflow", "update", "execute", "--workflow-id", README_ID, "--name", "resume"],
            address, workflow_id, spec_file,
        )
        assert code != 0, out
        assert "not paused" in out, out
    finally:
        await handle.cancel()
    with pytest.raises(Exception):  # noqa: B017 - cancellation surfaces as WorkflowFailureError
        await handle.result()
