"""The simulator's Endpoints and Job controllers, the controller manager's passes, and label selectors as
controllers evaluate them."""

from __future__ import annotations

import copy

import pytest

from deployflow.sim.controllers.pods import LOG
from deployflow.sim.resources import DEPLOYMENTS, ENDPOINTS, JOBS, PODS, SERVICES
from deployflow.sim.selectors import LabelIndex, SelectorError, from_label_selector, matches
from deployflow.sim.store import Obj
from tests.sim_support import NS, SimCluster, condition, container_status

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
