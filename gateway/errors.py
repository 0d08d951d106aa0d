"""One exception tree for everything a JSON-RPC caller can be told.

Each error carries the JSON-RPC code, a message a user can act on, and optional data.
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

    def __init__(self, message: str, data: Any = None, *, code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data
        if code is not None:
            self.code = code

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            out["data"] = self.data
        return out


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
