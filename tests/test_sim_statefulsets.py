"""The simulator's StatefulSet controller, driven tick by tick on a simulated clock (no HTTP, no threads)."""

from __future__ import annotations

import random
from typing import Any

from deployflow.sim.config import SimConfig
from deployflow.sim.controllers.events import EventRecorder
from deployflow.sim.controllers.pods import PodController, PodFactory, is_ready
from deployflow.sim.controllers.statefulsets import REVISION_LABEL, StatefulSetController
from deployflow.sim.resources import CONTROLLERREVISIONS, NAMESPACES, PODS, STATEFULSETS
from deployflow.sim.store import Store

NS = "db"


class Cluster:
    def __init__(self) -> None:
        self.store = Store()
        self.config = SimConfig(ready_delay_seconds=1.0)
        events = EventRecorder(self.store)
        self.pods = PodController(self.store, self.config, events)
        self.sts = StatefulSetController(self.store, self.config, self.pods, PodFactory(random.Random(0)), events)
        self.now = 0.0
        self.store.create(NAMESPACES, {"metadata": {"name": NS}})

    def tick(self, seconds: float = 0.25) -> None:
        self.now += seconds
        self.sts.reconcile(self.now)
        self.pods.reconcile(self.now)

    def run_until(self, done: Any, limit: float = 120.0) -> None:
        start = self.now
        while not done():
            assert self.now - start < limit, "the controller never reached the expected state"
            self.tick()

    def get(self) -> dict[str, Any]:
        obj = self.store.get(STATEFULSETS, NS, "db")
        assert obj is not None
        return obj

    def pod_revisions(self) -> dict[str, str]:
        return {p["metadata"]["name"]: p["metadata"]["labels"][REVISION_LABEL] for p in self.store.list(PODS, NS)}

    def settled(self) -> bool:
        st = self.get().get("status") or {}
        replicas = self.get()["spec"]["replicas"]
        return (
            st.get("readyReplicas") == replicas
            and st.get("replicas") == replicas
            and len(self.store.list(PODS, NS)) == replicas
        )


def statefulset(replicas: int = 3, image: str = "db:1", partition: int | None = None) -> dict[str, Any]:
    strategy: dict[str, Any] = {"type": "RollingUpdate"}
    if partition is not None:
        strategy["rollingUpdate"] = {"partition": partition}
    return {
        "metadata": {"name": "db", "namespace": NS},
        "spec": {
            "replicas": replicas,
            "serviceName": "db",
            "selector": {"matchLabels": {"app": "db"}},
            "updateStrategy": strategy,
            "template": {
                "metadata": {"labels": {"app": "db", "app.kubernetes.io/version": image.split(":")[1]}},
                "spec": {"containers": [{"name": "db", "image": image}]},
            },
        },
    }


