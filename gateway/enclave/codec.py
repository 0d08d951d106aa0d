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


BIG_INT_EXT = 1  # msgpack ext type: an integer outside 64 bits, as signed big-endian bytes


def _big_ints(value: Any) -> Any:
    """Replace integers msgpack cannot hold (Ethereum has 256-bit ones) by ext values."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        if -(2**63) <= value < 2**64:
            return value
        length = (value.bit_length() + 8) // 8
        return msgpack.ExtType(BIG_INT_EXT, value.to_bytes(length, "big", signed=True))
    if isinstance(value, list | tuple):
        return [_big_ints(v) for v in value]
    if isinstance(value, dict):
        return {k: _big_ints(v) for k, v in value.items()}
    return value


def _ext_hook(code: int, data: bytes) -> Any:
    if code == BIG_INT_EXT:
        return int.from_bytes(data, "big", signed=True)
    raise CodecError(f"unknown msgpack extension type {code}")


def _pack(value: Any) -> bytes:
    try:
        return msgpack.packb(value, use_bin_type=True)
    except OverflowError:
        return msgpack.packb(_big_ints(value), use_bin_type=True)


def _unpack(frame: bytes) -> Any:
    return msgpack.unpackb(frame, raw=False, strict_map_key=False, ext_hook=_ext_hook)


def encode_request(request_id: int, message: Any) -> bytes:
    fields = {f.name: getattr(message, f.name) for f in dataclasses.fields(message)}
    return _pack([request_id, type(message).__name__, fields])


def decode_request(frame: bytes) -> tuple[int, Any]:
    try:
        request_id, name, fields = _unpack(frame)
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
    return _pack([request_id, ok, payload])


def encode_error(request_id: int, error: RpcError) -> bytes:
    return encode_response(
        request_id, False, {"code": error.code, "message": error.message, "data": error.data}
    )


def decode_response(frame: bytes) -> tuple[int, bool, Any]:
    try:
        request_id, ok, payload = _unpack(frame)
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
