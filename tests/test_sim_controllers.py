"""The simulator's controllers, driven pass by pass on a store with a clock the test moves by hand."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from deployflow.sim.config import Clock, SimConfig
from deployflow.sim.controllers import ControllerManager
from deployflow.sim.controllers.deployments import HASH_LABEL, REVISION, fenceposts, template_hash
from deployflow.sim.controllers.pods import LOG, PodBehaviour, is_ready, lifecycle
from deployflow.sim.resources import DEPLOYMENTS, ENDPOINTS, EVENTS, JOBS, PODS, REPLICASETS, SERVICES
from deployflow.sim.selectors import LabelIndex, SelectorError, from_label_selector, matches
from deployflow.sim.store import Obj, Store
from deployflow.sim.traffic import NO_BACKEND, Traffic

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
                "template": _template(name, version, annotations),
                **spec,
            },
        }
        return self.store.create(DEPLOYMENTS, body)

    def set_version(self, name: str, version: str, annotations: dict[str, str] | None = None) -> None:
        def change(d: Obj) -> None:
            d["spec"]["template"] = _template(name, version, annotations)

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


def _template(app: str, version: str, annotations: dict[str, str] | None = None) -> Obj:
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


@pytest.fixture
def cluster() -> SimCluster:
    return SimCluster()


# ---- Deployment -> ReplicaSet -> Pods ----------------------------------------------------------------------


def test_deployment_creates_replicaset_and_pods_that_become_ready(cluster: SimCluster) -> None:
    d = cluster.deploy(replicas=3)
    cluster.step()
    [rs] = cluster.replicasets()
    h = rs["metadata"]["labels"][HASH_LABEL]
    assert rs["metadata"]["name"] == f"web-{h}"
    assert h == template_hash(d["spec"]["template"])
    assert rs["metadata"]["annotations"][REVISION] == "1"
    assert rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]
    assert rs["metadata"]["ownerReferences"][0]["controller"] is True
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", HASH_LABEL: h}
    pods = cluster.pods()
    assert len(pods) == 3 and not cluster.ready_pods()
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"] for p in pods)
    assert all(p["metadata"]["name"].startswith(f"web-{h}-") for p in pods)
    assert condition(cluster.deployment(), "Available")["status"] == "False"

    cluster.run_until(cluster.complete, seconds=10)
    d = cluster.deployment()
    assert d["status"]["readyReplicas"] == 3 and d["status"]["unavailableReplicas"] == 0
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]
    assert condition(d, "Available")["status"] == "True"
    assert condition(d, "Available")["reason"] == "MinimumReplicasAvailable"
    assert condition(d, "Progressing")["message"] == f'ReplicaSet "web-{h}" has successfully progressed.'
    assert d["metadata"]["annotations"][REVISION] == "1"
    pod = cluster.pods()[0]
    st = pod["status"]
    assert st["phase"] == "Running" and st["podIP"].startswith("10.244.") and st["hostIP"] and st["startTime"]
    assert {c["type"]: c["status"] for c in st["conditions"]} == {
        "PodReadyToStartContainers": "True", "Initialized": "True", "Ready": "True", "ContainersReady": "True",
        "PodScheduled": "True"}
    cs = container_status(pod)
    assert cs["image"] == "registry.local/web:v1" and cs["ready"] is True and cs["restartCount"] == 0
    assert "running" in cs["state"]
    assert "serving version v1" in pod["metadata"]["annotations"][LOG]
    scaled = [e for e in cluster.store.list(EVENTS, NS) if e["reason"] == "ScalingReplicaSet"]
    assert scaled and scaled[0]["message"] == f"Scaled up replica set web-{h} from 0 to 3"


def test_pods_follow_the_ready_delay_in_simulated_seconds(cluster: SimCluster) -> None:
    cluster.deploy(replicas=1, annotations={"sim.deployflow.io/ready-delay-seconds": "5"})
    cluster.step(0.0)
    cluster.step(4.0)
    [pod] = cluster.pods()
    assert pod["status"]["phase"] == "Running" and not is_ready(pod)
    cluster.step(1.5)
    assert is_ready(cluster.pods()[0])


def test_rolling_update_surge_one_unavailable_zero_never_drops_capacity_or_a_request(cluster: SimCluster) -> None:
    replicas = 4
    cluster.deploy(replicas=replicas, strategy={"type": "RollingUpdate",
                                                "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    cluster.service("web", {"app": "web"})
    cluster.run_until(cluster.complete)
    cluster.set_version("web", "v2")
    served: dict[str, int] = {}
    seen_total: set[int] = set()

    def check() -> None:
        assert len(cluster.ready_pods()) >= replicas
        seen_total.add(len(cluster.pods()))
        assert len(cluster.pods()) <= replicas + 1
        for version, n in cluster.traffic.send(NS, "web", 20).items():
            served[version] = served.get(version, 0) + n
        assert NO_BACKEND not in served
        cluster.traffic.tick(cluster.clock.t)  # and the steady stream, drawn in aggregate

    cluster.traffic.tick(cluster.clock.t)
    cluster.run_until(cluster.complete, each=check)
    assert cluster.versions() == {"v2": replicas}
    assert served.get("v1") and served.get("v2")  # traffic moved over while the rollout ran
    streamed = cluster.traffic.counts(NS)["web"]
    assert sum(streamed["v1"].values()) > served["v1"] and sum(streamed["v2"].values()) > served["v2"]
    assert max(seen_total) == replicas + 1  # it did surge
    new, old = sorted(cluster.replicasets(), key=lambda rs: -int(rs["metadata"]["annotations"][REVISION]))
    assert new["spec"]["replicas"] == replicas and old["spec"]["replicas"] == 0
    assert cluster.deployment()["metadata"]["annotations"][REVISION] == "2"
    assert cluster.traffic.no_backend(NS) == 0


def test_rolling_update_surge_zero_unavailable_one(cluster: SimCluster) -> None:
    cluster.deploy(replicas=4, strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0,
                                                                                    "maxUnavailable": 1}})
    cluster.run_until(cluster.complete)
    cluster.set_version("web", "v2")
    dipped = []

    def check() -> None:
        assert len(cluster.pods()) <= 4
        assert len(cluster.ready_pods()) >= 3
        dipped.append(len(cluster.ready_pods()) == 3)

    cluster.run_until(cluster.complete, each=check)
    assert any(dipped)  # it used its one unavailable pod, rather than surging
    assert cluster.versions() == {"v2": 4}


def test_percentages_round_surge_up_and_unavailable_down(cluster: SimCluster) -> None:
    d = {"spec": {"strategy": {"rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}}}
    assert fenceposts(d, 10) == (3, 2)
    assert fenceposts({"spec": {}}, 3) == (1, 0)  # defaults 25%/25%
    assert fenceposts({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0, "maxUnavailable": "10%"}}}}, 5) == (0, 1)
    cluster.deploy(replicas=10, strategy={"type": "RollingUpdate",
                                          "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    cluster.run_until(cluster.complete)
    cluster.set_version("web", "v2")
    most = []

    def check() -> None:
        most.append(len(cluster.pods()))
        assert len(cluster.pods()) <= 13
        assert len(cluster.ready_pods()) >= 8

    cluster.run_until(cluster.complete, each=check)
    assert max(most) == 13


def test_recreate_removes_every_old_pod_before_starting_new_ones(cluster: SimCluster) -> None:
    cluster.deploy(replicas=3, strategy={"type": "Recreate"})
    cluster.service("web", {"app": "web"})
    cluster.run_until(cluster.complete)
    cluster.traffic.tick(cluster.clock.t)
    cluster.set_version("web", "v2")
    saw_empty = []

    def check() -> None:
        versions = cluster.versions(ready_only=False)
        assert len(versions) <= 1, versions
        saw_empty.append(not versions)
        cluster.traffic.tick(cluster.clock.t)

    cluster.run_until(cluster.complete, each=check)
    assert any(saw_empty)
    assert cluster.versions() == {"v2": 3}
    # Recreate has downtime by design, and the no-backend counter sees it.
    assert cluster.traffic.no_backend(NS, "web") > 0


def test_paused_deployment_does_not_roll_out_until_resumed(cluster: SimCluster) -> None:
    cluster.deploy(replicas=2)
    cluster.run_until(cluster.complete)
    cluster.patch_spec("web", paused=True)
    cluster.set_version("web", "v2")
    for _ in range(40):
        cluster.step()
    assert len(cluster.replicasets()) == 1
    assert cluster.versions() == {"v1": 2}
    assert condition(cluster.deployment(), "Progressing")["reason"] == "DeploymentPaused"
    cluster.patch_spec("web", replicas=3)  # a paused Deployment still scales
    cluster.run_until(lambda: cluster.versions() == {"v1": 3}, seconds=10)
    cluster.patch_spec("web", paused=False)
    cluster.run_until(cluster.complete)
    assert cluster.versions() == {"v2": 3}


def test_rollout_undo_reuses_the_previous_replicaset(cluster: SimCluster) -> None:
    cluster.deploy(replicas=2)
    cluster.run_until(cluster.complete)
    [v1_rs] = cluster.replicasets()
    cluster.set_version("web", "v2")
    cluster.run_until(cluster.complete)
    assert cluster.versions() == {"v2": 2}

    # What `kubectl rollout undo` does: copy the old ReplicaSet's template, minus the hash label.
    template = copy.deepcopy(v1_rs["spec"]["template"])
    del template["metadata"]["labels"][HASH_LABEL]
    cluster.store.mutate(DEPLOYMENTS, NS, "web", lambda d: d["spec"].__setitem__("template", template))
    cluster.run_until(cluster.complete)

    assert cluster.versions() == {"v1": 2}
    rss = {rs["metadata"]["name"]: rs for rs in cluster.replicasets()}
    assert len(rss) == 2
    reused = rss[v1_rs["metadata"]["name"]]
    assert reused["metadata"]["uid"] == v1_rs["metadata"]["uid"]
    assert reused["metadata"]["annotations"][REVISION] == "3"
    assert reused["spec"]["replicas"] == 2
    assert cluster.deployment()["metadata"]["annotations"][REVISION] == "3"
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == v1_rs["metadata"]["uid"] for p in cluster.pods())


def test_revision_history_limit_deletes_the_oldest_idle_replicasets(cluster: SimCluster) -> None:
    cluster.deploy(replicas=1, revisionHistoryLimit=1)
    cluster.run_until(cluster.complete)
    for version in ("v2", "v3", "v4"):
        cluster.set_version("web", version)
        cluster.run_until(cluster.complete)
    cluster.step()
    revisions = sorted(int(rs["metadata"]["annotations"][REVISION]) for rs in cluster.replicasets())
    assert revisions == [3, 4]


def test_min_ready_seconds_delays_availability(cluster: SimCluster) -> None:
    cluster.deploy(replicas=2, minReadySeconds=10)
    cluster.run_until(lambda: len(cluster.ready_pods()) == 2)
    cluster.step()
    cluster.step()  # ReplicaSet status, then Deployment status, each catch up one pass later
    d = cluster.deployment()
    assert d["status"]["readyReplicas"] == 2 and d["status"]["availableReplicas"] == 0
    cluster.run_until(cluster.complete, seconds=15)
    assert cluster.deployment()["status"]["availableReplicas"] == 2


def test_scaling_and_deleted_pods_are_replaced(cluster: SimCluster) -> None:
    cluster.deploy(replicas=3)
    cluster.run_until(cluster.complete)
    cluster.patch_spec("web", replicas=5)
    cluster.run_until(lambda: cluster.complete() and len(cluster.ready_pods()) == 5)
    cluster.patch_spec("web", replicas=2)
    cluster.run_until(lambda: cluster.complete() and len(cluster.pods()) == 2)
    victim = cluster.pods()[0]["metadata"]["name"]
    cluster.store.delete(PODS, NS, victim)
    cluster.step()
    names = {p["metadata"]["name"] for p in cluster.pods()}
    assert victim not in names and len(names) == 2
    cluster.run_until(lambda: len(cluster.ready_pods()) == 2)
    assert len(cluster.replicasets()) == 1


# ---- injected failures --------------------------------------------------------------------------------------


def test_never_ready_pods_run_but_stay_unready_and_the_deadline_passes(cluster: SimCluster) -> None:
    cluster.deploy(replicas=2, progressDeadlineSeconds=30, annotations={"sim.deployflow.io/never-ready": "true"})
    cluster.step()
    cluster.run_until(lambda: all(p["status"]["phase"] == "Running" for p in cluster.pods()), seconds=5)
    for _ in range(10):
        cluster.step()
    pod = cluster.pods()[0]
    assert not is_ready(pod)
    assert condition(pod, "Ready")["reason"] == "ContainersNotReady"
    cs = container_status(pod)
    assert cs["ready"] is False and cs["started"] is True and "running" in cs["state"]
    d = cluster.deployment()
    assert condition(d, "Available")["status"] == "False"
    assert condition(d, "Progressing")["status"] == "True"
    cluster.run_until(lambda: condition(cluster.deployment(), "Progressing")["status"] == "False", seconds=40)
    prog = condition(cluster.deployment(), "Progressing")
    assert prog["reason"] == "ProgressDeadlineExceeded"
    assert prog["message"].endswith("has timed out progressing.")
    assert cluster.clock.t >= 30


def test_a_never_ready_release_keeps_the_old_version_serving(cluster: SimCluster) -> None:
    cluster.deploy(replicas=3, progressDeadlineSeconds=20,
                   strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}})
    cluster.service("web", {"app": "web"})
    cluster.run_until(cluster.complete)
    cluster.set_version("web", "v2", {"sim.deployflow.io/never-ready": "true"})
    cluster.run_until(lambda: condition(cluster.deployment(), "Progressing").get("reason")
                      == "ProgressDeadlineExceeded", seconds=40)
    assert cluster.versions() == {"v1": 3}
    assert cluster.versions(ready_only=False) == {"v1": 3, "v2": 1}
    assert cluster.traffic.send(NS, "web", 200) == {"v1": 200}


def test_crash_loop_shows_restarts_and_back_off(cluster: SimCluster) -> None:
    cluster.deploy(replicas=1, annotations={"sim.deployflow.io/crash-loop": "true"})
    cluster.step(0)
    restarts = []
    cluster.run_until(lambda: cluster.clock.t >= 80, step=1.0,
                      each=lambda: restarts.append(container_status(cluster.pods()[0])["restartCount"]))
    assert restarts == sorted(restarts) and restarts[-1] >= 3
    pod = cluster.pods()[0]
    cs = container_status(pod)
    assert pod["status"]["phase"] == "Running" and not is_ready(pod)
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert "back-off" in cs["state"]["waiting"]["message"]
    assert cs["lastState"]["terminated"]["exitCode"] == 1
    backoffs = [e for e in cluster.store.list(EVENTS, NS) if e["reason"] == "BackOff"]
    assert backoffs and backoffs[0]["type"] == "Warning" and backoffs[0]["count"] >= 3
    assert cluster.deployment()["status"]["availableReplicas"] == 0


def test_image_pull_error_goes_from_errimagepull_to_backoff(cluster: SimCluster) -> None:
    cluster.deploy(replicas=1, annotations={"sim.deployflow.io/image-pull-error": "true"})
    cluster.step(0)
    reasons = []

    def note() -> None:
        pod = cluster.pods()[0]
        assert pod["status"]["phase"] == "Pending" and not is_ready(pod)
        reasons.append(container_status(pod)["state"]["waiting"]["reason"])

    cluster.run_until(lambda: cluster.clock.t >= 10, each=note)
    assert "ErrImagePull" in reasons and reasons[-1] == "ImagePullBackOff"
    assert reasons.index("ErrImagePull") < reasons.index("ImagePullBackOff")
    failed = [e for e in cluster.store.list(EVENTS, NS) if e["reason"] == "Failed"]
    assert failed and "Failed to pull image" in failed[0]["message"]


def test_lifecycle_is_a_function_of_behaviour_and_age() -> None:
    normal = PodBehaviour.of({}, 2.0)
    assert lifecycle(normal, 0.1).waiting == "ContainerCreating"
    assert lifecycle(normal, 1.0).phase == "Running" and not lifecycle(normal, 1.0).ready
    assert lifecycle(normal, 2.0).ready
    crash = PodBehaviour.of({"sim.deployflow.io/crash-loop": "true"}, 2.0)
    assert [lifecycle(crash, t).restart_count for t in (1, 12, 33, 74)] == [0, 1, 2, 3]
    job = PodBehaviour.of({"sim.deployflow.io/job-duration-seconds": "3"}, 2.0)
    assert lifecycle(job, 3.0, run_to_completion=True).phase == "Running"
    assert lifecycle(job, 3.6, run_to_completion=True).phase == "Succeeded"
    assert PodBehaviour.of({"sim.deployflow.io/error-rate": "7"}, 1).error_rate == 1.0  # clamped


# ---- Endpoints ---------------------------------------------------------------------------------------------


def test_endpoints_track_readiness_and_selector(cluster: SimCluster) -> None:
    cluster.deploy("web", replicas=2, annotations={"sim.deployflow.io/ready-delay-seconds": "3"})
    cluster.deploy("api", replicas=1)
    cluster.service("web", {"app": "web"})
    cluster.step(0)
    cluster.step(1)

    def endpoints() -> Obj:
        ep = cluster.store.get(ENDPOINTS, NS, "web")
        assert ep is not None
        return ep

    [subset] = endpoints()["subsets"]
    assert "addresses" not in subset and len(subset["notReadyAddresses"]) == 2
    assert subset["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    cluster.run_until(lambda: len(cluster.ready_pods("web")) == 2)
    cluster.step()
    [subset] = endpoints()["subsets"]
    assert "notReadyAddresses" not in subset
    names = {a["targetRef"]["name"] for a in subset["addresses"]}
    assert names == {p["metadata"]["name"] for p in cluster.pods("web")}
    assert {a["ip"] for a in subset["addresses"]} == {p["status"]["podIP"] for p in cluster.pods("web")}

    cluster.store.delete(PODS, NS, sorted(names)[0])
    cluster.step(0)
    ready = endpoints()["subsets"][0].get("addresses", [])
    assert sorted(names)[0] not in {a["targetRef"]["name"] for a in ready}

    cluster.store.mutate(SERVICES, NS, "web", lambda s: s["spec"].__setitem__("selector", {"app": "api"}))
    cluster.step()
    [subset] = endpoints()["subsets"]
    assert {a["targetRef"]["name"] for a in subset["addresses"]} == {p["metadata"]["name"]
                                                                     for p in cluster.pods("api")}
    cluster.store.mutate(SERVICES, NS, "web", lambda s: s["spec"].__setitem__("selector", {"app": "none"}))
    cluster.step()
    assert endpoints()["subsets"] == []
    cluster.store.delete(SERVICES, NS, "web")
    cluster.step()
    assert cluster.store.get(ENDPOINTS, NS, "web") is None


# ---- Jobs -----------------------------------------------------------------------------------------------------


def _job(name: str, annotations: dict[str, str], backoff_limit: int | None = None) -> Obj:
    spec: Obj = {"template": {"metadata": {"annotations": annotations},
                              "spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "migrate", "image": "registry.local/migrate:1"}]}}}
    if backoff_limit is not None:
        spec["backoffLimit"] = backoff_limit
    return {"metadata": {"name": name, "namespace": NS}, "spec": spec}


def test_job_completes_and_keeps_its_log(cluster: SimCluster) -> None:
    cluster.store.create(JOBS, _job("migrate", {"sim.deployflow.io/job-duration-seconds": "3",
                                                "sim.deployflow.io/job-log": "applying 0042\ndone"}))
    cluster.step(0)
    [pod] = cluster.pods()
    assert pod["metadata"]["labels"]["job-name"] == "migrate"
    assert pod["metadata"]["annotations"][LOG] == "applying 0042\ndone"
    cluster.step(1)
    job = cluster.store.get(JOBS, NS, "migrate")
    assert job is not None and job["status"]["active"] == 1 and not condition(job, "Complete")

    def done() -> bool:
        j = cluster.store.get(JOBS, NS, "migrate")
        return bool(j and condition(j, "Complete").get("status") == "True")

    cluster.run_until(done, seconds=10)
    assert cluster.clock.t >= 3
    job = cluster.store.get(JOBS, NS, "migrate")
    assert job is not None
    assert job["status"]["succeeded"] == 1 and job["status"]["active"] == 0 and "failed" not in job["status"]
    assert job["status"]["completionTime"]
    [pod] = cluster.pods()
    assert pod["status"]["phase"] == "Succeeded"
    assert container_status(pod)["state"]["terminated"]["exitCode"] == 0


def test_failing_job_retries_up_to_its_backoff_limit(cluster: SimCluster) -> None:
    cluster.store.create(JOBS, _job("smoke", {"sim.deployflow.io/job-fail": "true",
                                              "sim.deployflow.io/job-duration-seconds": "1"}, backoff_limit=2))

    def failed() -> bool:
        j = cluster.store.get(JOBS, NS, "smoke")
        return bool(j and condition(j, "Failed").get("status") == "True")

    cluster.run_until(failed, seconds=30)
    job = cluster.store.get(JOBS, NS, "smoke")
    assert job is not None
    assert job["status"]["failed"] == 3 and job["status"]["active"] == 0 and "succeeded" not in job["status"]
    assert condition(job, "Failed")["reason"] == "BackoffLimitExceeded"
    pods = cluster.pods()
    assert len(pods) == 3 and all(p["status"]["phase"] == "Failed" for p in pods)
    assert all(container_status(p)["state"]["terminated"]["exitCode"] == 1 for p in pods)
    for _ in range(10):
        cluster.step()
    assert len(cluster.pods()) == 3  # a failed Job starts nothing more


def test_idle_manager_skips_passes_until_something_is_due(cluster: SimCluster) -> None:
    cluster.deploy(replicas=2)
    cluster.run_until(cluster.complete)
    cluster.run_until(lambda: not cluster.manager.due())
    passes = cluster.manager.passes
    for _ in range(100):
        cluster.step()
    assert cluster.manager.passes == passes  # steady state: nothing changed and no timer pending
    cluster.patch_spec("web", replicas=3)
    assert cluster.manager.due()
    for _ in range(10):
        cluster.manager.reconcile_due()
    assert not cluster.manager.due()  # converged for now: the new pod is starting
    assert len(cluster.pods()) == 3 and len(cluster.ready_pods()) == 2
    cluster.clock.t += 5  # the new pod's ready delay has elapsed: its timer makes a pass due
    assert cluster.manager.due()
    cluster.run_until(lambda: cluster.complete() and len(cluster.ready_pods()) == 3, seconds=5)


def test_passes_cover_only_namespaces_that_changed_or_have_timers_due(cluster: SimCluster) -> None:
    cluster.deploy(replicas=2)
    cluster.step()
    other = copy.deepcopy(cluster.deployment())
    other["metadata"] = {"name": "web", "namespace": "other"}
    other.pop("status", None)
    cluster.store.create(DEPLOYMENTS, other)

    def other_complete() -> bool:
        d = cluster.store.get(DEPLOYMENTS, "other", "web")
        return bool(d and d.get("status", {}).get("availableReplicas") == 2)

    cluster.run_until(lambda: cluster.complete() and other_complete())
    cluster.run_until(lambda: not cluster.manager.due())
    untouched = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in cluster.store.list(PODS, "other")}
    cluster.set_version("web", "v2")
    cluster.run_until(cluster.complete)
    assert cluster.versions() == {"v2": 2}
    after = {p["metadata"]["name"]: p["metadata"]["resourceVersion"] for p in cluster.store.list(PODS, "other")}
    assert after == untouched
    # A timer in the quiet namespace still fires while the busy one is idle.
    cluster.store.mutate(DEPLOYMENTS, "other", "web", lambda d: d["spec"].__setitem__("replicas", 3))
    cluster.run_until(lambda: cluster.store.get(DEPLOYMENTS, "other", "web")["status"]["availableReplicas"] == 3)


def test_label_selectors_match_like_the_apiserver() -> None:
    sel = from_label_selector({"matchLabels": {"app": "web"},
                               "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]},
                                                    {"key": "legacy", "operator": "DoesNotExist"}]})
    assert matches(sel, {"app": "web", "tier": "a"})
    assert not matches(sel, {"app": "web", "tier": "c"})
    assert not matches(sel, {"app": "web", "tier": "a", "legacy": "yes"})
    assert matches(from_label_selector({}), {"anything": "x"})
    with pytest.raises(SelectorError):
        from_label_selector({"matchExpressions": [{"key": "a", "operator": "Near"}]})
    index = LabelIndex()
    index.add(NS, "p1", {"app": "web", "v": "1"})
    index.add(NS, "p2", {"app": "web", "v": "2"})
    index.add("other", "p3", {"app": "web", "v": "1"})
    assert index.select_map(NS, {"app": "web"}) == {"p1", "p2"}
    assert index.select_map(NS, {"app": "web", "v": "1"}) == {"p1"}
    assert index.select_map(NS, {}) == set()


def test_a_deployment_whose_selector_misses_its_template_is_left_alone(cluster: SimCluster) -> None:
    body = {"metadata": {"name": "bad", "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}}, "template": _template("bad", "v1")}}
    cluster.store.create(DEPLOYMENTS, body)
    for _ in range(5):
        cluster.step()
    assert cluster.replicasets() == [] and cluster.pods() == []


def test_replicaset_names_that_are_taken_bump_the_collision_count(cluster: SimCluster) -> None:
    d = cluster.deploy(replicas=1)
    squatter = {"metadata": {"name": f"web-{template_hash(d['spec']['template'])}", "namespace": NS},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "squatter"}},
                         "template": _template("squatter", "v0")}}
    cluster.store.create(REPLICASETS, squatter)
    cluster.run_until(cluster.complete)
    d = cluster.deployment()
    assert d["status"]["collisionCount"] == 1
    owned = [rs for rs in cluster.replicasets() if rs["metadata"].get("ownerReferences")]
    assert [rs["metadata"]["name"] for rs in owned] == [f"web-{template_hash(d['spec']['template'], 1)}"]
    assert cluster.versions() == {"v1": 1}