def set_image(cluster: Cluster, image: str, partition: int) -> None:
    def change(obj: dict[str, Any]) -> None:
        obj["spec"]["template"]["spec"]["containers"][0]["image"] = image
        obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"] = image.split(":")[1]
        obj["spec"]["updateStrategy"] = {"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}

    cluster.store.mutate(STATEFULSETS, NS, "db", change)


def test_ordered_ready_creates_ordinal_pods_one_after_another() -> None:
    c = Cluster()
    c.store.create(STATEFULSETS, statefulset(replicas=3))
    seen_counts = []
    while not c.settled():
        c.tick()
        pods = c.store.list(PODS, NS)
        names = sorted(p["metadata"]["name"] for p in pods)
        # OrderedReady: never a pod whose predecessor is not Ready.
        assert names == [f"db-{i}" for i in range(len(names))]
        not_ready = [p for p in pods if not is_ready(p)]
        assert len(not_ready) <= 1
        seen_counts.append(len(pods))
        assert c.now < 60
    assert seen_counts[0] == 1 and max(seen_counts) == 3
    status = c.get()["status"]
    assert status["currentRevision"] == status["updateRevision"]
    assert status["updatedReplicas"] == status["currentReplicas"] == 3
    revisions = c.store.list(CONTROLLERREVISIONS, NS)
    assert [r["metadata"]["name"] for r in revisions] == [status["updateRevision"]]


def test_partition_updates_only_highest_ordinals_and_highest_first() -> None:
    c = Cluster()
    c.store.create(STATEFULSETS, statefulset(replicas=4))
    c.run_until(c.settled)
    old_rev = c.get()["status"]["currentRevision"]

    set_image(c, "db:2", partition=4)  # nothing may change yet
    for _ in range(40):
        c.tick()
    status = c.get()["status"]
    new_rev = status["updateRevision"]
    assert new_rev != old_rev
    assert set(c.pod_revisions().values()) == {old_rev}
    assert status["updatedReplicas"] == 0 and status["currentRevision"] == old_rev

    c.store.mutate(STATEFULSETS, NS, "db", lambda o: o["spec"]["updateStrategy"]["rollingUpdate"].update(partition=2))
    order: list[str] = []
    while True:
        c.tick()
        for name, rev in sorted(c.pod_revisions().items()):
            if rev == new_rev and name not in order:
                order.append(name)
        if c.settled() and c.get()["status"]["updatedReplicas"] == 2:
            break
        assert c.now < 120
    assert order == ["db-3", "db-2"]
    revs = c.pod_revisions()
    assert revs == {"db-0": old_rev, "db-1": old_rev, "db-2": new_rev, "db-3": new_rev}
    assert c.get()["status"]["currentRevision"] == old_rev

    c.store.mutate(STATEFULSETS, NS, "db", lambda o: o["spec"]["updateStrategy"]["rollingUpdate"].update(partition=0))
    c.run_until(lambda: c.settled() and c.get()["status"]["updatedReplicas"] == 4)
    status = c.get()["status"]
    assert status["currentRevision"] == new_rev and status["currentReplicas"] == 4
    images = {p["spec"]["containers"][0]["image"] for p in c.store.list(PODS, NS)}
    assert images == {"db:2"}


def test_rolling_update_replaces_one_pod_at_a_time() -> None:
    c = Cluster()
    c.store.create(STATEFULSETS, statefulset(replicas=3))
    c.run_until(c.settled)
    set_image(c, "db:2", partition=0)
    new_rev = None
    while True:
        c.tick()
        pods = c.store.list(PODS, NS)
        missing_or_unready = 3 - sum(1 for p in pods if is_ready(p))
        assert missing_or_unready <= 1
        new_rev = c.get()["status"]["updateRevision"]
        if c.settled() and c.get()["status"]["currentRevision"] == new_rev:
            break
        assert c.now < 120
    assert set(c.pod_revisions().values()) == {new_rev}


def test_rollback_to_the_old_template_reuses_its_revision() -> None:
    c = Cluster()
    c.store.create(STATEFULSETS, statefulset(replicas=2))
    c.run_until(c.settled)
    old_rev = c.get()["status"]["currentRevision"]
    set_image(c, "db:2", partition=1)
    c.run_until(lambda: c.settled() and c.get()["status"]["updatedReplicas"] == 1)
    set_image(c, "db:1", partition=0)
    c.run_until(lambda: c.settled() and c.get()["status"]["updatedReplicas"] == 2)
    status = c.get()["status"]
    assert status["updateRevision"] == old_rev == status["currentRevision"]
    assert set(c.pod_revisions().values()) == {old_rev}
    revisions = {r["metadata"]["name"]: r["revision"] for r in c.store.list(CONTROLLERREVISIONS, NS)}
    assert len(revisions) == 2 and revisions[old_rev] == 3


def test_scale_down_removes_highest_ordinals_and_deleting_the_set_removes_pods() -> None:
    c = Cluster()
    c.store.create(STATEFULSETS, statefulset(replicas=3))
    c.run_until(c.settled)
    c.store.mutate(STATEFULSETS, NS, "db", lambda o: o["spec"].update(replicas=1))
    c.run_until(c.settled)
    assert sorted(c.pod_revisions()) == ["db-0"]
    c.store.delete(STATEFULSETS, NS, "db")
    assert all(p["metadata"].get("deletionTimestamp") for p in c.store.list(PODS, NS))  # terminating, then gone
    c.run_until(lambda: not c.store.list(PODS, NS))
    assert c.store.list(CONTROLLERREVISIONS, NS) == []
