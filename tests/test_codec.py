"""Encrypted payloads: the codec's cryptography, its key configuration, and the failure messages it hides."""

from __future__ import annotations

import base64
import dataclasses
import re
from pathlib import Path

import pytest
from pydantic import BaseModel
from temporalio.api.common.v1 import Payload
from temporalio.api.failure.v1 import Failure
from temporalio.exceptions import ApplicationError

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
from deployflow.temporal import ConnectionSettings
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
