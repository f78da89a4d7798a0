"""A Deployment scaled in the middle of a rollout: every ReplicaSet with pods takes its proportional share, as the
deployment controller's `scale()` gives it (the example of the Kubernetes documentation, "Proportional scaling")."""

from __future__ import annotations

from deployflow.sim.controllers.pods import NEVER_READY
from deployflow.sim.controllers.proportional import Sized, proportional_sizes
from tests.sim_support import SimCluster


def sizes(cluster: SimCluster) -> dict[str, int]:
    """Version -> spec.replicas of its ReplicaSet."""
    return {rs["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/version"]: rs["spec"]["replicas"]
            for rs in cluster.replicasets()}


def test_scaling_up_a_stuck_rollout_spreads_the_new_replicas_across_both_versions(cluster: SimCluster) -> None:
    cluster.deploy(replicas=10, strategy={"type": "RollingUpdate",
                                          "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}})
    cluster.run_until(cluster.complete)
    cluster.set_version("web", "v2", annotations={NEVER_READY: "true"})  # the rollout can never finish
    cluster.run_until(lambda: sizes(cluster) == {"v1": 8, "v2": 5}, seconds=30)
    for _ in range(6):
        cluster.step()
    assert sizes(cluster) == {"v1": 8, "v2": 5}  # stuck: 13 = 10 + maxSurge, 8 available = 10 - maxUnavailable
    cluster.patch_spec("web", replicas=15)
    cluster.step()
    assert sizes(cluster) == {"v1": 11, "v2": 7}  # 5 more, 3 to the old ReplicaSet and 2 to the new


def test_scaling_down_mid_rollout_shrinks_each_replicaset_in_proportion(cluster: SimCluster) -> None:
    cluster.deploy(replicas=10, strategy={"type": "RollingUpdate",
                                          "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}})
    cluster.run_until(cluster.complete)
    cluster.set_version("web", "v2", annotations={NEVER_READY: "true"})
    cluster.run_until(lambda: sizes(cluster) == {"v1": 8, "v2": 5}, seconds=30)
    cluster.patch_spec("web", replicas=5)
    cluster.step()
    assert sizes(cluster) == {"v1": 5, "v2": 3}  # 8 of 13 and 5 of 13 of the new maximum, 8


def test_leftovers_go_to_the_largest_replicaset_and_nothing_goes_below_zero() -> None:
    # Neither share rounds to a whole pod: both go to the largest, the newer one on a tie when growing.
    tied = [Sized("a", 1, 1, 3), Sized("b", 1, 2, 3)]
    assert proportional_sizes(tied, replicas=4, surge=0, status_replicas=2) == {"a": 1, "b": 3}
    sets = [Sized("a", 3, 1, 5), Sized("b", 2, 2, 5)]
    assert proportional_sizes(sets, replicas=6, surge=1, status_replicas=5) == {"a": 4, "b": 3}
    assert proportional_sizes(sets, replicas=0, surge=1, status_replicas=5) == {"a": 0, "b": 0}
    # Without the max-replicas annotation the Deployment's current size is the base.
    assert proportional_sizes([Sized("a", 4, 1, 0), Sized("b", 4, 2, 0)], replicas=12, surge=0,
                              status_replicas=8) == {"a": 6, "b": 6}
