"""Parameter parsing for the handlers: each failure names the argument and the reason."""

from __future__ import annotations

import re
from typing import Any

from gateway.errors import InvalidParams

_HEX = re.compile(r"^0x[0-9a-fA-F]*$")
BLOCK_TAGS = ("latest", "earliest", "pending", "safe", "finalized")
MAX_UINT256 = 2**256 - 1


def _where(name: str, index: int | None) -> str:
    return f"argument {index} ({name})" if index is not None else name


def json_type(value: Any) -> str:
    """The JSON name of a decoded value's type, for messages ("got object", not "got dict")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def bad(name: str, index: int | None, reason: str) -> InvalidParams:
    return InvalidParams(f"invalid {_where(name, index)}: {reason}")


def arity(params: list[Any], required: int, optional: int = 0) -> None:
    if len(params) < required:
        raise InvalidParams(f"missing value for required argument {len(params)}")
    if len(params) > required + optional:
        raise InvalidParams(
            f"too many arguments, want at most {required + optional}, got {len(params)}"
        )


def quantity(value: Any, name: str, index: int | None = None, *, bits: int = 256) -> int:
    if not isinstance(value, str):
        raise bad(name, index, f"expected a hex quantity string, got {json_type(value)}")
    if not value.startswith(("0x", "0X")):
        raise bad(name, index, "hex string without 0x prefix")
    digits = value[2:]
    if not digits:
        raise bad(name, index, "hex string \"0x\" has no digits")
    if not re.fullmatch(r"[0-9a-fA-F]+", digits):
        raise bad(name, index, f"invalid hex string {value[:80]!r}")
    number = int(digits, 16)
    if number >= 1 << bits:
        raise bad(name, index, f"hex number > {bits} bits")
    return number


def data(value: Any, name: str, index: int | None = None, *, size: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise bad(name, index, f"expected 0x-prefixed hex data, got {json_type(value)}")
    if not _HEX.match(value):
        raise bad(name, index, "expected 0x-prefixed hex data")
    if len(value) % 2:
        raise bad(name, index, "hex data has an odd number of digits")
    raw = bytes.fromhex(value[2:])
    if size is not None and len(raw) != size:
        raise bad(name, index, f"expected {size} bytes, got {len(raw)}")
    return raw


def text(value: Any, name: str, index: int | None = None, *, what: str = "a string") -> str:
    """A string that is valid Unicode: JSON's escapes can carry lone UTF-16 surrogates
    ("\\ud800"), which no UTF-8 encoder (nor the enclave link) accepts."""
    if not isinstance(value, str):
        raise bad(name, index, f"expected {what}, got {json_type(value)}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise bad(
            name, index, f"not valid Unicode: a lone surrogate (\\u{ord(value[exc.start]):04x})"
        ) from None
    return value


def address(value: Any, name: str = "address", index: int | None = None) -> bytes:
    if not isinstance(value, str) or not _HEX.match(value) or len(value) != 42:
        raise bad(name, index, "expected a 20-byte hex address (0x followed by 40 hex digits)")
    return bytes.fromhex(value[2:])


def hash32(value: Any, name: str, index: int | None = None) -> bytes:
    if not isinstance(value, str) or not _HEX.match(value) or len(value) != 66:
        raise bad(name, index, "expected a 32-byte hex hash (0x followed by 64 hex digits)")
    return bytes.fromhex(value[2:])


def boolean(value: Any, name: str, index: int | None = None) -> bool:
    if not isinstance(value, bool):
        raise bad(name, index, f"expected true or false, got {json_type(value)}")
    return value


def block_number_or_tag(value: Any, name: str = "block", index: int | None = None) -> Any:
    """A tag string or a block number (int)."""
    if isinstance(value, str) and value in BLOCK_TAGS:
        return value
    if isinstance(value, str) and value.startswith(("0x", "0X")):
        return quantity(value, name, index, bits=64)
    raise bad(
        name,
        index,
        'expected a block number (hex) or one of "latest", "earliest", "pending", "safe", '
        '"finalized"',
    )


def block_ref(value: Any, name: str = "block", index: int | None = None) -> Any:
    """EIP-1898: a number, a tag, or {"blockNumber"} / {"blockHash", "requireCanonical"}."""
    if isinstance(value, dict):
        keys = set(value)
        if keys <= {"blockHash", "requireCanonical"} and "blockHash" in value:
            canonical = value.get("requireCanonical", False)
            if not isinstance(canonical, bool):
                raise bad(name, index, "requireCanonical must be true or false")
            return {"hash": hash32(value["blockHash"], name + ".blockHash", index)}
        if keys == {"blockNumber"}:
            return block_number_or_tag(value["blockNumber"], name + ".blockNumber", index)
        raise bad(name, index, "expected {blockNumber} or {blockHash, requireCanonical}")
    if isinstance(value, str) and len(value) == 66 and _HEX.match(value):
        return {"hash": bytes.fromhex(value[2:])}
    return block_number_or_tag(value, name, index)


def optional(params: list[Any], index: int, default: Any) -> Any:
    if index < len(params) and params[index] is not None:
        return params[index]
    return default
