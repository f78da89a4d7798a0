"""The simulator's Deployment, ReplicaSet and pod controllers, driven pass by pass on a store with a clock the test
moves by hand; injected failures."""

from __future__ import annotations

import copy

from deployflow.sim.controllers.deployments import HASH_LABEL, REVISION, fenceposts, template_hash
from deployflow.sim.controllers.pods import LOG, PodBehaviour, is_active, is_ready, lifecycle
from deployflow.sim.resources import DEPLOYMENTS, EVENTS, PODS, REPLICASETS
from deployflow.sim.store import Obj
from deployflow.sim.traffic import NO_BACKEND
from tests.sim_support import NS, SimCluster, condition, container_status, template

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
        seen_total.add(len(active(cluster)))
        assert len(active(cluster)) <= replicas + 1
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
        assert len(active(cluster)) <= 4
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
        most.append(len(active(cluster)))
        assert len(active(cluster)) <= 13
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
    assert all(p["metadata"]["ownerReferences"][0]["uid"] == v1_rs["metadata"]["uid"] for p in active(cluster))


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
    names = {p["metadata"]["name"] for p in active(cluster)}
    assert victim not in names and len(names) == 2  # replaced while it is still terminating
    cluster.run_until(lambda: len(cluster.ready_pods()) == 2)
    assert len(cluster.replicasets()) == 1


def active(cluster: SimCluster) -> list[Obj]:
    """The pods a ReplicaSet counts: terminating ones are on their way out, as in Kubernetes."""
    return [p for p in cluster.pods() if is_active(p)]


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


def test_a_deployment_whose_selector_misses_its_template_is_left_alone(cluster: SimCluster) -> None:
    body = {"metadata": {"name": "bad", "namespace": NS},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "other"}}, "template": template("bad", "v1")}}
    cluster.store.create(DEPLOYMENTS, body)
    for _ in range(5):
        cluster.step()
    assert cluster.replicasets() == [] and cluster.pods() == []


def test_replicaset_names_that_are_taken_bump_the_collision_count(cluster: SimCluster) -> None:
    d = cluster.deploy(replicas=1)
    squatter = {"metadata": {"name": f"web-{template_hash(d['spec']['template'])}", "namespace": NS},
                "spec": {"replicas": 0, "selector": {"matchLabels": {"app": "squatter"}},
                         "template": template("squatter", "v0")}}
    cluster.store.create(REPLICASETS, squatter)
    cluster.run_until(cluster.complete)
    d = cluster.deployment()
    assert d["status"]["collisionCount"] == 1
    owned = [rs for rs in cluster.replicasets() if rs["metadata"].get("ownerReferences")]
    assert [rs["metadata"]["name"] for rs in owned] == [f"web-{template_hash(d['spec']['template'], 1)}"]
    assert cluster.versions() == {"v1": 1}
