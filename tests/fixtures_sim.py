"""Simulator fixtures: one simulated cluster per test session, a fresh namespace per test, the official client's
APIs on it, and a controllers-only cluster at a hand-moved clock."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from deployflow import kube
from deployflow.sim.config import SimConfig
from deployflow.sim.resources import NAMESPACES
from deployflow.sim.server import Simulator
from deployflow.sim.store import StoreError
from tests.sim_support import SimCluster


@pytest.fixture(scope="session")
def sim() -> Iterator[Simulator]:
    """A simulator in a background thread; 20 simulated seconds pass per real second."""
    simulator = Simulator(SimConfig(time_factor=20.0, ready_delay_seconds=1.0))
    simulator.start_in_thread()
    try:
        yield simulator
    finally:
        simulator.stop()


@pytest.fixture(scope="session")
def kubeconfig(sim: Simulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A kubeconfig whose context `sim` points at the simulator, set as KUBECONFIG for the session."""
    path = str(Path(tmp_path_factory.mktemp("kube")) / "config")
    sim.write_kubeconfig(path, context="sim")
    previous = os.environ.get("KUBECONFIG")
    os.environ["KUBECONFIG"] = path
    kube.reset_clients()
    try:
        yield path
    finally:
        if previous is None:
            os.environ.pop("KUBECONFIG", None)
        else:
            os.environ["KUBECONFIG"] = previous
        kube.reset_clients()


@pytest.fixture
def namespace(sim: Simulator, kubeconfig: str) -> Iterator[str]:
    """A fresh namespace in the simulator for one test, deleted (with everything in it) afterwards.

    Deleting keeps the session's simulator from reconciling and generating traffic for every earlier test.
    """
    name = f"t-{uuid.uuid4().hex[:8]}"
    sim.create_namespace(name)
    yield name
    with contextlib.suppress(StoreError):
        sim.store.delete(NAMESPACES, None, name)


@pytest.fixture
def api(kubeconfig: str) -> client.ApiClient:
    return kube.api_client("sim")


@pytest.fixture
def core(api: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api)


@pytest.fixture
def cluster() -> SimCluster:
    """Store, controllers and traffic without the HTTP layer, at a clock the test moves."""
    return SimCluster()


TRAIN_CLUSTERS = ("staging", "prod-1", "prod-2")


@pytest.fixture(scope="session")
def clusters(
    sim: Simulator, kubeconfig: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Simulator]]:
    """Three more simulated clusters, contexts staging, prod-1 and prod-2, merged with `sim` into one kubeconfig (set as
    KUBECONFIG while they run), the way `deployflow dev --clusters` builds its own."""
    from deployflow.dev import merge_kubeconfigs

    folder = Path(tmp_path_factory.mktemp("clusters"))
    sims = {name: Simulator(SimConfig(time_factor=20.0, ready_delay_seconds=1.0)) for name in TRAIN_CLUSTERS}
    for name, simulator in sims.items():
        simulator.start_in_thread()
        simulator.write_kubeconfig(str(folder / name), context=name)
    merged = merge_kubeconfigs([Path(kubeconfig), *(folder / name for name in sims)], folder / "config")
    os.environ["KUBECONFIG"] = str(merged)
    kube.reset_clients()
    try:
        yield sims
    finally:
        os.environ["KUBECONFIG"] = kubeconfig
        kube.reset_clients()
        for simulator in sims.values():
            simulator.stop()
