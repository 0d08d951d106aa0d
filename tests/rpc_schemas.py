"""Shape checks for JSON-RPC results, modelled on the Ethereum execution-apis specification.

Tests call :func:`validate_result` on every result a client receives, so that a response
which a strict client library would reject (a quantity with a leading zero, an upper-case
hash, a missing receipt field, an extra field where the spec forbids one) fails loudly,
naming the method and the exact JSON path of the offending value.

The schemas below are written by hand as JSON Schema (draft 2020-12) dicts. The facts they
encode (field names, which fields are mandatory, hex patterns, where extra fields are
forbidden) follow the execution-apis OpenRPC document; the structure is our own:

* Nullable results use ``"type": [..., "null"]`` rather than a ``oneOf`` with a null
  branch; the meaning is the same and error messages stay precise.
* Signed transactions are dispatched on their ``type`` field with ``if``/``then`` instead
  of a ``oneOf`` over five variants, again so a bad field is reported at its own path.
* A result array that may hold either hashes or objects (block ``transactions``,
  ``eth_getFilterChanges``) is treated as hashes when every item is a string and as
  objects otherwise. The spec's ``oneOf`` for filter results rejects ``[]`` (an empty
  array matches both branches); this form accepts it, which is what the spec means.

Deliberate deviations, each narrower or opt-in:

* ``eth_getLogs`` and ``eth_getFilterLogs`` must return log objects; the spec reuses the
  filter-changes union there, which would also admit a list of hashes.
* ``validate_result(..., pending=True)`` accepts a not-yet-mined transaction
  (``blockHash``/``blockNumber``/``transactionIndex`` null, no ``blockTimestamp``). The
  spec requires those fields non-null; nodes return them as null for pool transactions.
* ``web3_clientVersion``, ``net_listening``, ``net_peerCount`` and the subscription
  payloads are not in the execution-apis document; their shapes follow EIP-1474 and the
  behaviour of common nodes.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Sequence
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

__all__ = [
    "NOTIFICATION_SCHEMAS",
    "RESULT_SCHEMAS",
    "SchemaMismatch",
    "has_schema",
    "validate_notification",
    "validate_result",
]

# --------------------------------------------------------------------------------------
# Hex encodings. Everything except addresses must be lower-case.
# --------------------------------------------------------------------------------------

#: A quantity: minimal hex, no leading zeros, "0x0" for zero.
QUANTITY_RE = r"^0x(0|[1-9a-f][0-9a-f]*)$"
#: A quantity limited to 64 bits (withdrawal indices).
QUANTITY64_RE = r"^0x(0|[1-9a-f][0-9a-f]{0,15})$"
#: A quantity limited to 256 bits (withdrawal amounts, authorization signatures).
QUANTITY256_RE = r"^0x(0|[1-9a-f][0-9a-f]{0,63})$"
#: Arbitrary data. The spec does not insist on an even number of digits.
DATA_RE = r"^0x[0-9a-f]*$"
#: Exactly 32 bytes (block, transaction and state hashes, topics, storage keys).
HASH32_RE = r"^0x[0-9a-f]{64}$"
#: A 20-byte account; either case is fine, so EIP-55 checksummed addresses pass.
ADDRESS_RE = r"^0x[0-9a-fA-F]{40}$"
#: A 256-byte logs bloom.
BLOOM_RE = r"^0x[0-9a-f]{512}$"
#: The 8-byte proof-of-work nonce of a header.
BLOCK_NONCE_RE = r"^0x[0-9a-f]{16}$"
#: One or two hex digits (receipt type, yParity, and v of typed transactions).
SMALL_BYTE_RE = r"^0x[0-9a-f]{1,2}$"
#: net_version: a plain decimal string.
DECIMAL_RE = r"^(0|[1-9][0-9]*)$"


def _hex(pattern: str, what: str) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern, "description": what}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """The same shape, or JSON null."""
    out = copy.deepcopy(schema)
    kind = out.get("type")
    if isinstance(kind, str):
        out["type"] = [kind, "null"]
    elif isinstance(kind, list):
        if "null" not in kind:
            out["type"] = [*kind, "null"]
    else:
        raise ValueError("_nullable needs a schema with an explicit type")
    return out


def _array(items: dict[str, Any], what: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {"type": "array", "items": items}
    if what:
        out["description"] = what
    return out


def _object(
    props: dict[str, Any],
    required: Iterable[str] = (),
    *,
    closed: bool = False,
    what: str = "",
) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "object", "properties": props, "required": list(required)}
    if closed:
        out["additionalProperties"] = False
    if what:
        out["description"] = what
    return out


QUANTITY = _hex(QUANTITY_RE, "unsigned integer as minimal lower-case hex")
QUANTITY64 = _hex(QUANTITY64_RE, "64-bit unsigned integer as minimal hex")
QUANTITY256 = _hex(QUANTITY256_RE, "256-bit unsigned integer as minimal hex")
DATA = _hex(DATA_RE, "lower-case hex bytes")
HASH32 = _hex(HASH32_RE, "32 bytes of lower-case hex")
ADDRESS = _hex(ADDRESS_RE, "20-byte account address")
BLOOM = _hex(BLOOM_RE, "256-byte bloom filter")
BLOCK_NONCE = _hex(BLOCK_NONCE_RE, "8-byte header nonce")
SMALL_BYTE = _hex(SMALL_BYTE_RE, "one byte as one or two hex digits")
DECIMAL = _hex(DECIMAL_RE, "unsigned integer in decimal")
BOOLEAN: dict[str, Any] = {"type": "boolean"}

# --------------------------------------------------------------------------------------
# Logs and receipts. Both are closed objects in the spec: no extra fields allowed.
# --------------------------------------------------------------------------------------

LOG = _object(
    {
        "removed": BOOLEAN,
        "logIndex": QUANTITY,
        "transactionIndex": QUANTITY,
        "transactionHash": HASH32,
        "blockHash": HASH32,
        "blockNumber": QUANTITY,
        "blockTimestamp": QUANTITY,
        "address": ADDRESS,
        "data": DATA,
        "topics": _array(HASH32),
    },
    required=["transactionHash"],
    closed=True,
    what="an event log entry",
)

RECEIPT = _object(
    {
        "type": SMALL_BYTE,
        "transactionHash": HASH32,
        "transactionIndex": QUANTITY,
        "blockHash": HASH32,
        "blockNumber": QUANTITY,
        "from": ADDRESS,
        "to": _nullable(ADDRESS),
        "cumulativeGasUsed": QUANTITY,
        "gasUsed": QUANTITY,
        "blobGasUsed": QUANTITY,
        "contractAddress": _nullable(ADDRESS),
        "logs": _array(LOG),
        "logsBloom": BLOOM,
        "root": HASH32,
        "status": QUANTITY,
        "effectiveGasPrice": QUANTITY,
        "blobGasPrice": QUANTITY,
    },
    required=[
        "blockHash",
        "blockNumber",
        "from",
        "cumulativeGasUsed",
        "gasUsed",
        "logs",
        "logsBloom",
        "transactionHash",
        "transactionIndex",
        "effectiveGasPrice",
    ],
    closed=True,
    what="a transaction receipt",
)

# --------------------------------------------------------------------------------------
# Transactions, one shape per envelope type, selected by the "type" field.
# --------------------------------------------------------------------------------------

ACCESS_LIST = _array(
    _object(
        {"address": ADDRESS, "storageKeys": _array(HASH32)},
        required=["address", "storageKeys"],
        closed=True,
    ),
    "EIP-2930 access list",
)

AUTHORIZATION = _object(
    {
        "chainId": QUANTITY,
        "nonce": QUANTITY,
        "address": ADDRESS,
        "yParity": SMALL_BYTE,
        "r": QUANTITY256,
        "s": QUANTITY256,
    },
    required=["chainId", "nonce", "address", "yParity", "r", "s"],
    what="EIP-7702 authorization tuple",
)

# Fields every envelope may carry; each type below narrows what is mandatory.
_TX_COMMON = {
    "nonce": QUANTITY,
    "gas": QUANTITY,
    "value": QUANTITY,
    "input": DATA,
    "gasPrice": QUANTITY,
    "chainId": QUANTITY,
    "r": QUANTITY,
    "s": QUANTITY,
}
# Typed envelopes sign with a parity bit; "v" may still be echoed beside it.
_TYPED_SIG = {"yParity": SMALL_BYTE, "v": SMALL_BYTE}


def _tx_shape(type_code: str, extra: dict[str, Any], required: Sequence[str]) -> dict[str, Any]:
    props = {**_TX_COMMON, **extra, "type": {"const": type_code}}
    return _object(props, required=["type", *required])


LEGACY_TX = _tx_shape(
    "0x0",
    {"to": _nullable(ADDRESS), "v": QUANTITY},
    ["nonce", "gas", "value", "input", "gasPrice", "v", "r", "s"],
)
ACCESS_LIST_TX = _tx_shape(
    "0x1",
    {"to": _nullable(ADDRESS), "accessList": ACCESS_LIST, **_TYPED_SIG},
    ["nonce", "gas", "value", "input", "gasPrice", "chainId", "accessList", "yParity", "r", "s"],
)
DYNAMIC_FEE_TX = _tx_shape(
    "0x2",
    {
        "to": _nullable(ADDRESS),
        "maxFeePerGas": QUANTITY,
        "maxPriorityFeePerGas": QUANTITY,
        "accessList": ACCESS_LIST,
        **_TYPED_SIG,
    },
    [
        "nonce", "gas", "value", "input", "maxFeePerGas", "maxPriorityFeePerGas",
        "gasPrice", "chainId", "accessList", "yParity", "r", "s",
    ],
)  # fmt: skip
BLOB_TX = _tx_shape(
    "0x3",
    {
        "to": ADDRESS,
        "maxFeePerGas": QUANTITY,
        "maxPriorityFeePerGas": QUANTITY,
        "maxFeePerBlobGas": QUANTITY,
        "accessList": ACCESS_LIST,
        "blobVersionedHashes": _array(HASH32),
        **_TYPED_SIG,
    },
    [
        "nonce", "to", "gas", "value", "input", "maxPriorityFeePerGas", "maxFeePerGas",
        "maxFeePerBlobGas", "accessList", "blobVersionedHashes", "chainId",
        "yParity", "r", "s",
    ],
)  # fmt: skip
SET_CODE_TX = _tx_shape(
    "0x4",
    {
        "to": ADDRESS,
        "maxFeePerGas": QUANTITY,
        "maxPriorityFeePerGas": QUANTITY,
        "accessList": ACCESS_LIST,
        "authorizationList": _array(AUTHORIZATION),
        **_TYPED_SIG,
    },
    [
        "nonce", "to", "gas", "value", "input", "maxPriorityFeePerGas", "maxFeePerGas",
        "accessList", "chainId", "authorizationList", "yParity", "r", "s",
    ],
)  # fmt: skip

_TX_BY_TYPE = {
    "0x0": LEGACY_TX,
    "0x1": ACCESS_LIST_TX,
    "0x2": DYNAMIC_FEE_TX,
    "0x3": BLOB_TX,
    "0x4": SET_CODE_TX,
}

SIGNED_TX: dict[str, Any] = {
    "type": "object",
    "required": ["type"],
    "properties": {"type": {"type": "string", "enum": list(_TX_BY_TYPE)}},
    "allOf": [
        {
            "if": {"required": ["type"], "properties": {"type": {"const": code}}},
            "then": shape,
        }
        for code, shape in _TX_BY_TYPE.items()
    ],
    "description": "a signed transaction of any known envelope type",
}

# Where a mined transaction sits. The spec requires all of these (including the newer
# blockTimestamp) on every transaction returned by the eth_getTransactionBy* family.
MINED_TX = {
    "allOf": [
        _object(
            {
                "blockHash": HASH32,
                "blockNumber": QUANTITY,
                "blockTimestamp": QUANTITY,
                "from": ADDRESS,
                "hash": HASH32,
                "transactionIndex": QUANTITY,
            },
            required=[
                "blockHash", "blockNumber", "blockTimestamp", "from", "hash", "transactionIndex",
            ],
        ),
        SIGNED_TX,
    ],
}  # fmt: skip

# Opt-in relaxation for a transaction still in the pool (see module docstring).
PENDING_TX = {
    "allOf": [
        _object(
            {
                "blockHash": _nullable(HASH32),
                "blockNumber": _nullable(QUANTITY),
                "blockTimestamp": _nullable(QUANTITY),
                "from": ADDRESS,
                "hash": HASH32,
                "transactionIndex": _nullable(QUANTITY),
            },
            required=["blockHash", "blockNumber", "from", "hash", "transactionIndex"],
        ),
        SIGNED_TX,
    ],
}

# --------------------------------------------------------------------------------------
# Headers and blocks. Open objects: clients may add fields (e.g. totalDifficulty).
# --------------------------------------------------------------------------------------

WITHDRAWAL = _object(
    {
        "index": QUANTITY64,
        "validatorIndex": QUANTITY64,
        "address": ADDRESS,
        "amount": QUANTITY256,
    },
    required=["index", "validatorIndex", "address", "amount"],
    closed=True,
    what="EIP-4895 withdrawal",
)

_HEADER_FIELDS: dict[str, Any] = {
    "hash": HASH32,
    "parentHash": HASH32,
    "sha3Uncles": HASH32,
    "miner": ADDRESS,
    "stateRoot": HASH32,
    "transactionsRoot": HASH32,
    "receiptsRoot": HASH32,
    "logsBloom": BLOOM,
    "difficulty": QUANTITY,
    "number": QUANTITY,
    "gasLimit": QUANTITY,
    "gasUsed": QUANTITY,
    "timestamp": QUANTITY,
    "extraData": DATA,
    "mixHash": HASH32,
    "nonce": BLOCK_NONCE,
    # Fork-dependent fields: never mandatory in the spec, checked when present.
    "baseFeePerGas": QUANTITY,  # London
    "withdrawalsRoot": HASH32,  # Shanghai
    "blobGasUsed": QUANTITY,  # Cancun
    "excessBlobGas": QUANTITY,  # Cancun
    "parentBeaconBlockRoot": HASH32,  # Cancun
    "requestsHash": HASH32,  # Prague
    "blockAccessListHash": HASH32,  # EIP-7928
}
# difficulty and baseFeePerGas are absent from this list on purpose: the spec does not
# require them.
_HEADER_REQUIRED = [
    "hash", "parentHash", "sha3Uncles", "miner", "stateRoot", "transactionsRoot",
    "receiptsRoot", "logsBloom", "number", "gasLimit", "gasUsed", "timestamp",
    "extraData", "mixHash", "nonce",
]  # fmt: skip

#: What a newHeads subscription delivers: the header fields, without the body.
HEADER = _object(_HEADER_FIELDS, required=_HEADER_REQUIRED, what="a block header")


def _hashes_or(objects: dict[str, Any]) -> dict[str, Any]:
    """An array of 32-byte hashes when every item is a string, else an array of objects."""
    return {
        "type": "array",
        "if": {"items": {"type": "string"}},
        "then": {"items": HASH32},
        "else": {"items": objects},
    }


def _block(transactions: dict[str, Any]) -> dict[str, Any]:
    fields = {
        **_HEADER_FIELDS,
        "size": QUANTITY,
        "transactions": transactions,
        "uncles": _array(HASH32),
        "withdrawals": _array(WITHDRAWAL),
    }
    required = [*_HEADER_REQUIRED, "size", "transactions", "uncles"]
    return _nullable(_object(fields, required=required, what="a block, or null if unknown"))


BLOCK = _block(_hashes_or(MINED_TX))
BLOCK_WITH_TX_HASHES = _block(_array(HASH32))
BLOCK_WITH_FULL_TXS = _block(_array(MINED_TX))

# --------------------------------------------------------------------------------------
# Everything else.
# --------------------------------------------------------------------------------------

FEE_HISTORY = _object(
    {
        "oldestBlock": QUANTITY,
        "baseFeePerGas": _array(QUANTITY),
        "baseFeePerBlobGas": _array(QUANTITY),
        "gasUsedRatio": _array({"type": "number", "minimum": 0, "maximum": 1}),
        "blobGasUsedRatio": _array({"type": "number", "minimum": 0, "maximum": 1}),
        "reward": _array(_array(QUANTITY)),
    },
    required=["oldestBlock", "baseFeePerGas", "gasUsedRatio"],
    closed=True,
    what="eth_feeHistory result",
)

SYNCING: dict[str, Any] = {
    "type": ["object", "boolean"],
    "properties": {
        "startingBlock": QUANTITY,
        "currentBlock": QUANTITY,
        "highestBlock": QUANTITY,
    },
    "additionalProperties": False,
    "description": "false when idle, otherwise a progress object with no other fields",
}

ACCESS_LIST_RESULT = _object(
    {"accessList": ACCESS_LIST, "error": {"type": "string"}, "gasUsed": QUANTITY},
    required=["accessList", "gasUsed"],
    closed=True,
    what="eth_createAccessList result",
)

_PROOF = _array(DATA, "RLP-encoded trie nodes, root first")

ACCOUNT_PROOF = _object(
    {
        "address": ADDRESS,
        "accountProof": _PROOF,
        "balance": QUANTITY256,
        "codeHash": HASH32,
        "nonce": QUANTITY64,
        "storageHash": HASH32,
        "storageProof": _array(
            _object(
                {
                    "key": _hex(r"^0x[0-9a-f]{0,64}$", "storage key as given"),
                    "value": QUANTITY256,
                    "proof": _PROOF,
                },
                required=["key", "value", "proof"],
                closed=True,
            )
        ),
    },
    required=[
        "address", "accountProof", "balance", "codeHash", "nonce", "storageHash", "storageProof",
    ],
    closed=True,
    what="eth_getProof result (EIP-1186)",
)  # fmt: skip

# A transaction lookup yields null when the hash or position is unknown.
_TX_LOOKUP = {"if": {"type": "null"}, "else": MINED_TX}
_PENDING_TX_LOOKUP = {"if": {"type": "null"}, "else": PENDING_TX}

RESULT_SCHEMAS: dict[str, dict[str, Any]] = {
    # chain identity
    "eth_chainId": QUANTITY,
    "net_version": DECIMAL,
    "web3_clientVersion": {"type": "string", "minLength": 1},
    "net_listening": BOOLEAN,
    "net_peerCount": QUANTITY,
    "eth_syncing": SYNCING,
    "eth_coinbase": ADDRESS,
    "eth_accounts": _array(ADDRESS),
    # blocks
    "eth_blockNumber": QUANTITY,
    "eth_getBlockByNumber": BLOCK,
    "eth_getBlockByHash": BLOCK,
    "eth_getBlockTransactionCountByHash": _nullable(QUANTITY),
    "eth_getBlockTransactionCountByNumber": _nullable(QUANTITY),
    "eth_getBlockReceipts": _nullable(_array(RECEIPT)),
    # state
    "eth_getBalance": QUANTITY,
    "eth_getTransactionCount": QUANTITY,
    "eth_getCode": DATA,
    "eth_getStorageAt": DATA,
    "eth_call": DATA,
    "eth_estimateGas": QUANTITY,
    "eth_createAccessList": ACCESS_LIST_RESULT,
    "eth_getProof": ACCOUNT_PROOF,
    # fees
    "eth_gasPrice": QUANTITY,
    "eth_maxPriorityFeePerGas": QUANTITY,
    "eth_feeHistory": FEE_HISTORY,
    # transactions
    "eth_sendRawTransaction": HASH32,
    "eth_sendTransaction": HASH32,
    "eth_getTransactionByHash": _TX_LOOKUP,
    "eth_getTransactionByBlockHashAndIndex": _TX_LOOKUP,
    "eth_getTransactionByBlockNumberAndIndex": _TX_LOOKUP,
    "eth_getTransactionReceipt": _nullable(RECEIPT),
    # logs and filters
    "eth_getLogs": _array(LOG),
    "eth_getFilterLogs": _array(LOG),
    "eth_getFilterChanges": _hashes_or(LOG),
    "eth_newFilter": QUANTITY,
    "eth_newBlockFilter": QUANTITY,
    "eth_newPendingTransactionFilter": QUANTITY,
    "eth_uninstallFilter": BOOLEAN,
    # subscriptions (websocket)
    "eth_subscribe": {"type": "string", "minLength": 1},
    "eth_unsubscribe": BOOLEAN,
}

#: Payloads delivered in ``eth_subscription`` notifications, keyed by subscription kind.
NOTIFICATION_SCHEMAS: dict[str, dict[str, Any]] = {
    "newHeads": HEADER,
    "logs": LOG,
    "newPendingTransactions": {"if": {"type": "string"}, "then": HASH32, "else": PENDING_TX},
}

_SUBSCRIPTION_ENVELOPE = _object(
    {"subscription": {"type": "string", "minLength": 1}, "result": {}},
    required=["subscription", "result"],
)

# --------------------------------------------------------------------------------------
# Validation and error reporting.
# --------------------------------------------------------------------------------------


class SchemaMismatch(AssertionError):
    """A result does not have the shape the spec prescribes.

    ``problems`` lists ``(json_path, reason)`` pairs in document order; the message
    renders them as ``"<method>: <json_path>: <reason>"`` lines.
    """

    def __init__(self, method: str, problems: list[tuple[str, str]]) -> None:
        self.method = method
        self.problems = problems
        lines = [f"{method}: {path}: {reason}" for path, reason in problems[:_MAX_LINES]]
        if len(problems) > _MAX_LINES:
            lines.append(f"{method}: ... and {len(problems) - _MAX_LINES} more")
        super().__init__("\n".join(lines))


_MAX_LINES = 12
_validators: dict[int, Draft202012Validator] = {}


def _validator(schema: dict[str, Any]) -> Draft202012Validator:
    v = _validators.get(id(schema))
    if v is None:
        v = _validators[id(schema)] = Draft202012Validator(schema)
    return v


def has_schema(method: str) -> bool:
    """Whether :func:`validate_result` knows the result shape of ``method``."""
    return method in RESULT_SCHEMAS


def _schema_for(method: str, params: Sequence[Any] | None, pending: bool) -> dict[str, Any]:
    if method not in RESULT_SCHEMAS:
        raise KeyError(f"no result schema for {method!r}; check has_schema() first")
    if method in ("eth_getBlockByNumber", "eth_getBlockByHash") and params and len(params) > 1:
        hydrated = params[1]
        if hydrated is True:
            return BLOCK_WITH_FULL_TXS
        if hydrated is False:
            return BLOCK_WITH_TX_HASHES
    if pending and method.startswith("eth_getTransactionBy"):
        return _PENDING_TX_LOOKUP
    return RESULT_SCHEMAS[method]


def validate_result(
    method: str,
    result: object,
    *,
    params: Sequence[Any] | None = None,
    pending: bool = False,
) -> None:
    """Raise :class:`SchemaMismatch` unless ``result`` fits the spec's shape for ``method``.

    ``params`` (optional) are the request parameters; for ``eth_getBlockBy*`` the second
    one decides whether ``transactions`` must hold hashes or full objects. ``pending=True``
    lets an ``eth_getTransactionBy*`` result describe a transaction not yet in a block.
    Raises ``KeyError`` for a method without a schema.
    """
    _check(method, _schema_for(method, params, pending), result)


def validate_notification(subscription_kind: str, payload: object) -> None:
    """Check one ``eth_subscription`` payload for a ``newHeads``/``logs``/... subscription.

    ``payload`` is either the ``result`` object of the notification or its whole
    ``params`` object (``{"subscription": id, "result": ...}``).
    """
    if subscription_kind not in NOTIFICATION_SCHEMAS:
        raise KeyError(f"no notification schema for subscription kind {subscription_kind!r}")
    label = f"eth_subscription({subscription_kind})"
    if isinstance(payload, dict) and set(payload) == {"subscription", "result"}:
        _check(label, _SUBSCRIPTION_ENVELOPE, payload, root="params")
        payload = payload["result"]
    _check(label, NOTIFICATION_SCHEMAS[subscription_kind], payload)


def _check(label: str, schema: dict[str, Any], instance: object, root: str = "result") -> None:
    errors = list(_validator(schema).iter_errors(instance))
    if not errors:
        return
    problems: list[tuple[str, str]] = []
    for error in sorted(errors, key=_sort_key):
        for problem in _describe(error, root):
            if problem not in problems:
                problems.append(problem)
    raise SchemaMismatch(label, problems)


def _sort_key(error: ValidationError) -> tuple[tuple[tuple[int, int, str], ...], int]:
    """Document order: by path (array indices numerically), then by relevance."""
    steps = tuple(
        (0, part, "") if isinstance(part, int) else (1, 0, str(part))
        for part in error.absolute_path
    )
    return steps, _RELEVANCE.get(str(error.validator), 9)


# When one value breaks several rules, report the most telling one first.
_RELEVANCE = {"type": 0, "required": 1, "enum": 2, "const": 2, "pattern": 3}


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def _render_path(root: str, parts: Iterable[str | int]) -> str:
    out = root
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.match(part):
            out += f".{part}"
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _show(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return repr(value) if len(value) <= 80 else repr(value[:77] + "...")
    text = json.dumps(value, default=repr)
    return text if len(text) <= 80 else text[:77] + "..."


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _describe(error: ValidationError, root: str) -> list[tuple[str, str]]:
    """Turn one jsonschema error into (path, reason) pairs naming the failing field."""
    path = list(error.absolute_path)
    here = _render_path(root, path)
    kind = error.validator
    value = error.instance
    expected = error.validator_value

    if kind == "required" and isinstance(value, dict):
        missing = [name for name in expected if name not in value]
        return [
            (_render_path(root, [*path, name]), "required field is missing") for name in missing
        ]
    if kind == "additionalProperties" and isinstance(value, dict):
        known = set(error.schema.get("properties", {}))
        extra = [name for name in value if name not in known]
        return [
            (_render_path(root, [*path, name]), "unexpected field (the spec allows no extras here)")
            for name in extra
        ]
    if kind == "pattern":
        return [(here, f"{_show(value)} does not match {expected}")]
    if kind == "type":
        wanted = " or ".join(expected) if isinstance(expected, list) else expected
        if value is None:
            return [(here, f"null is not allowed here (expected {wanted})")]
        actual = _json_type(value)
        article = "an" if actual[0] in "aeiou" else "a"
        return [(here, f"{_show(value)} is {article} {actual}, expected {wanted}")]
    if kind == "const":
        return [(here, f"{_show(value)} is not {_show(expected)}")]
    if kind == "enum":
        options = ", ".join(_show(option) for option in expected)
        return [(here, f"{_show(value)} is not one of {options}")]
    if kind in ("minimum", "maximum"):
        bound = "below the minimum" if kind == "minimum" else "above the maximum"
        return [(here, f"{_show(value)} is {bound} {expected}")]
    if kind == "minLength":
        return [(here, f"{_show(value)} is shorter than {expected} characters")]
    return [(here, error.message)]
