"""Revert data and VM failures, in the words geth uses for them."""

from __future__ import annotations

from eth_abi import decode

ERROR_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)

# Solidity's panic codes and geth's wording for them
PANIC_REASONS = {
    0x00: "generic panic",
    0x01: "assert(false)",
    0x11: "arithmetic underflow or overflow",
    0x12: "division or modulo by zero",
    0x21: "enum overflow",
    0x22: "invalid encoded storage byte array accessed",
    0x31: "out-of-bounds array access; popping on an empty array",
    0x32: "out-of-bounds access of an array or bytesN",
    0x41: "out of memory",
    0x51: "uninitialized function",
}

VM_ERRORS = {
    "OutOfGas": "out of gas",
    "InsufficientStack": "stack underflow",
    "FullStack": "stack limit reached 1024",
    "InvalidJumpDestination": "invalid jump destination",
    "InvalidInstruction": "invalid opcode",
    "InsufficientFunds": "insufficient balance for transfer",
    "StackDepthLimit": "max call depth exceeded",
    "ContractCreationCollision": "contract address collision",
    "WriteProtection": "write protection",
    "OutOfBoundsRead": "return data out of bounds",
    "ReservedBytesInCode": "invalid code: must not begin with 0xef",
    "ModexpInputTooLong": "MODEXP operand longer than 1024 bytes (EIP-7823)",
    "RandomBytesRequestInvalid": (
        "invalid random-bytes request: pass no input (32 bytes) or one 32-byte length "
        "of at most 1024"
    ),
}


def decode_revert_reason(output: bytes) -> str | None:
    """The human reason in revert data, or None for custom errors and bare reverts."""
    try:
        if output[:4] == ERROR_SELECTOR:
            (reason,) = decode(["string"], output[4:])
            return str(reason)
        if output[:4] == PANIC_SELECTOR:
            (code,) = decode(["uint256"], output[4:])
            text = PANIC_REASONS.get(int(code), "unknown panic code")
            return f"{text} (0x{int(code):x})"
    except Exception:
        return None
    return None


def vm_error_message(error: object) -> str:
    return VM_ERRORS.get(type(error).__name__, "execution failed")
