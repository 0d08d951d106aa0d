"""What handlers share: parameter parsing (each failure names the argument), qty, hexdata."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from gateway.enclave import messages as m
from gateway.errors import InvalidParams, Unauthorized
from gateway.protocol.query import VERSION as SIGNED_QUERY_VERSION

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
        raise bad(name, index, 'hex string "0x" has no digits')
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


# ---------------------------------------------------------------------- results
def qty(value: int) -> str:
    return hex(value)


def hexdata(value: bytes) -> str:
    return "0x" + value.hex()


# ---------------------------------------------------------------------- the caller, objects
def is_web_origin(origin: str) -> bool:
    """http(s)://host[:port], parseable (urlsplit refuses "http://[" and bad ports)."""
    if not origin.startswith(("http://", "https://")):
        return False
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 (parses the port: raises on "http://h:x")
    except ValueError:
        return False
    return bool(parts.hostname)


def auth(ctx: Any) -> str | None:
    """The caller's session token, from the personal RPC URL it came in on."""
    return getattr(ctx, "auth", None)


def signed_query(value: Any) -> tuple[bytes | None, dict[str, int] | None, bytes | None]:
    """The optional ``signedQuery`` member of a call object: its signature, the leash's
    numbers and the leash's node."""
    if not isinstance(value, dict) or value.get("signedQuery") is None:
        return None, None, None
    query = value["signedQuery"]
    if not isinstance(query, dict):
        raise bad("transaction.signedQuery", 0, "expected an object {version, signature, leash}")
    if query.get("version") != SIGNED_QUERY_VERSION:
        raise Unauthorized(
            f"signed query refused: version {query.get('version', 1)!r} is not accepted; this "
            f"node takes signed query version {SIGNED_QUERY_VERSION} only (bound to the chain's "
            "genesis and to one node, answered at one block, once per nonce): upgrade the "
            'client SDK (docs/PROTOCOL.md, "Signed query, version 3")',
            reason="query-version",
        )
    signature = data(query.get("signature"), "transaction.signedQuery.signature", 0, size=65)
    leash_raw = query.get("leash")
    if not isinstance(leash_raw, dict):
        raise bad("transaction.signedQuery.leash", 0, "expected an object")
    leash = {}
    for key in ("nonce", "blockNumber", "blockRange", "expiry"):
        leash[key] = quantity(
            leash_raw.get(key), f"transaction.signedQuery.leash.{key}", 0, bits=64
        )
    node = address(leash_raw.get("node"), "transaction.signedQuery.leash.node", 0)
    return signature, leash, node


def filter_id(value: Any) -> str:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise bad("filterId", 0, "expected a hex filter id")
    return value.lower()


def tx_object(value: Any, name: str, index: int) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise bad(name, index, f"expected a transaction object, got {json_type(value)}")
    out: dict[str, Any] = {}
    for key in ("from", "to"):
        if value.get(key) is not None:
            out[key] = address(value[key], f"{name}.{key}", index)
    for key, bits in (
        ("gas", 64),
        ("nonce", 64),
        ("gasPrice", 256),
        ("maxFeePerGas", 256),
        ("maxPriorityFeePerGas", 256),
        ("value", 256),
    ):
        if value.get(key) is not None:
            out[key] = quantity(value[key], f"{name}.{key}", index, bits=bits)
    if value.get("type") is not None:
        out["type"] = quantity(value["type"], f"{name}.type", index, bits=8)
    given = value.get("input")
    legacy = value.get("data")
    if given is not None and legacy is not None and given != legacy:
        raise bad(name, index, 'both "data" and "input" are set and not equal')
    chosen = given if given is not None else legacy
    if chosen is not None:
        out["data"] = data(chosen, f"{name}.input", index)
    if "gasPrice" in out and ("maxFeePerGas" in out or "maxPriorityFeePerGas" in out):
        raise bad(name, index, "both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified")
    return out


def _or_latest(value: dict[str, Any], key: str) -> Any:
    """An absent or null bound means "latest"; anything else must parse as a block."""
    found = value.get(key)
    return "latest" if found is None else found


