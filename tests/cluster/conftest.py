"""The real-cluster tier (marker `cluster`, left out of the default run): every test here runs against the cluster
`KUBECONFIG` points at (its current context), with a worker in the test process on the Temporal dev server, each in
a namespace of its own that it deletes.

Skipped, with the reason, when no kubeconfig is configured or when its current context is the simulator's `sim`.
Run with `make test-cluster` (or `pytest -m cluster tests/cluster`); CI runs it on a kind cluster
(.github/workflows/real-cluster.yml).
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from deployflow import kube
from tests.cluster.support import unavailable

SIMULATOR_CONTEXT = "sim"


@pytest.fixture(scope="session")
def context() -> str:
    """The current context of the configured kubeconfig: the cluster the tests deploy to (`target.cluster`)."""
    path = os.environ.get("KUBECONFIG") or os.path.expanduser("~/.kube/config")
    if not os.path.exists(path):
        unavailable(f"no cluster configured: no kubeconfig at {path} (KUBECONFIG, else ~/.kube/config); point "
                    "KUBECONFIG at a real cluster, e.g. one from `kind create cluster`")
    try:
        _, active = config.list_kube_config_contexts(config_file=path)
    except config.ConfigException as e:
        unavailable(f"no cluster configured: {path} has no usable context ({e})")
    name = str(active["name"])
    if name == SIMULATOR_CONTEXT:
        pytest.skip(f"the current context of {path} is the simulator's `{SIMULATOR_CONTEXT}`: this tier is for real "
                    "clusters (the simulator has its own tests)")
    kube.reset_clients()
    try:
        client.VersionApi(kube.api_client(name)).get_code(_request_timeout=10)
    except Exception as e:  # any failure to reach it: say which cluster, rather than a traceback per test
        pytest.fail(f"context {name!r} of {path} does not answer: {e}")
    return name


@pytest.fixture
def core(context: str) -> client.CoreV1Api:
    return client.CoreV1Api(kube.api_client(context))


@pytest.fixture
def apps(context: str) -> client.AppsV1Api:
    return client.AppsV1Api(kube.api_client(context))


@pytest.fixture
def cluster_namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A namespace for one test, deleted with everything in it afterwards (the cluster finishes it in the
    background: a Terminating namespace costs the next test nothing, its name is new)."""
    name = f"deployflow-e2e-{uuid.uuid4().hex[:8]}"
    body: Any = {"metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "deployflow-e2e"}}}
    core.create_namespace(body)
    try:
        yield name
    finally:
        with contextlib.suppress(ApiException):
            core.delete_namespace(name, propagation_policy="Foreground")
