"""Osaka, the execution fork py-evm 0.12 does not have yet, written the way py-evm writes forks.

Each class subclasses py-evm's Prague class and states only what Osaka changes in execution:

- EIP-7939 ``CLZ`` (opcode 0x1e, 5 gas): the number of leading zero bits of a 256-bit word,
  256 for zero.
- EIP-7951 ``P256VERIFY`` (precompile 0x0100, 6900 gas): ECDSA verification over secp256r1 of a
  32-byte message hash; 160 bytes in (hash, r, s, qx, qy), 32 bytes ``1`` out when the
  signature is valid, empty output otherwise. The curve arithmetic is the ``cryptography``
  package's (OpenSSL).
- EIP-7823 and EIP-7883 ``MODEXP`` (precompile 0x05): base, exponent and modulus are each at most
  1024 bytes long (a longer one fails the call, burning its gas), and the price is at least
  500 gas, with the multiplication complexity doubled above 32 bytes and 16 iterations per
  exponent byte past the first 32.
- EIP-7825: a transaction's gas limit is at most 2**24 (16,777,216), checked against every
  transaction a block carries (the engine also refuses one at admission, as geth's pool does).
- EIP-7934: a block's RLP encoding is at most 10 MiB less a 2 MiB margin.

The Osaka changes that do not reach this node (blob transactions, EIP-7594's blob count and
EIP-7918's blob base fee) are listed, with the reason, in docs/ARCHITECTURE.md. The gateway's
own precompiles are merged in by ``gateway.execution.chain``, as for every other fork.
"""

from __future__ import annotations

import copy
from typing import Any, ClassVar

import rlp
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature
from eth import constants
from eth._utils.address import force_bytes_to_address
from eth.abc import (
    BlockAPI,
    BlockHeaderAPI,
    ComputationAPI,
    OpcodeAPI,
    SignedTransactionAPI,
)
from eth.exceptions import VMError
from eth.vm.forks.prague import PragueVM
from eth.vm.forks.prague.computation import PragueComputation
from eth.vm.forks.prague.opcodes import PRAGUE_OPCODES
from eth.vm.forks.prague.state import PragueState
from eth.vm.opcode import as_opcode
from eth_utils import ValidationError
from eth_utils.toolz import merge

# ---------------------------------------------------------------- EIP-7939: CLZ

CLZ = 0x1E
CLZ_GAS = constants.GAS_LOW  # 5, like the other cheap bit operations


def clz(computation: ComputationAPI) -> None:
    """Replace the top of the stack with its count of leading zero bits (256 for zero)."""
    value = computation.stack_pop1_int()
    computation.stack_push_int(256 - value.bit_length())


OSAKA_OPCODES: dict[int, OpcodeAPI] = merge(
    copy.deepcopy(PRAGUE_OPCODES),
    {CLZ: as_opcode(logic_fn=clz, mnemonic="CLZ", gas_cost=CLZ_GAS)},
)

# ---------------------------------------------------------------- EIP-7951: P256VERIFY

P256VERIFY_ADDRESS = force_bytes_to_address(b"\x01\x00")
P256VERIFY_GAS = 6900
P256VERIFY_INPUT_LENGTH = 160
P256VERIFY_VALID = (1).to_bytes(32, "big")
SECP256R1_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
SECP256R1_P = 0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF


