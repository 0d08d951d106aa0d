"""Bytes on the enclave boundary: msgpack frames, never pickle.

Request frame:  [request_id, message_type_name, {field: value}]
Response frame: [request_id, True, result] or [request_id, False, {code, message, data}]
On a pipe each frame is preceded by its length as a 4-byte big-endian integer.
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Any

import msgpack

from gateway.enclave.messages import MESSAGES
from gateway.errors import InternalError, RpcError

MAX_FRAME = 64 * 1024 * 1024
_LEN = struct.Struct(">I")


class CodecError(Exception):
    """A frame that is not a well-formed request or response."""


def encode_request(request_id: int, message: Any) -> bytes:
    fields = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    return msgpack.packb([request_id, type(message).__name__, fields], use_bin_type=True)


def decode_request(frame: bytes) -> tuple[int, Any]:
    try:
        request_id, name, fields = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as exc:
        raise CodecError("request frame is not msgpack [id, type, fields]") from exc
    cls = MESSAGES.get(name) if isinstance(name, str) else None
    if cls is None or not isinstance(fields, dict) or not isinstance(request_id, int):
        raise CodecError(f"unknown enclave message {name!r}")
    allowed = {f.name for f in dataclasses.fields(cls)}
    if not set(fields) <= allowed:
        raise CodecError(f"{name} has unknown fields {sorted(set(fields) - allowed)}")
    try:
        return request_id, cls(**fields)
    except TypeError as exc:
        raise CodecError(f"{name} is missing fields") from exc


def encode_response(request_id: int, ok: bool, payload: Any) -> bytes:
    return msgpack.packb([request_id, ok, payload], use_bin_type=True)


def encode_error(request_id: int, error: RpcError) -> bytes:
    return encode_response(
        request_id, False, {"code": error.code, "message": error.message, "data": error.data}
    )


def decode_response(frame: bytes) -> tuple[int, bool, Any]:
    try:
        request_id, ok, payload = msgpack.unpackb(frame, raw=False, strict_map_key=False)
    except Exception as exc:
        raise CodecError("response frame is not msgpack [id, ok, payload]") from exc
    return int(request_id), bool(ok), payload


def error_from(payload: Any) -> RpcError:
    """The RpcError the enclave reported, rebuilt on the host side."""
    if not isinstance(payload, dict) or not isinstance(payload.get("code"), int):
        return InternalError("the enclave returned a malformed error")
    return RpcError(str(payload.get("message", "")), payload.get("data"), code=payload["code"])


def frame(payload: bytes) -> bytes:
    return _LEN.pack(len(payload)) + payload


def frame_length(header: bytes) -> int:
    (length,) = _LEN.unpack(header)
    if length > MAX_FRAME:
        raise CodecError(f"frame of {length} bytes exceeds the {MAX_FRAME}-byte limit")
    return int(length)
