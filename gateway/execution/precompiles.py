"""The gateway's own precompiles: confidential random bytes from the enclave's CSPRNG.

Random bytes (``RANDOM_BYTES_ADDRESS``, 0x000000000000000000000000000000000000c0c0)
-------------------------------------------------------------------------------------

Input: empty (32 bytes are returned) or exactly one 32-byte big-endian word, the number of
bytes wanted, from 0 to ``RANDOM_BYTES_MAX`` (1024). Any other input length, or a larger
request, fails the call the way a failing precompile does: the call returns ``success = 0``,
no data, and all the gas given to it is burned.

Output: that many bytes from ``secrets.token_bytes`` (the operating system's CSPRNG), read
inside the enclave that executes the call. Nothing the caller, the host or another validator
knows predicts them.

Gas: ``RANDOM_BYTES_BASE_GAS + RANDOM_BYTES_WORD_GAS * ceil(length / 32)``, that is 100 plus 20
per 32-byte word (120 for the default 32 bytes, 740 for 1024 bytes).

The address is well clear of Ethereum's precompiles (0x01..0x11, and 0x0100 for Osaka's
P256VERIFY; 0x0100..0x01ff is reserved for such precompiles by EIP-7587) and of the system
contracts, which sit at high, hash-like addresses.

What it means for the chain: the result is not a function of the block. Only the validator
whose enclave builds a block runs its transactions; the consortium accepts that block's state
as produced (followers apply its state changes; they must not re-execute it, which would draw
different bytes and a different state root). For the same reason ``eth_call`` and
``eth_estimateGas`` answers that touch this precompile differ from call to call, and from what
a later transaction will see, by design: a contract cannot be asked in advance which number it
will draw.

The precompile is wired into every fork the gateway runs by ``gateway.execution.chain``, in
the way py-evm's own forks add theirs: a computation subclass whose ``_precompiles`` is its
parent's table merged with ``GATEWAY_PRECOMPILES``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

from eth._utils.numeric import ceil32
from eth.abc import ComputationAPI
from eth.exceptions import VMError
from eth_typing import Address

RANDOM_BYTES_ADDRESS = Address(bytes.fromhex("000000000000000000000000000000000000c0c0"))
RANDOM_BYTES_DEFAULT = 32
RANDOM_BYTES_MAX = 1024
RANDOM_BYTES_BASE_GAS = 100
RANDOM_BYTES_WORD_GAS = 20


class RandomBytesRequestInvalid(VMError):
    """The input to the random-bytes precompile is malformed or asks for too much.

    A ``VMError``, so py-evm fails the call and burns its gas, as for any failing precompile.
    """


def random_bytes_gas(length: int) -> int:
    """The gas the random-bytes precompile charges for ``length`` bytes."""
    return RANDOM_BYTES_BASE_GAS + RANDOM_BYTES_WORD_GAS * (ceil32(length) // 32)


def requested_length(data: bytes) -> int:
    """The number of bytes a random-bytes input asks for; raises if it is not a valid input."""
    if not data:
        return RANDOM_BYTES_DEFAULT
    if len(data) != 32:
        raise RandomBytesRequestInvalid(
            f"random-bytes input must be empty or one 32-byte word (the length); "
            f"got {len(data)} bytes"
        )
    length = int.from_bytes(data, "big")
    if length > RANDOM_BYTES_MAX:
        raise RandomBytesRequestInvalid(
            f"random-bytes request of {length} bytes is over the cap of {RANDOM_BYTES_MAX}"
        )
    return length


def random_bytes(computation: ComputationAPI) -> ComputationAPI:
    """Precompile: ``length`` bytes from the enclave's CSPRNG (module docstring)."""
    length = requested_length(computation.msg.data_as_bytes)
    computation.consume_gas(random_bytes_gas(length), reason="Random bytes precompile")
    computation.output = secrets.token_bytes(length)
    return computation


GATEWAY_PRECOMPILES: dict[Address, Callable[[ComputationAPI], ComputationAPI]] = {
    RANDOM_BYTES_ADDRESS: random_bytes,
}