def log_query(value: Any, name: str, index: int) -> m.GetLogs:
    if not isinstance(value, dict):
        raise bad(name, index, f"expected a filter object, got {json_type(value)}")
    unknown = set(value) - {"fromBlock", "toBlock", "address", "topics", "blockHash"}
    if unknown:
        raise bad(name, index, f"unknown field(s) {', '.join(sorted(unknown))}")
    addresses_raw = value.get("address")
    if addresses_raw is None:
        addresses: list[bytes] = []
    elif isinstance(addresses_raw, list):
        addresses = [address(a, f"{name}.address", index) for a in addresses_raw]
    else:
        addresses = [address(addresses_raw, f"{name}.address", index)]
    topics_raw = value.get("topics")
    if topics_raw is None:
        topics_raw = []
    if not isinstance(topics_raw, list) or len(topics_raw) > 4:
        raise bad(name, index, "topics must be an array of at most 4 entries")
    topics: list[list[bytes] | None] = []
    for position, entry in enumerate(topics_raw):
        where = f"{name}.topics[{position}]"
        if entry is None:
            topics.append(None)
        elif isinstance(entry, list):
            topics.append([hash32(t, where, index) for t in entry] or None)
        else:
            topics.append([hash32(entry, where, index)])
    if value.get("blockHash") is not None:
        if value.get("fromBlock") is not None or value.get("toBlock") is not None:
            raise bad(name, index, "blockHash cannot be combined with fromBlock/toBlock")
        return m.GetLogs(
            addresses=addresses,
            topics=topics,
            block_hash=hash32(value["blockHash"], f"{name}.blockHash", index),
        )
    start = block_number_or_tag(_or_latest(value, "fromBlock"), f"{name}.fromBlock", index)
    end = block_number_or_tag(_or_latest(value, "toBlock"), f"{name}.toBlock", index)
    if isinstance(start, int) and isinstance(end, int) and start > end:
        raise bad(name, index, "fromBlock is after toBlock")
    return m.GetLogs(from_block=start, to_block=end, addresses=addresses, topics=topics)


MAX_PROOF_KEYS = 1024
_HEX_DIGITS = re.compile(r"[0-9a-fA-F]*")
MAX_ACCESS_LIST_ENTRIES = 1024


def access_list(value: Any, name: str, index: int) -> list[list[Any]]:
    """The optional ``accessList`` of a call object: [{address, storageKeys}, ...]."""
    entries = value.get("accessList") if isinstance(value, dict) else None
    if entries is None:
        return []
    where = f"{name}.accessList"
    if not isinstance(entries, list):
        raise bad(where, index, f"expected an array, got {json_type(entries)}")
    out: list[list[Any]] = []
    total = 0
    for position, entry in enumerate(entries):
        here = f"{where}[{position}]"
        if not isinstance(entry, dict) or set(entry) - {"address", "storageKeys"}:
            raise bad(here, index, "expected an object {address, storageKeys}")
        keys = entry.get("storageKeys") or []
        if not isinstance(keys, list):
            raise bad(f"{here}.storageKeys", index, "expected an array of 32-byte hashes")
        total += 1 + len(keys)
        if total > MAX_ACCESS_LIST_ENTRIES:
            raise bad(where, index, f"at most {MAX_ACCESS_LIST_ENTRIES} addresses and keys in all")
        account = address(entry.get("address"), f"{here}.address", index)
        out.append([account, [hash32(k, f"{here}.storageKeys", index) for k in keys]])
    return out


def storage_keys(value: Any, name: str, index: int) -> list[bytes]:
    """eth_getProof's storage keys: hex of at most 32 bytes each (geth's decodeHash)."""
    if not isinstance(value, list):
        raise bad(name, index, f"expected an array of storage keys, got {json_type(value)}")
    if len(value) > MAX_PROOF_KEYS:
        raise bad(name, index, f"at most {MAX_PROOF_KEYS} keys per call, got {len(value)}")
    keys = []
    for position, key in enumerate(value):
        where = f"{name}[{position}]"
        if not isinstance(key, str):
            raise bad(where, index, f"expected a hex string, got {json_type(key)}")
        digits = key[2:] if key.startswith(("0x", "0X")) else key
        if not _HEX_DIGITS.fullmatch(digits):
            raise bad(where, index, f"invalid hex string {key[:80]!r}")
        if len(digits) > 64:
            raise bad(where, index, "hex string too long, want at most 32 bytes")
        keys.append(bytes.fromhex(digits.rjust(len(digits) + len(digits) % 2, "0")))
    return keys
