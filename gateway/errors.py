"""One exception tree for everything a JSON-RPC caller can be told.

Each error carries the JSON-RPC code, a message a user can act on, and optional data.
An error that a program should act on also carries a stable ``reason`` code (and typed
fields beside it) in its data, ``{"reason": "...", ...}``: code decides on that, never on the
English text of the message.
Internal exceptions never reach a caller: the dispatcher turns anything that is not a
``RpcError`` into a generic internal error and logs the detail on the node.
"""

from __future__ import annotations

from typing import Any

# JSON-RPC 2.0 codes
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Ethereum conventions (geth, EIP-1474)
SERVER_ERROR = -32000  # pool rejections, "filter not found", "header not found", ...
RESOURCE_NOT_FOUND = -32001
UNAUTHORIZED = -32002
LIMIT_EXCEEDED = -32005
EXECUTION_REVERTED = 3


class RpcError(Exception):
    """An error meant for the caller: code, message, optional data."""

    code: int = INTERNAL_ERROR

    def __init__(
        self,
        message: str,
        data: Any = None,
        *,
        code: int | None = None,
        reason: str | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        if reason is not None:
            data = {"reason": reason, **fields}
        self.data = data
        if code is not None:
            self.code = code

    @property
    def reason_code(self) -> str | None:
        """The stable machine-readable reason in ``data`` (None when there is none)."""
        return reason_of(self.data)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


def reason_of(data: Any) -> str | None:
    """The ``reason`` code of an error's ``data`` as it travels in JSON-RPC."""
    if isinstance(data, dict) and isinstance(data.get("reason"), str):
        return str(data["reason"])
    return None


class ParseError(RpcError):
    code = PARSE_ERROR


class InvalidRequest(RpcError):
    code = INVALID_REQUEST


class MethodNotFound(RpcError):
    code = METHOD_NOT_FOUND

    def __init__(self, method: str) -> None:
        super().__init__(f"the method {method} does not exist/is not available")


class InvalidParams(RpcError):
    code = INVALID_PARAMS


class InternalError(RpcError):
    code = INTERNAL_ERROR


class ServerError(RpcError):
    """geth's -32000: rejected transactions, missing headers, unknown filters."""

    code = SERVER_ERROR


class AccountStateRefusal(ServerError):
    """A refusal whose geth text tells an account's balance or nonce (``message``), with the
    same refusal told without them (``private``), for a caller who may not know them; the
    enclave decides which one a caller gets."""

    def __init__(self, message: str, private: str, account: bytes) -> None:
        super().__init__(message)
        self.private = private
        self.account = account  # whose balance or nonce ``message`` tells


class Unauthorized(RpcError):
    code = UNAUTHORIZED


class LimitExceeded(RpcError):
    code = LIMIT_EXCEEDED


class ExecutionReverted(RpcError):
    """A revert in eth_call / eth_estimateGas: code 3, data is the revert bytes (0x-hex)."""

    code = EXECUTION_REVERTED

    def __init__(self, reason: str | None, revert_data: bytes) -> None:
        message = f"execution reverted: {reason}" if reason else "execution reverted"
        super().__init__(message, "0x" + revert_data.hex())
        self.reason = reason
        self.revert_data = revert_data


class BlockRefused(InvalidParams):
    """A block from another node (a proposal's, or a finalized one being imported) that this
    enclave refuses. Always carries a ``reason``: "not-next", "unknown-parent", "bad-header",
    "bad-body", "bad-diff", "header-mismatch", "state-root-mismatch", "bad-block",
    "bad-seals", "conflicting-block" (gateway/enclave/blocks.py)."""

    def __init__(self, reason: str, message: str, **fields: Any) -> None:
        super().__init__(message, reason=reason, **fields)


class SnapshotRefused(InvalidParams):
    """A sealed snapshot (or one chunk of it) that this enclave refuses to export or to open.
    Always carries a ``reason`` (gateway/enclave/snapshot.py): "bad-snapshot-chunk",
    "bad-snapshot-row", "snapshot-out-of-order", "snapshot-incomplete", "no-snapshot",
    "wrong-genesis", "broken-chain", "bad-seals", "state-root-missing",
    "snapshot-not-ahead", "snapshot-expired", "snapshot-busy", "bad-cursor",
    "not-a-consortium", "bad-governance" (a snapshot block's governance section does not fit
    its header)."""

    def __init__(self, reason: str, message: str, **fields: Any) -> None:
        super().__init__(message, reason=reason, **fields)
