"""The gateway's own precompiles: confidential random bytes, the same on every validator.

Random bytes (``RANDOM_BYTES_ADDRESS``, 0x000000000000000000000000000000000000c0c0)
-------------------------------------------------------------------------------------

Input: empty (32 bytes are returned) or exactly one 32-byte big-endian word, the number of
bytes wanted, from 0 to ``RANDOM_BYTES_MAX`` (1024). Any other input length, or a larger
request, fails the call the way a failing precompile does: the call returns ``success = 0``,
no data, and all the gas given to it is burned.

Output, inside a block (building it, and re-executing it under the "re-execute" validation
rule): that many bytes of a keyed expansion, the same in every enclave that holds the
consortium secret and nowhere else::

    key   = HKDF-SHA256(consortium secret, info=b"coco-gateway/random/v1")
    seed  = HMAC-SHA256(key, b"coco-gateway/random/v1/draw" || parent hash || number (8 bytes)
                        || timestamp (8 bytes) || transaction hash || counter (4 bytes))
    bytes = HMAC-SHA256(seed, 1 (4 bytes)) || HMAC-SHA256(seed, 2 (4 bytes)) || ...  (truncated)

``counter`` numbers the precompile's calls within the transaction from 0 (every call counts,
also one in a frame that reverts later), all integers big-endian. The bytes are a function of
the block and the transaction, so a validator that re-executes the block draws exactly what
the proposer drew and gets the same state root; they are unpredictable to anyone without the
consortium secret (hosts, clients, observers), which only attested enclaves hold. The bytes
never leave the enclave except through what the contract does with them. A host cannot read
them, but it chooses when a block is built (its timestamp, within the header rules) and can
watch a block's public effects (gas used, which transactions reverted in strict mode only to
their senders): a contract should not let a draw's outcome show in public data.

Outside a block (``eth_call``, ``eth_estimateGas``): ``secrets.token_bytes`` (the operating
system's CSPRNG), read inside the enclave that answers. Such answers differ from call to call
and from what a later transaction will draw, by design: a contract cannot be asked in advance
which number it will draw.

Gas: ``RANDOM_BYTES_BASE_GAS + RANDOM_BYTES_WORD_GAS * ceil(length / 32)``, that is 100 plus 20
per 32-byte word (120 for the default 32 bytes, 740 for 1024 bytes).

The address is well clear of Ethereum's precompiles (0x01..0x11, and 0x0100 for Osaka's
P256VERIFY; 0x0100..0x01ff is reserved for such precompiles by EIP-7587) and of the system
contracts, which sit at high, hash-like addresses.

The precompile is wired into every fork the gateway runs by ``gateway.execution.chain``, in
the way py-evm's own forks add theirs: a computation subclass whose ``_precompiles`` is its
parent's table merged with ``GATEWAY_PRECOMPILES``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

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


RANDOM_DRAW_DOMAIN = b"coco-gateway/random/v1/draw"


class BlockRandomness:
    """The random precompile's source while a block's transactions execute (module docstring).

    ``active()`` makes it the source for the executing thread (a context variable: an
    ``eth_call`` answered meanwhile on another thread keeps the OS's randomness);
    ``begin_transaction`` starts each transaction's counter at 0.
    """

    def __init__(self, key: bytes, parent_hash: bytes, number: int, timestamp: int) -> None:
        self._key = key
        self._block = bytes(parent_hash) + number.to_bytes(8, "big") + timestamp.to_bytes(8, "big")
        self._tx_hash = b"\x00" * 32
        self._counter = 0

    def begin_transaction(self, tx_hash: bytes) -> None:
        self._tx_hash = bytes(tx_hash)
        self._counter = 0

    def draw(self, length: int) -> bytes:
        seed = hmac.new(
            self._key,
            RANDOM_DRAW_DOMAIN + self._block + self._tx_hash + self._counter.to_bytes(4, "big"),
            hashlib.sha256,
        ).digest()
        self._counter += 1
        out = bytearray()
        block = 1
        while len(out) < length:
            out += hmac.new(seed, block.to_bytes(4, "big"), hashlib.sha256).digest()
            block += 1
        return bytes(out[:length])

    @contextmanager
    def active(self) -> Iterator[BlockRandomness]:
        token = _BLOCK_RANDOMNESS.set(self)
        try:
            yield self
        finally:
            _BLOCK_RANDOMNESS.reset(token)


_BLOCK_RANDOMNESS: ContextVar[BlockRandomness | None] = ContextVar(
    "gateway_block_randomness", default=None
)


def random_bytes(computation: ComputationAPI) -> ComputationAPI:
    """Precompile: ``length`` random bytes, the block's inside a block, else the OS's
    (module docstring)."""
    length = requested_length(computation.msg.data_as_bytes)
    computation.consume_gas(random_bytes_gas(length), reason="Random bytes precompile")
    source = _BLOCK_RANDOMNESS.get()
    computation.output = secrets.token_bytes(length) if source is None else source.draw(length)
    return computation


GATEWAY_PRECOMPILES: dict[Address, Callable[[ComputationAPI], ComputationAPI]] = {
    RANDOM_BYTES_ADDRESS: random_bytes,
}
