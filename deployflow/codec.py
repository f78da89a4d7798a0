"""Encrypted payloads: AES-256-GCM over every payload Temporal stores for deployflow, off unless a key is configured.

Whoever can read a Temporal history (namespace readers, the UI, a database backup) would otherwise read every spec,
status and failure. With a key in the environment of the worker and the CLI, `deployflow.temporal.connect()`
encrypts workflow inputs and results, signal/update/query arguments and answers, activity inputs and results,
heartbeat details, memos, UI summaries and failure details; the failure message and stack trace are moved into the
failure's encoded attributes (`encode_common_attributes`) so they are encrypted too. What stays readable is what
Temporal needs to route and index: workflow id and type, task queue, activity types, search attributes and the
failure type (`ApplicationError.type`, so CI can still tell a rollback from a crash).

Keys rotate: every encrypted payload names its key id in the metadata, one key encrypts and every configured key
decrypts. Payloads that were never encrypted (runs started before the key was set, clients without the codec) pass
through decoding unchanged, so turning encryption on does not break releases in flight.

Configuration (never in a payload):
  DEPLOYFLOW_CODEC_KEY       comma-separated keys, the first encrypts; each is base64 of 32 random bytes,
                             optionally prefixed by an id: `2026-12:BASE64`
  DEPLOYFLOW_CODEC_KEY_FILE  a file with one key per line in the same format (a mounted Secret); `#` comments allowed
With both, the variable's keys come first.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter, DefaultFailureConverter, FailureConverter, PayloadCodec

KEY_ENV = "DEPLOYFLOW_CODEC_KEY"
KEY_FILE_ENV = "DEPLOYFLOW_CODEC_KEY_FILE"
ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
KEY_BYTES = 32
NONCE_BYTES = 12
# Authenticated with the ciphertext: a payload re-labelled with another key id or format fails to decrypt.
_AAD_PREFIX = b"deployflow.codec.v1:"
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class CodecConfigError(ValueError):
    """The key configuration is unusable. The message names the variable, never the key material."""


class PayloadDecryptionError(ValueError):
    """An encrypted payload cannot be decrypted: modified, truncated, or encrypted with a key this process lacks."""


@dataclass(frozen=True)
class CodecKey:
    id: str
    secret: bytes = field(repr=False)


def fingerprint(secret: bytes) -> str:
    """A key id derived from the key (a one-way hash, so publishing it in payload metadata reveals nothing)."""
    return "k" + hashlib.sha256(b"deployflow codec key id\0" + secret).hexdigest()[:16]


def parse_key(text: str, source: str) -> CodecKey:
    """One key, `BASE64` or `ID:BASE64`; `source` names where it came from for the error message."""
    key_id, sep, encoded = text.strip().rpartition(":")
    if sep and not _KEY_ID.fullmatch(key_id):
        raise CodecConfigError(f"{source}: key id {key_id!r} must be 1-64 letters, digits, '.', '_' or '-'")
    try:
        secret = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise CodecConfigError(f"{source}: a key is not valid base64 (expected base64 of {KEY_BYTES} bytes)") from None
    if len(secret) != KEY_BYTES:
        raise CodecConfigError(f"{source}: a key decodes to {len(secret)} bytes; AES-256 needs {KEY_BYTES}")
    return CodecKey(key_id if sep else fingerprint(secret), secret)


def _parse_keys(entries: Sequence[str], source: str) -> list[CodecKey]:
    return [parse_key(entry, source) for entry in entries if entry.strip()]


def load_keys(env: Mapping[str, str] | None = None) -> list[CodecKey]:
    """The configured keys, the encrypting one first; [] when neither variable is set."""
    env = os.environ if env is None else env
    keys = _parse_keys(env.get(KEY_ENV, "").split(","), KEY_ENV)
    path = env.get(KEY_FILE_ENV, "").strip()
    if path:
        try:
            with open(path, encoding="utf-8") as f:
                lines = [line.split("#", 1)[0] for line in f]
        except OSError as err:
            # Fail closed: a configured but unreadable key must not silently leave payloads in clear text.
            raise CodecConfigError(f"{KEY_FILE_ENV}: cannot read {path}: {err.strerror}") from None
        file_keys = _parse_keys(lines, f"{KEY_FILE_ENV} ({path})")
        if not file_keys:
            raise CodecConfigError(f"{KEY_FILE_ENV}: {path} holds no key")
        keys += file_keys
    by_id: dict[str, CodecKey] = {}
    for key in keys:
        if key.id in by_id and by_id[key.id].secret != key.secret:
            raise CodecConfigError(f"{KEY_ENV}/{KEY_FILE_ENV}: two different keys share the id {key.id!r}")
        by_id.setdefault(key.id, key)
    return list(by_id.values())


class EncryptionCodec(PayloadCodec):
    """AES-256-GCM payload codec: the first key encrypts, every key decrypts (rotation)."""

    def __init__(self, keys: Sequence[CodecKey]) -> None:
        if not keys:
            raise CodecConfigError(f"the payload codec needs at least one key ({KEY_ENV} or {KEY_FILE_ENV})")
        self._encrypting = keys[0]
        self._ciphers = {key.id: AESGCM(key.secret) for key in keys}

    @property
    def key_id(self) -> str:
        """The id of the key new payloads are encrypted with."""
        return self._encrypting.id

    @property
    def key_ids(self) -> list[str]:
        return list(self._ciphers)

    def encrypt(self, payload: Payload) -> Payload:
        key_id = self._encrypting.id
        nonce = os.urandom(NONCE_BYTES)
        # The whole payload, metadata included, is sealed: even its original encoding is hidden.
        sealed = self._ciphers[key_id].encrypt(nonce, payload.SerializeToString(), _aad(key_id))
        return Payload(metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id.encode()}, data=nonce + sealed)

    def decrypt(self, payload: Payload) -> Payload:
        if payload.metadata.get("encoding") != ENCODING:
            return payload  # never encrypted: written before the key was set, or by a client without the codec
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode("utf-8", "replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {key_id!r}, which is not configured here (have: {self.key_ids})"
            )
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, _aad(key_id))
        except InvalidTag:
            raise PayloadDecryptionError(
                f"payload encrypted with key id {key_id!r} failed authentication: it was modified or truncated"
            ) from None
        inner = Payload()
        inner.ParseFromString(plain)
        return inner

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.encrypt(p) for p in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.decrypt(p) for p in payloads]


def _aad(key_id: str) -> bytes:
    return _AAD_PREFIX + key_id.encode()


def codec_from_env(env: Mapping[str, str] | None = None) -> EncryptionCodec | None:
    """The codec configured by DEPLOYFLOW_CODEC_KEY / _KEY_FILE, or None when encryption is off."""
    keys = load_keys(env)
    return EncryptionCodec(keys) if keys else None


@functools.cache
def encrypting_failures(cls: type[FailureConverter]) -> type[FailureConverter]:
    """`cls`, moving each failure's message and stack trace into its encoded (so encrypted) attributes.

    Subclasses such as the worker's SpecFailureConverter keep their own wording; only where it is stored changes.
    A converter that does not derive from DefaultFailureConverter is returned as it is.
    """
    if not issubclass(cls, DefaultFailureConverter) or getattr(cls, "_deployflow_encrypts", False):
        return cls

    def __init__(self: DefaultFailureConverter) -> None:  # noqa: N807 - the generated class's constructor
        DefaultFailureConverter.__init__(self, encode_common_attributes=True)

    return type(f"Encrypting{cls.__name__}", (cls,), {"__init__": __init__, "_deployflow_encrypts": True})


class EncryptingDataConverter(DataConverter):
    """A DataConverter whose failure messages are encrypted whatever failure converter class it is given later.

    The worker replaces the failure converter class (`dataclasses.replace`) and the SDK instantiates the class
    itself, so the encoding is attached to the class here rather than to a converter instance.
    """

    def __post_init__(self) -> None:
        object.__setattr__(self, "failure_converter_class", encrypting_failures(self.failure_converter_class))
        super().__post_init__()


def data_converter(codec: PayloadCodec | None) -> DataConverter:
    """The pydantic data converter; with a codec, payloads and failure messages are encrypted too."""
    if codec is None:
        return pydantic_data_converter
    return EncryptingDataConverter(
        payload_converter_class=pydantic_data_converter.payload_converter_class, payload_codec=codec
    )


def generate_key() -> str:
    """A fresh key in the DEPLOYFLOW_CODEC_KEY format."""
    return base64.b64encode(os.urandom(KEY_BYTES)).decode()
