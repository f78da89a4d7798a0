"""What the simulator tests share: a cluster driven pass by pass at a hand-moved clock (`SimCluster`), and
object bodies and error checks for tests through the API. (The fixtures are in fixtures_sim.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException

from deployflow.sim.config import Clock, SimConfig
from deployflow.sim.controllers import ControllerManager
from deployflow.sim.controllers.pods import is_ready
from deployflow.sim.resources import DEPLOYMENTS, PODS, REPLICASETS, SERVICES
from deployflow.sim.store import Obj, Store
from deployflow.sim.traffic import Traffic

NS = "shop"


class ManualClock(Clock):
    """Simulated time that only moves when the test says so."""

    def __init__(self) -> None:
        super().__init__(1.0)
        self.t = 0.0

    def now(self) -> float:
        return self.t


class SimCluster:
    """Store + controllers + traffic at a hand-moved clock: the simulator minus its HTTP layer."""

    def __init__(self, ready_delay: float = 2.0, rps: float = 20.0) -> None:
        self.store = Store()
        self.clock = ManualClock()
        self.config = SimConfig(ready_delay_seconds=ready_delay, traffic_rps=rps, seed=7)
        self.manager = ControllerManager(self.store, self.clock, self.config)
        self.traffic = Traffic(self.store, self.clock, self.config)

    def step(self, seconds: float = 0.5) -> None:
        """Moves the clock and runs a pass if one is due, exactly as `ControllerManager.run` does."""
        self.clock.t += seconds
        self.manager.reconcile_due()

    def run_until(self, done: Callable[[], bool], seconds: float = 120, step: float = 0.5,
                  each: Callable[[], None] | None = None) -> None:
        deadline = self.clock.t + seconds
        while not done():
            assert self.clock.t < deadline, f"not reached within {seconds} simulated seconds"
            self.step(step)
            if each:
                each()

    # ---- objects --------------------------------------------------------------------------------------

    def deploy(self, name: str = "web", version: str = "v1", replicas: int = 3, annotations: dict[str, str] | None
               = None, **spec: Any) -> Obj:
        body: Obj = {
            "metadata": {"name": name, "namespace": NS},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": template(name, version, annotations),
                **spec,
            },
        }
        return self.store.create(DEPLOYMENTS, body)

    def set_version(self, name: str, version: str, annotations: dict[str, str] | None = None) -> None:
        def change(d: Obj) -> None:
            d["spec"]["template"] = template(name, version, annotations)

        self.store.mutate(DEPLOYMENTS, NS, name, change)

    def patch_spec(self, name: str, **fields: Any) -> None:
        self.store.mutate(DEPLOYMENTS, NS, name, lambda d: d["spec"].update(fields))

    def service(self, name: str, selector: dict[str, str], annotations: dict[str, str] | None = None) -> Obj:
        return self.store.create(SERVICES, {
            "metadata": {"name": name, "namespace": NS, "annotations": annotations or {}},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        })

    def deployment(self, name: str = "web") -> Obj:
        d = self.store.get(DEPLOYMENTS, NS, name)
        assert d is not None
        return d

    def pods(self, app: str | None = None) -> list[Obj]:
        return [p for p in self.store.list(PODS, NS) if app is None or p["metadata"]["labels"].get("app") == app]

    def ready_pods(self, app: str | None = None) -> list[Obj]:
        return [p for p in self.pods(app) if is_ready(p)]

    def replicasets(self) -> list[Obj]:
        return self.store.list(REPLICASETS, NS)

    def versions(self, app: str | None = None, ready_only: bool = True) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.ready_pods(app) if ready_only else self.pods(app):
            v = p["metadata"]["labels"]["app.kubernetes.io/version"]
            out[v] = out.get(v, 0) + 1
        return out

    def complete(self, name: str = "web") -> bool:
        d = self.deployment(name)
        st = d.get("status", {})
        want = d["spec"]["replicas"]
        return bool(
            st.get("observedGeneration") == d["metadata"]["generation"]
            and st.get("updatedReplicas") == want == st.get("replicas") == st.get("availableReplicas")
            and condition(d, "Progressing").get("reason") == "NewReplicaSetAvailable"
        )


def template(app: str, version: str, annotations: dict[str, str] | None = None) -> Obj:
    return {
        "metadata": {"labels": {"app": app, "app.kubernetes.io/version": version}, "annotations": annotations or {}},
        "spec": {"containers": [{"name": "app", "image": f"registry.local/{app}:{version}",
                                 "ports": [{"name": "http", "containerPort": 8080}]}]},
    }


def condition(obj: Obj, ctype: str) -> Obj:
    return next((c for c in obj.get("status", {}).get("conditions") or [] if c["type"] == ctype), {})


def container_status(pod: Obj) -> Obj:
    statuses: list[Obj] = pod["status"]["containerStatuses"]
    return statuses[0]


def status_of(err: ApiException) -> dict[str, Any]:
    body = json.loads(str(err.body))
    assert body["kind"] == "Status" and body["status"] == "Failure" and body["code"] == err.status
    return body


def cm(name: str, labels: dict[str, str] | None = None, data: dict[str, str] | None = None) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data or {"k": "v"}}


def deployment(name: str, image: str = "web:1", replicas: int = 1, **template_extra: Any) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": image, **template_extra}]},
            },
        },
    }