def p256_signature_is_valid(data: bytes) -> bool:
    """Whether ``data`` is (hash, r, s, qx, qy) with a valid signature, by EIP-7951's checks."""
    if len(data) != P256VERIFY_INPUT_LENGTH:
        return False
    message_hash = data[:32]
    r, s, qx, qy = (int.from_bytes(data[i : i + 32], "big") for i in range(32, 160, 32))
    if not (0 < r < SECP256R1_N and 0 < s < SECP256R1_N):
        return False
    if not (qx < SECP256R1_P and qy < SECP256R1_P) or (qx == 0 and qy == 0):
        return False
    try:
        # refuses a point that is not on the curve
        key = ec.EllipticCurvePublicNumbers(qx, qy, ec.SECP256R1()).public_key()
    except ValueError:
        return False
    try:
        key.verify(encode_dss_signature(r, s), message_hash, ec.ECDSA(Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return False
    return True


def p256verify(computation: ComputationAPI) -> ComputationAPI:
    """Precompile: 32-byte 1 for a valid P-256 signature, empty output for anything else.

    The gas is charged whatever the input; an invalid input is not an error of the call.
    """
    computation.consume_gas(P256VERIFY_GAS, reason="P256VERIFY precompile")
    valid = p256_signature_is_valid(computation.msg.data_as_bytes)
    computation.output = P256VERIFY_VALID if valid else b""
    return computation


# ---------------------------------------------------------------- EIP-7823 / EIP-7883: MODEXP

MODEXP_ADDRESS = force_bytes_to_address(b"\x05")
MODEXP_MAX_LENGTH = 1024  # bytes, for each of base, exponent and modulus (EIP-7823)
MODEXP_MIN_GAS = 500


class ModexpInputTooLong(VMError):
    """A MODEXP operand is longer than EIP-7823 allows; the call fails and burns its gas."""


def _read(data: bytes, start: int, length: int) -> bytes:
    """``length`` bytes of ``data`` from ``start``, zero-padded past its end (EVM call data)."""
    return data[start : start + length].ljust(length, b"\x00")


def modexp_lengths(data: bytes) -> tuple[int, int, int]:
    """The base, exponent and modulus lengths that open a MODEXP input."""
    b, e, m = (int.from_bytes(_read(data, i, 32), "big") for i in (0, 32, 64))
    return b, e, m


def modexp_gas(base_length: int, exponent_length: int, modulus_length: int, exp_head: int) -> int:
    """EIP-7883's price; ``exp_head`` is the exponent's first (at most) 32 bytes as a number."""
    max_length = max(base_length, modulus_length)
    words = (max_length + 7) // 8
    complexity = 2 * words**2 if max_length > 32 else 16
    head_bits = max(exp_head.bit_length() - 1, 0)
    iterations = head_bits if exponent_length <= 32 else 16 * (exponent_length - 32) + head_bits
    return max(MODEXP_MIN_GAS, complexity * max(iterations, 1))


def modexp(computation: ComputationAPI) -> ComputationAPI:
    """Precompile: base ** exponent % modulus, as long as the modulus (Osaka's rules)."""
    data = computation.msg.data_as_bytes
    base_length, exponent_length, modulus_length = modexp_lengths(data)
    if max(base_length, exponent_length, modulus_length) > MODEXP_MAX_LENGTH:
        raise ModexpInputTooLong(
            f"MODEXP operands are limited to {MODEXP_MAX_LENGTH} bytes each; got base "
            f"{base_length}, exponent {exponent_length}, modulus {modulus_length}"
        )
    exp_start = 96 + base_length
    exp_head = int.from_bytes(_read(data, exp_start, min(exponent_length, 32)), "big")
    computation.consume_gas(
        modexp_gas(base_length, exponent_length, modulus_length, exp_head),
        reason="MODEXP precompile",
    )
    if base_length == 0 and modulus_length == 0:
        computation.output = b""
        return computation
    base = int.from_bytes(_read(data, 96, base_length), "big")
    exponent = int.from_bytes(_read(data, exp_start, exponent_length), "big")
    modulus = int.from_bytes(_read(data, exp_start + exponent_length, modulus_length), "big")
    result = 0 if modulus == 0 else pow(base, exponent, modulus)
    computation.output = result.to_bytes(modulus_length, "big")
    return computation


# ---------------------------------------------------------------- EIP-7825, EIP-7934

TX_GAS_LIMIT_CAP = 2**24
MAX_BLOCK_SIZE = 10_485_760
SAFETY_MARGIN = 2_097_152
MAX_RLP_BLOCK_SIZE = MAX_BLOCK_SIZE - SAFETY_MARGIN


def transaction_gas_limit_cap(vm_class: type[Any]) -> int | None:
    """The largest gas limit a transaction may carry under ``vm_class`` (None: no cap)."""
    cap = getattr(vm_class, "tx_gas_limit_cap", None)
    return cap if isinstance(cap, int) else None


def gas_limit_too_high(gas: int, cap: int) -> str:
    """geth's words for a transaction over the cap (core.ErrGasLimitTooHigh)."""
    return f"transaction gas limit too high (cap: {cap}, tx: {gas})"


# ---------------------------------------------------------------- the fork


class OsakaComputation(PragueComputation):
    """Prague's computation with CLZ, P256VERIFY and Osaka's MODEXP."""

    opcodes = OSAKA_OPCODES
    _precompiles = merge(
        PragueComputation.get_precompiles(),
        {MODEXP_ADDRESS: modexp, P256VERIFY_ADDRESS: p256verify},
    )


class OsakaState(PragueState):
    computation_class = OsakaComputation


class OsakaVM(PragueVM):
    fork = "osaka"
    _state_class = OsakaState
    tx_gas_limit_cap: ClassVar[int] = TX_GAS_LIMIT_CAP

    def validate_transaction_against_header(
        self, base_header: BlockHeaderAPI, transaction: SignedTransactionAPI
    ) -> None:
        super().validate_transaction_against_header(base_header, transaction)
        if transaction.gas > TX_GAS_LIMIT_CAP:
            raise ValidationError(gas_limit_too_high(transaction.gas, TX_GAS_LIMIT_CAP))

    def validate_block(self, block: BlockAPI) -> None:
        super().validate_block(block)
        size = len(rlp.encode(block))
        if size > MAX_RLP_BLOCK_SIZE:
            raise ValidationError(
                f"block RLP size {size} is over the limit of {MAX_RLP_BLOCK_SIZE} (EIP-7934)"
            )
