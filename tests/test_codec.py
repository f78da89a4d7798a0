"""Encrypted payloads: the codec's cryptography, its key configuration, and the failure messages it hides."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import os
import re
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from google.protobuf import json_format
from google.protobuf.message import Message
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.client import WorkflowFailureError, WorkflowHistory
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from deployflow.codec import (
    ENCODING,
    KEY_FILE_ENV,
    KEY_ID_METADATA,
    CodecConfigError,
    EncryptionCodec,
    PayloadDecryptionError,
    codec_from_env,
    data_converter,
    generate_key,
    load_keys,
    parse_key,
)
from deployflow.codec_server import create_app, main, run
from deployflow.sim.server import Simulator
from deployflow.spec import BlueGreenRequest
from deployflow.status import DeploymentStatus, Phase
from deployflow.temporal import ConnectionSettings, connect, temporal_cli_path
from tests.bluegreen_support import bluegreen_request, running_worker, start
from worker import SpecFailureConverter

SECRET_TEXT = "registry.example.com/shop/web:kumquat-7731"


def plain(text: str = SECRET_TEXT) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=f'"{text}"'.encode())


def codec(*keys: str) -> EncryptionCodec:
    return EncryptionCodec([parse_key(k, "test") for k in keys])


async def test_round_trip_hides_the_payload_and_its_encoding() -> None:
    c = codec(f"one:{generate_key()}")
    [sealed] = await c.encode([plain()])
    assert sealed.metadata["encoding"] == ENCODING and sealed.metadata[KEY_ID_METADATA] == b"one"
    assert b"kumquat" not in sealed.SerializeToString() and b"json/plain" not in sealed.SerializeToString()
    assert await c.decode([sealed]) == [plain()]
    # A fresh nonce each time: equal specs do not give equal ciphertexts.
    assert (await c.encode([plain()]))[0].data != sealed.data


@pytest.mark.parametrize("tamper", ["flip a ciphertext bit", "truncate", "relabel with another configured key id"])
async def test_a_modified_payload_is_refused(tamper: str) -> None:
    c = codec(f"one:{generate_key()}", f"two:{generate_key()}")
    [sealed] = await c.encode([plain()])
    if tamper == "flip a ciphertext bit":
        data = bytearray(sealed.data)
        data[20] ^= 0x01
        sealed.data = bytes(data)
    elif tamper == "truncate":
        sealed.data = sealed.data[:-1]
    else:
        sealed.metadata[KEY_ID_METADATA] = b"two"
    with pytest.raises(PayloadDecryptionError, match="failed authentication"):
        await c.decode([sealed])


async def test_rotation_decrypts_old_payloads_and_encrypts_with_the_new_key() -> None:
    old, new = f"2026-01:{generate_key()}", f"2026-12:{generate_key()}"
    [from_old] = await codec(old).encode([plain()])
    rotated = codec(new, old)
    assert rotated.key_id == "2026-12"
    assert await rotated.decode([from_old]) == [plain()]
    assert (await rotated.encode([plain()]))[0].metadata[KEY_ID_METADATA] == b"2026-12"
    # Once the old key is dropped, its payloads are refused by name rather than misread.
    with pytest.raises(PayloadDecryptionError, match="2026-01.*not configured"):
        await codec(new).decode([from_old])


async def test_payloads_written_before_encryption_pass_through() -> None:
    assert await codec(generate_key()).decode([plain()]) == [plain()]


def test_keys_from_the_variable_and_the_mounted_file(tmp_path: Path) -> None:
    first, second, third = generate_key(), generate_key(), generate_key()
    key_file = tmp_path / "keys"
    key_file.write_text(f"# rotated monthly\nfile:{third}\n\n")
    keys = load_keys({"DEPLOYFLOW_CODEC_KEY": f"{first}, b:{second}", KEY_FILE_ENV: str(key_file)})
    assert [k.secret for k in keys] == [base64.b64decode(k) for k in (first, second, third)]
    assert keys[1].id == "b" and keys[2].id == "file"
    assert keys[0].id.startswith("k") and first not in keys[0].id  # derived, one-way
    assert load_keys({}) == [] and codec_from_env({}) is None


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"DEPLOYFLOW_CODEC_KEY": "bm90LTMyLWJ5dGVz"}, "DEPLOYFLOW_CODEC_KEY: a key decodes to 12 bytes"),
        ({"DEPLOYFLOW_CODEC_KEY": "not base64!"}, "DEPLOYFLOW_CODEC_KEY: a key is not valid base64"),
        ({"DEPLOYFLOW_CODEC_KEY": "bad id:" + base64.b64encode(b"k" * 32).decode()}, "key id 'bad id'"),
        ({KEY_FILE_ENV: "/nonexistent/deployflow/keys"}, "DEPLOYFLOW_CODEC_KEY_FILE: cannot read"),
        ({"DEPLOYFLOW_CODEC_KEY": "a:" + base64.b64encode(b"k" * 32).decode() + ",a:"
          + base64.b64encode(b"j" * 32).decode()}, "two different keys share the id 'a'"),
    ],
)
def test_bad_key_configuration_names_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(CodecConfigError, match=message) as err:
        load_keys(env)
    material = [part for part in re.split("[,:]", env.get("DEPLOYFLOW_CODEC_KEY", "")) if len(part) >= 16]
    assert not any(part in str(err.value) for part in material)  # no key material in the message


def test_connection_settings_turn_the_codec_on_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DEPLOYFLOW_CODEC_KEY", raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    assert ConnectionSettings.from_env().codec is None
    monkeypatch.setenv("DEPLOYFLOW_CODEC_KEY", f"env:{generate_key()}")
    for settings in (ConnectionSettings.from_env(), ConnectionSettings(address="127.0.0.1:7233")):
        assert isinstance(settings.codec, EncryptionCodec) and settings.codec.key_id == "env"
        assert "secret" not in repr(settings)


class Spec(BaseModel):
    image: str


async def test_data_converter_keeps_pydantic_models_and_encrypts_them() -> None:
    converter = data_converter(codec(generate_key()))
    [payload] = await converter.encode([Spec(image=SECRET_TEXT)])
    assert b"kumquat" not in payload.SerializeToString()
    assert await converter.decode([payload], [Spec]) == [Spec(image=SECRET_TEXT)]


async def test_failure_messages_are_encrypted_even_with_the_workers_failure_converter() -> None:
    # The worker swaps in its own failure converter class; the message must stay encrypted through that swap.
    converter = dataclasses.replace(data_converter(codec(generate_key())), failure_converter_class=SpecFailureConverter)
    assert issubclass(converter.failure_converter_class, SpecFailureConverter)
    error = ApplicationError(f"pod cannot start: ImagePullBackOff ({SECRET_TEXT})", type="ImagePullBackOff")
    try:
        raise error from ValueError(f"cause mentions {SECRET_TEXT}")
    except ApplicationError as raised:
        failure = Failure()
        await converter.encode_failure(raised, failure)
    assert b"kumquat" not in failure.SerializeToString()
    assert failure.message == "Encoded failure" and failure.cause.message == "Encoded failure"
    assert failure.application_failure_info.type == "ImagePullBackOff"  # CI can still tell why it failed
    decoded = await converter.decode_failure(failure)
    assert isinstance(decoded, ApplicationError) and SECRET_TEXT in decoded.message
    assert decoded.type == "ImagePullBackOff" and SECRET_TEXT in str(decoded.cause)


async def test_without_a_codec_failures_stay_as_they_were() -> None:
    failure = Failure()
    await dataclasses.replace(data_converter(None), failure_converter_class=SpecFailureConverter).encode_failure(
        ApplicationError("plain reason", type="Aborted"), failure
    )
    assert failure.message == "plain reason"


def test_generated_keys_are_random_32_byte_keys() -> None:
    assert len(base64.b64decode(generate_key())) == 32 and generate_key() != generate_key()


# --- the codec server -----------------------------------------------------------------------------------------------

UI = "http://localhost:8233"


@contextlib.asynccontextmanager
async def codec_server(c: EncryptionCodec, token: str | None = "s3cret-token") -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(c, auth_token=token, cors_origins=[UI]), host="127.0.0.1")) as http:
        yield http


def as_json(*payloads: Payload) -> str:
    return json_format.MessageToJson(Payloads(payloads=payloads))


def from_json(text: str) -> list[Payload]:
    return list(json_format.Parse(text, Payloads()).payloads)


async def test_codec_server_encodes_and_decodes_the_json_payloads_format() -> None:
    c = codec(f"srv:{generate_key()}")
    async with codec_server(c) as http:
        auth = {"Authorization": "Bearer s3cret-token", "X-Namespace": "default"}
        encoded = await http.post("/encode", data=as_json(plain()), headers=auth)
        assert encoded.status == 200
        [sealed] = from_json(await encoded.text())
        assert sealed.metadata["encoding"] == ENCODING and b"kumquat" not in sealed.data
        decoded = await http.post("/decode", data=as_json(sealed, plain("untouched")), headers=auth)
        assert decoded.status == 200 and from_json(await decoded.text()) == [plain(), plain("untouched")]
        sealed.data = sealed.data[:-2] + b"xx"
        tampered = await http.post("/decode", data=as_json(sealed), headers=auth)
        assert tampered.status == 400 and "failed authentication" in await tampered.text()
        assert (await http.post("/decode", data="not json", headers=auth)).status == 400


@pytest.mark.parametrize("header", [None, "Bearer wrong", "s3cret-token", "Bearer s3cret-tokenX"])
async def test_codec_server_requires_the_bearer_token(header: str | None) -> None:
    c = codec(generate_key())
    [sealed] = await c.encode([plain()])
    async with codec_server(c) as http:
        headers = {"Authorization": header} if header else {}
        response = await http.post("/decode", data=as_json(sealed), headers=headers)
        assert response.status == 401 and "kumquat" not in await response.text()


async def test_codec_server_answers_cors_for_the_ui_origin_only() -> None:
    async with codec_server(codec(generate_key())) as http:
        preflight = {"Origin": UI, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,content-type,x-namespace"}
        allowed = await http.options("/decode", headers=preflight)
        assert allowed.status == 204
        assert allowed.headers["Access-Control-Allow-Origin"] == UI
        assert "X-Namespace" in allowed.headers["Access-Control-Allow-Headers"]
        assert "POST" in allowed.headers["Access-Control-Allow-Methods"]
        # The UI can read a refusal (and show it) instead of a CORS error.
        unauthorized = await http.post("/decode", data=as_json(plain()), headers={"Origin": UI})
        assert unauthorized.status == 401 and unauthorized.headers["Access-Control-Allow-Origin"] == UI
        # Another site (or a DNS-rebound name) in the user's browser is refused outright, token or not.
        other = {**preflight, "Origin": "https://evil.example"}
        assert (await http.options("/decode", headers=other)).status == 403
        refused = await http.post("/decode", data=as_json(plain()),
                                  headers={"Origin": "https://evil.example", "Authorization": "Bearer s3cret-token"})
        assert refused.status == 403 and "Access-Control-Allow-Origin" not in refused.headers


def test_codec_server_refuses_to_serve_beyond_loopback_without_a_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOYFLOW_CODEC_KEY", generate_key())
    monkeypatch.delenv("DEPLOYFLOW_CODEC_AUTH_TOKEN", raising=False)
    with pytest.raises(CodecConfigError, match="without DEPLOYFLOW_CODEC_AUTH_TOKEN"):
        run(host="0.0.0.0", port=0)
    monkeypatch.delenv("DEPLOYFLOW_CODEC_KEY")
    with pytest.raises(CodecConfigError, match="needs DEPLOYFLOW_CODEC_KEY"):
        run(port=0)


def test_codec_server_command_exits_2_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("DEPLOYFLOW_CODEC_KEY", raising=False)
    monkeypatch.delenv(KEY_FILE_ENV, raising=False)
    assert main(["--port", "0"]) == 2
    assert "needs DEPLOYFLOW_CODEC_KEY" in capsys.readouterr().err


# --- a real release, encrypted ----------------------------------------------------------------------------------------

APP, IMAGE, DISTINCT = "kumquat", "registry.example.com/shop/kumquat:7731", "zanzibar-marmalade"


def history_payloads(message: Message, under_search_attributes: bool = False) -> Iterator[tuple[bool, Payload]]:
    """Every Payload in a history, and whether it is a search attribute (indexed in clear by Temporal's design)."""
    if isinstance(message, Payload):
        yield under_search_attributes, message
        return
    for field, value in message.ListFields():
        in_sa = under_search_attributes or field.name == "search_attributes"
        if field.message_type is None:
            continue
        if isinstance(value, Message):
            values = [value]
        else:  # a repeated field or a map of messages
            values = list(value.values()) if field.message_type.GetOptions().map_entry else list(value)
        for item in values:
            if isinstance(item, Message):
                yield from history_payloads(item, in_sa)


def encrypted_request(namespace: str, **workload: Any) -> BlueGreenRequest:
    target = {"cluster": "sim", "namespace": namespace, "app": APP}
    spec = {"image": IMAGE, "env": [{"name": "GREETING", "value": DISTINCT}], **workload}
    return bluegreen_request(namespace, "7731", standby="0s", target=target, workload=spec)


def assert_unreadable(history: WorkflowHistory, key_id: bytes) -> list[tuple[bool, Payload]]:
    """Nothing of the spec in a history read without the key; returns its payloads."""
    payloads = [p for event in history.events for p in history_payloads(event)]
    text = history.to_json()
    sealed = [p for in_sa, p in payloads if not in_sa]
    assert len(sealed) >= 10 and all(
        p.metadata["encoding"] == ENCODING and p.metadata[KEY_ID_METADATA] == key_id for p in sealed
    )
    raw = b"".join(p.SerializeToString() for _, p in payloads)
    for secret in (IMAGE, DISTINCT, "GREETING"):
        assert secret not in text and secret.encode() not in raw, secret
    # The app name is in the workflow id and the DeployApp search attribute (Temporal routes and indexes by them),
    # and nowhere else.
    assert APP not in text.replace(history.workflow_id, "") and all(APP.encode() not in p.data for p in sealed)
    return payloads


async def test_a_release_history_is_unreadable_without_the_key_and_readable_through_the_codec_server(
    dev_env: WorkflowEnvironment, sim: Simulator, kubeconfig: str, namespace: str
) -> None:
    key = codec(f"it:{generate_key()}")
    address = dev_env.client.service_client.config.target_host
    client = await connect(ConnectionSettings(address=address, codec=key))
    async with running_worker(client) as queue:
        handle = await start(client, queue, encrypted_request(namespace))
        status: DeploymentStatus = await handle.result()
        # The deployflow CLI without the key says what is missing instead of a traceback.
        await assert_cli_needs_the_key(address, handle.id)
    assert status.phase == Phase.SUCCEEDED and status.version == "7731"

    # A client without the key (Temporal's own readers, the UI without the codec server) sees no spec content.
    payloads = assert_unreadable(await dev_env.client.get_workflow_handle(handle.id).fetch_history(), b"it")
    with pytest.raises(KeyError, match="binary/encrypted"):
        await dev_env.client.get_workflow_handle(handle.id).result()

    # Through the codec server, the temporal CLI (as the UI) shows the spec.
    async with codec_server(key) as http:
        shown = await temporal_cli("workflow", "show", "--workflow-id", handle.id, "--address", address, "-o", "json",
                                   "--codec-endpoint", str(http.server.make_url("")).rstrip("/"),
                                   "--codec-auth", "Bearer s3cret-token")
    decoded = [p for event in WorkflowHistory.from_json(handle.id, shown).events for p in history_payloads(event)]
    assert len(decoded) == len(payloads) and all(p.metadata["encoding"] == b"json/plain" for _, p in decoded)
    clear = b"".join(p.data for _, p in decoded)
    assert IMAGE.encode() in clear and DISTINCT.encode() in clear


async def test_a_failed_release_keeps_its_reason_encrypted_and_its_failure_type_readable(
    dev_env: WorkflowEnvironment, sim: Simulator, kubeconfig: str, namespace: str
) -> None:
    client = await connect(ConnectionSettings(address=dev_env.client.service_client.config.target_host,
                                              codec=codec(f"fail:{generate_key()}")))
    request = encrypted_request(namespace, pod_annotations={"sim.deployflow.io/image-pull-error": "true"})
    async with running_worker(client) as queue:
        handle = await start(client, queue, request)
        with pytest.raises(WorkflowFailureError) as failed:
            await handle.result()
    # With the key, the reason reads as usual.
    cause = failed.value.cause
    assert isinstance(cause, ApplicationError) and cause.type == "RolledBack"
    assert "failed to pull" in cause.message and IMAGE in cause.message

    history = await dev_env.client.get_workflow_handle(handle.id).fetch_history()
    assert_unreadable(history, b"fail")
    [closed] = [e.workflow_execution_failed_event_attributes for e in history.events
                if e.HasField("workflow_execution_failed_event_attributes")]
    # The activities' and the workflow's messages name the pods and quote the image: none readable (assert_unreadable
    # checked the app name and image), and not the puller's words either.
    assert closed.failure.message == "Encoded failure" and "failed to pull" not in history.to_json()
    assert closed.failure.application_failure_info.type == "RolledBack"


async def test_ci_starting_with_the_temporal_cli_through_the_codec_server_stores_the_spec_encrypted(
    dev_env: WorkflowEnvironment, namespace: str
) -> None:
    key = codec(f"ci:{generate_key()}")
    spec = encrypted_request(namespace).model_dump_json(by_alias=True)
    workflow_id = f"deploy/sim/{namespace}/{APP}"
    async with codec_server(key) as http:
        # The variables a CI job sets (deploy/ci/): no worker needed, only the start is looked at.
        await temporal_cli("workflow", "start", "--type", "BlueGreenDeployment", "--task-queue", f"none-{namespace}",
                           "--workflow-id", workflow_id, "--input", spec, "--fail-existing",
                           "--address", dev_env.client.service_client.config.target_host,
                           env={"TEMPORAL_CODEC_ENDPOINT": str(http.server.make_url("")).rstrip("/"),
                                "TEMPORAL_CODEC_AUTH": "Bearer s3cret-token"})
    handle = dev_env.client.get_workflow_handle(workflow_id)
    try:
        started = (await handle.fetch_history()).events[0].workflow_execution_started_event_attributes
        [sealed] = started.input.payloads
        assert sealed.metadata[KEY_ID_METADATA] == b"ci" and DISTINCT.encode() not in sealed.data
        assert DISTINCT.encode() in (await key.decode([sealed]))[0].data
    finally:
        await handle.terminate("test over")


async def temporal_cli(*args: str, env: dict[str, str] | None = None) -> str:
    proc = await asyncio.create_subprocess_exec(temporal_cli_path(), *args, stdout=asyncio.subprocess.PIPE,
                                                stderr=asyncio.subprocess.PIPE, env={**os.environ, **(env or {})})
    out, err = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 0, err.decode()
    return out.decode()


async def assert_cli_needs_the_key(address: str, workflow_id: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DEPLOYFLOW_CODEC")}
    shown = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "deployflow.cli", "status", workflow_id, env={**env, "TEMPORAL_ADDRESS": address},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(shown.communicate(), timeout=60)
    assert shown.returncode == 1, err.decode()
    assert "DEPLOYFLOW_CODEC_KEY" in err.decode() and "Traceback" not in err.decode()
