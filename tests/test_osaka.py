"""Osaka, the default fork: CLZ, P256VERIFY, MODEXP's bounds and price, the transaction gas cap.

The py-evm tests run the forks the node runs (``gateway.execution.chain.FORKS``) directly; the
node tests deploy contracts compiled by solc-js for each target on an Osaka node (the default)
and on a ``--fork prague`` node, over JSON-RPC.
"""

from __future__ import annotations

import hashlib
import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from artifacts import REPO_ROOT, load_artifact
from conftest import DEV_KEYS, NodeProcess, rpc
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import (
    Prehashed,
    decode_dss_signature,
)
from eth.exceptions import InvalidInstruction
from eth_account import Account
from eth_utils import ValidationError
from evm_support import CHAIN_ID, SENDER_KEY, new_chain, run_message
from test_web3_e2e import deploy, send
from web3 import Web3
from web3.exceptions import Web3RPCError

from gateway.enclave import messages
from gateway.execution import chain as gateway_chain
from gateway.execution.chain import FORKS, GenesisSpec
from gateway.execution.osaka import (
    MAX_RLP_BLOCK_SIZE,
    MODEXP_ADDRESS,
    P256VERIFY_ADDRESS,
    P256VERIFY_GAS,
    SECP256R1_N,
    SECP256R1_P,
    TX_GAS_LIMIT_CAP,
    modexp_gas,
)

OWNER = Account.from_key(DEV_KEYS[0])
CODE_AT = bytes.fromhex("11" * 20)
GWEI = 10**9
PRE_OSAKA = ("shanghai", "cancun", "prague")


def word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def execute(
    fork: str, to: bytes, data: bytes = b"", code: bytes = b"", gas: int = 1_000_000
) -> Any:
    """One message run by ``fork``'s VM, as a CALL into ``to`` (a precompile or ``code``)."""
    return run_message(new_chain(fork), to, data, code, gas)


# ---------------------------------------------------------------- the fork table


def test_osaka_is_the_default_and_prague_stays_selectable() -> None:
    assert gateway_chain.DEFAULT_FORK == "osaka" == messages.DEFAULT_FORK
    assert GenesisSpec(chain_id=1).fork == "osaka"
    # the host names the forks without importing the execution room: the two lists agree
    assert tuple(FORKS) == messages.FORK_NAMES
    assert FORKS["osaka"].fork == "osaka" and FORKS["prague"].fork == "prague"


# ---------------------------------------------------------------- EIP-7939: CLZ


def clz_code(x: int) -> bytes:
    """PUSH32 x; CLZ; PUSH0; MSTORE; PUSH1 32; PUSH0; RETURN."""
    return b"\x7f" + word(x) + bytes.fromhex("1e5f5260205ff3")


CLZ_CASES = [0, 1, 2, 3, 0x80, 0xFF, 2**128, 2**255 - 1, 2**255, 2**256 - 1] + [
    random.Random(7939).getrandbits(bits) | 1 << (bits - 1) for bits in (17, 64, 160, 255)
]


@pytest.mark.parametrize("x", CLZ_CASES, ids=lambda x: f"bits{x.bit_length()}")
def test_clz_counts_the_leading_zero_bits_of_a_word(x: int) -> None:
    computation = execute("osaka", CODE_AT, code=clz_code(x))
    assert computation.is_success
    expected = 256 if x == 0 else format(x, "0256b").index("1")
    assert int.from_bytes(computation.output, "big") == expected


def test_clz_costs_five_gas() -> None:
    # PUSH32 (3) + CLZ (5) + STOP, against PUSH32 (3) + POP (2) + STOP
    with_clz = execute("osaka", CODE_AT, code=b"\x7f" + word(9) + b"\x1e\x00")
    with_pop = execute("osaka", CODE_AT, code=b"\x7f" + word(9) + b"\x50\x00")
    assert with_clz.get_gas_used() == 8
    assert with_clz.get_gas_used() - with_pop.get_gas_used() == 5 - 2


def test_clz_on_an_empty_stack_fails() -> None:
    computation = execute("osaka", CODE_AT, code=b"\x1e", gas=50_000)
    assert computation.is_error and type(computation.error).__name__ == "InsufficientStack"


@pytest.mark.parametrize("fork", PRE_OSAKA)
def test_clz_is_an_invalid_opcode_before_osaka(fork: str) -> None:
    computation = execute(fork, CODE_AT, code=clz_code(1), gas=50_000)
    assert computation.is_error and isinstance(computation.error, InvalidInstruction)
    assert computation.get_gas_remaining() == 0  # an invalid opcode burns the call's gas


# ---------------------------------------------------------------- EIP-7951: P256VERIFY

P256_KEY = ec.derive_private_key(
    int.from_bytes(hashlib.sha256(b"coco p256 test key").digest(), "big"), ec.SECP256R1()
)
P256_PUBLIC = P256_KEY.public_key().public_numbers()
P256_HASH = hashlib.sha256(b"coco gateway osaka").digest()


def p256_input(
    message_hash: bytes = P256_HASH,
    r: int | None = None,
    s: int | None = None,
    qx: int = P256_PUBLIC.x,
    qy: int = P256_PUBLIC.y,
) -> bytes:
    if r is None or s is None:
        sig_r, sig_s = decode_dss_signature(
            P256_KEY.sign(P256_HASH, ec.ECDSA(Prehashed(hashes.SHA256())))
        )
        r = sig_r if r is None else r
        s = sig_s if s is None else s
    return message_hash + word(r) + word(s) + word(qx) + word(qy)


def p256(data: bytes, fork: str = "osaka", gas: int = 100_000) -> Any:
    return execute(fork, P256VERIFY_ADDRESS, data, gas=gas)


def test_p256verify_accepts_a_valid_signature_for_6900_gas() -> None:
    computation = p256(p256_input())
    assert computation.is_success
    assert computation.output == word(1)
    assert computation.get_gas_used() == P256VERIFY_GAS == 6900


# The valid vector of RIP-7212 that EIP-7951 kept (geth's core/vm/contracts_test.go uses it
# too): sha256 hash, r, s, qx, qy.
RIP7212_VECTOR = bytes.fromhex(
    "4cee90eb86eaa050036147a12d49004b6b9c72bd725d39d4785011fe190f0b4d"
    "a73bd4903f0ce3b639bbbf6e8e80d16931ff4bcf5993d58468e8fb19086e8cac"
    "36dbcd03009df8c59286b162af3bd7fcc0450c9aa81be5d10d312af6c66b1d60"
    "4aebd3099c618202fcfe16ae7770b0c49ab5eadf74b754204a3bb6060e44eff3"
    "7618b065f9832de4ca6ca971a7a1adc826d0f7c00181a5fb2ddf79ae00b4e10e"
)


def test_p256verify_accepts_the_published_vector_and_not_a_changed_one() -> None:
    assert p256(RIP7212_VECTOR).output == word(1)
    for index in (0, 40, 70, 100, 159):  # the hash, r, s, qx, qy
        changed = bytearray(RIP7212_VECTOR)
        changed[index] ^= 1
        assert p256(bytes(changed)).output == b"", index


def test_p256verify_accepts_the_high_s_twin_of_a_signature() -> None:
    # EIP-7951 adds no malleability check: (r, n - s) verifies as (r, s) does
    r, s = decode_dss_signature(P256_KEY.sign(P256_HASH, ec.ECDSA(Prehashed(hashes.SHA256()))))
    assert p256(p256_input(r=r, s=SECP256R1_N - s)).output == word(1)


def not_on_curve_y() -> int:
    return (P256_PUBLIC.y + 1) % SECP256R1_P


INVALID_P256 = {
    "other hash": lambda: p256_input(message_hash=hashlib.sha256(b"other").digest()),
    "r zero": lambda: p256_input(r=0),
    "r equal to n": lambda: p256_input(r=SECP256R1_N),
    "s zero": lambda: p256_input(s=0),
    "s equal to n": lambda: p256_input(s=SECP256R1_N),
    "qx equal to p": lambda: p256_input(qx=SECP256R1_P),
    "qy above p": lambda: p256_input(qy=2**256 - 1),
    "point not on the curve": lambda: p256_input(qy=not_on_curve_y()),
    "point at infinity": lambda: p256_input(qx=0, qy=0),
    "other key": lambda: p256_input(
        qx=ec.generate_private_key(ec.SECP256R1()).public_key().public_numbers().x
    ),
    "empty": lambda: b"",
    "159 bytes": lambda: p256_input()[:159],
    "161 bytes": lambda: p256_input() + b"\x00",
    "320 bytes": lambda: p256_input() * 2,
}


@pytest.mark.parametrize("case", sorted(INVALID_P256))
def test_p256verify_answers_empty_output_for_anything_invalid(case: str) -> None:
    computation = p256(INVALID_P256[case]())
    assert computation.is_success  # an invalid signature is an answer, not a failed call
    assert computation.output == b""
    assert computation.get_gas_used() == P256VERIFY_GAS


def test_p256verify_without_its_gas_fails_the_call() -> None:
    computation = p256(p256_input(), gas=P256VERIFY_GAS - 1)
    assert computation.is_error and computation.get_gas_remaining() == 0


@pytest.mark.parametrize("fork", PRE_OSAKA)
def test_before_osaka_0x100_is_an_empty_account(fork: str) -> None:
    computation = p256(p256_input(), fork=fork)
    assert computation.is_success and computation.output == b"" and computation.get_gas_used() == 0


def test_the_osaka_precompiles_are_warm_from_the_start() -> None:
    state = new_chain("osaka").get_vm().state
    assert state.is_address_warm(P256VERIFY_ADDRESS)
    assert state.is_address_warm(MODEXP_ADDRESS)


# ---------------------------------------------------------------- EIP-7823 / EIP-7883: MODEXP


def modexp_input(base: bytes, exponent: bytes, modulus: bytes) -> bytes:
    return word(len(base)) + word(len(exponent)) + word(len(modulus)) + base + exponent + modulus


def modexp(data: bytes, fork: str = "osaka", gas: int = 5_000_000) -> Any:
    return execute(fork, MODEXP_ADDRESS, data, gas=gas)


# EIP-7883's table for the nagydani vectors: base and modulus of 64 * 2**(k-1) bytes, exponent
# 2, 3 or 0x010001. The price depends only on those lengths and the exponent.
NAGYDANI = {
    (1, "square"): 500, (1, "qube"): 500, (1, "pow0x10001"): 2048,
    (2, "square"): 512, (2, "qube"): 512, (2, "pow0x10001"): 8192,
    (3, "square"): 2048, (3, "qube"): 2048, (3, "pow0x10001"): 32768,
    (4, "square"): 8192, (4, "qube"): 8192, (4, "pow0x10001"): 131072,
    (5, "square"): 32768, (5, "qube"): 32768, (5, "pow0x10001"): 524288,
}  # fmt: skip
EXPONENTS = {"square": b"\x02", "qube": b"\x03", "pow0x10001": b"\x01\x00\x01"}


@pytest.mark.parametrize("case", sorted(NAGYDANI), ids=lambda c: f"nagydani_{c[0]}_{c[1]}")
def test_modexp_price_matches_eip7883s_table(case: tuple[int, str]) -> None:
    k, name = case
    size = 64 * 2 ** (k - 1)
    rng = random.Random(k)
    base = rng.randbytes(size)
    modulus = b"\xff" + rng.randbytes(size - 1)
    exponent = EXPONENTS[name]
    computation = modexp(modexp_input(base, exponent, modulus))
    assert computation.is_success
    assert computation.get_gas_used() == NAGYDANI[case]
    expected = pow(
        int.from_bytes(base, "big"), int.from_bytes(exponent, "big"), int.from_bytes(modulus, "big")
    )
    assert computation.output == expected.to_bytes(size, "big")


def test_modexp_price_of_a_long_exponent_counts_16_per_byte() -> None:
    # 32-byte operands: complexity 16; a 40-byte exponent whose first 32 bytes are 1:
    # 16 * (40 - 32) + 0 = 128 iterations
    exponent = word(1) + b"\x00" * 8
    assert modexp_gas(32, 40, 32, 1) == 16 * 128
    computation = modexp(modexp_input(word(3), exponent, word(2**255 + 1)))
    assert computation.get_gas_used() == 2048


def test_modexp_costs_at_least_500_and_prague_keeps_its_200() -> None:
    small = modexp_input(b"\x02", b"\x02", b"\x05")
    assert modexp(small).get_gas_used() == 500
    assert modexp(small, fork="prague").get_gas_used() == 200
    assert modexp(small).output == modexp(small, fork="prague").output == b"\x04"


@pytest.mark.parametrize("operand", ["base", "exponent", "modulus"])
def test_modexp_operands_over_1024_bytes_fail_the_call(operand: str) -> None:
    lengths = {"base": 1, "exponent": 1, "modulus": 1, operand: 1025}
    parts = {name: b"\x03" * length for name, length in lengths.items()}
    data = modexp_input(parts["base"], parts["exponent"], parts["modulus"])
    computation = modexp(data, gas=3_000_000)
    assert computation.is_error and type(computation.error).__name__ == "ModexpInputTooLong"
    assert computation.get_gas_remaining() == 0
    # Prague had no bound: the same input is priced and computed
    assert modexp(data, fork="prague", gas=30_000_000).is_success
    # 1024 bytes is still allowed
    parts[operand] = b"\x03" * 1024
    fits = modexp(modexp_input(parts["base"], parts["exponent"], parts["modulus"]))
    assert fits.is_success


def test_modexp_lengths_read_past_the_input_as_zeros_and_huge_ones_fail_cheaply() -> None:
    # a declared length of 2**255 is refused before any price is computed
    huge = word(2**255) + word(1) + word(1)
    computation = modexp(huge, gas=100_000)
    assert computation.is_error and computation.get_gas_remaining() == 0
    # no operands at all: empty output for the minimum price
    empty = modexp(b"")
    assert empty.is_success and empty.output == b"" and empty.get_gas_used() == 500


def test_modexp_zero_modulus_and_zero_exponent() -> None:
    assert modexp(modexp_input(b"\x07", b"\x05", b"\x00\x00")).output == b"\x00\x00"
    # 0 ** 0 mod 5 is 1, also with an empty base
    assert modexp(modexp_input(b"", b"\x00", b"\x05")).output == b"\x01"


# ---------------------------------------------------------------- EIP-7825: the gas cap


def signed_transfer(chain: Any, gas: int, nonce: int = 0) -> Any:
    vm = chain.get_vm()
    unsigned = vm.create_unsigned_transaction(
        nonce=nonce, gas_price=10 * GWEI, gas=gas, to=CODE_AT, value=1, data=b""
    )
    return unsigned.as_signed_transaction(SENDER_KEY, chain_id=CHAIN_ID)


def test_a_block_may_not_carry_a_transaction_over_the_cap() -> None:
    chain = new_chain("osaka")
    vm = chain.get_vm()
    header = vm.get_header()
    over = signed_transfer(chain, TX_GAS_LIMIT_CAP + 1)
    with pytest.raises(ValidationError, match=r"cap: 16777216, tx: 16777217"):
        vm.apply_transaction(header, over)
    receipt, computation = vm.apply_transaction(header, signed_transfer(chain, TX_GAS_LIMIT_CAP))
    assert computation.is_success and receipt.gas_used == 21_000


def test_prague_has_no_transaction_gas_cap() -> None:
    chain = new_chain("prague")
    vm = chain.get_vm()
    _receipt, computation = vm.apply_transaction(
        vm.get_header(), signed_transfer(chain, TX_GAS_LIMIT_CAP + 1)
    )
    assert computation.is_success


def test_the_block_size_cap_is_ten_mib_less_the_margin() -> None:
    assert MAX_RLP_BLOCK_SIZE == 10 * 2**20 - 2 * 2**20


# ---------------------------------------------------------------- on a node

CONTRACTS = REPO_ROOT / "contracts"


def compile_with_solc_js(evm_version: str, names: list[str]) -> dict[str, dict[str, Any]]:
    """Compile contracts/src/<name>.sol with the pinned solc-js for ``evm_version``."""
    sources = {
        f"src/{name}.sol": {"content": (CONTRACTS / "src" / f"{name}.sol").read_text()}
        for name in names
    }
    standard_input = {
        "language": "Solidity",
        "sources": sources,
        "settings": {
            "evmVersion": evm_version,
            "optimizer": {"enabled": True, "runs": 200},
            "outputSelection": {"*": {"*": ["abi", "evm.bytecode.object"]}},
        },
    }
    result = subprocess.run(
        ["node", str(CONTRACTS / "solc-compile.js")],
        input=json.dumps(standard_input),
        capture_output=True,
        text=True,
        cwd=CONTRACTS,
        timeout=300,
        check=True,
    )
    output = json.loads(result.stdout)
    errors = [e for e in output.get("errors", []) if e["severity"] == "error"]
    if errors:
        raise AssertionError("\n".join(e["formattedMessage"] for e in errors))
    return {
        name: {
            "abi": compiled["abi"],
            "bytecode": "0x" + compiled["evm"]["bytecode"]["object"],
        }
        for contracts in output["contracts"].values()
        for name, compiled in contracts.items()
    }


def deploy_compiled(w3: Web3, compiled: dict[str, Any], *args: Any) -> Any:
    factory = w3.eth.contract(abi=compiled["abi"], bytecode=compiled["bytecode"])
    tx = factory.constructor(*args).build_transaction(
        {"from": OWNER.address, "nonce": w3.eth.get_transaction_count(OWNER.address, "pending")}
    )
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_raw_transaction(OWNER.sign_transaction(tx).raw_transaction),
        timeout=30,
        poll_latency=0.05,
    )
    assert receipt.status == 1
    return w3.eth.contract(address=receipt.contractAddress, abi=compiled["abi"])


@pytest.fixture(scope="module")
def prague_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("prague") / "data", "--fork", "prague").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def prague_w3(prague_node: NodeProcess) -> Web3:
    return Web3(Web3.HTTPProvider(prague_node.url, request_kwargs={"timeout": 60}))


def test_solc_compiles_clz_only_for_osaka() -> None:
    assert load_artifact("BitMath")["compiler"]["settings"]["evmVersion"] == "osaka"
    with pytest.raises(AssertionError, match="only available for Osaka"):
        compile_with_solc_js("prague", ["BitMath"])


def test_a_contract_using_clz_runs_on_the_osaka_node(w3: Web3) -> None:
    bitmath = deploy(w3, "BitMath")
    for x in CLZ_CASES:
        assert bitmath.functions.leadingZeros(x).call() == 256 - x.bit_length()
        assert bitmath.functions.bitLength(x).call() == x.bit_length()
    assert bitmath.functions.log2(2**200 + 5).call() == 200
    # a transaction runs it too: estimate, send, mine
    receipt = send(w3, bitmath.functions.log2(12345))
    assert receipt.status == 1


def test_a_contract_using_clz_fails_with_invalid_opcode_on_a_prague_node(
    prague_w3: Web3, prague_node: NodeProcess
) -> None:
    art = load_artifact("BitMath")
    bitmath = deploy_compiled(prague_w3, art)  # its constructor does not use CLZ
    data = bitmath.encode_abi("leadingZeros", [1])
    answer = rpc(prague_node.url, "eth_call", [{"to": bitmath.address, "data": data}, "latest"])
    assert answer["error"]["message"] == "invalid opcode"


def test_contracts_compiled_for_prague_run_on_a_prague_node(prague_w3: Web3) -> None:
    compiled = compile_with_solc_js("prague", ["Token", "Events"])
    token = deploy_compiled(prague_w3, compiled["Token"], "Prague Token", "PRG", 10**24)
    assert token.functions.symbol().call() == "PRG"
    other = Account.from_key(DEV_KEYS[1]).address
    tx = token.functions.transfer(other, 7).build_transaction(
        {"from": OWNER.address, "nonce": prague_w3.eth.get_transaction_count(OWNER.address)}
    )
    receipt = prague_w3.eth.wait_for_transaction_receipt(
        prague_w3.eth.send_raw_transaction(OWNER.sign_transaction(tx).raw_transaction),
        timeout=30,
        poll_latency=0.05,
    )
    assert receipt.status == 1
    assert token.functions.balanceOf(other).call() == 7
    events = deploy_compiled(prague_w3, compiled["Events"])
    assert events.functions.echo(b"prague").call() == b"prague"


def test_p256verify_answers_on_the_osaka_node_and_not_on_prague(
    node: NodeProcess, prague_node: NodeProcess
) -> None:
    call = {"to": "0x" + P256VERIFY_ADDRESS.hex(), "data": "0x" + p256_input().hex()}
    assert rpc(node.url, "eth_call", [call, "latest"])["result"] == "0x" + word(1).hex()
    assert rpc(prague_node.url, "eth_call", [call, "latest"])["result"] == "0x"
    bad = {"to": call["to"], "data": "0x" + p256_input(r=0).hex()}
    assert rpc(node.url, "eth_call", [bad, "latest"])["result"] == "0x"
    # the estimate includes the precompile's 6900 gas
    assert int(rpc(node.url, "eth_estimateGas", [call])["result"], 16) > 21_000 + 6900


def test_modexp_over_the_bound_on_the_node_names_the_limit(node: NodeProcess) -> None:
    data = modexp_input(b"\x02" * 1025, b"\x02", b"\x05")
    call = {"to": "0x" + MODEXP_ADDRESS.hex(), "data": "0x" + data.hex()}
    answer = rpc(node.url, "eth_call", [call, "latest"])
    assert "1024 bytes" in answer["error"]["message"]


def raw_transfer(w3: Web3, gas: int) -> str:
    tx = {
        "to": Account.from_key(DEV_KEYS[2]).address,
        "value": 1,
        "gas": gas,
        "maxFeePerGas": 10 * GWEI,
        "maxPriorityFeePerGas": GWEI,
        "nonce": w3.eth.get_transaction_count(OWNER.address, "pending"),
        "chainId": w3.eth.chain_id,
        "type": 2,
    }
    return "0x" + OWNER.sign_transaction(tx).raw_transaction.hex().removeprefix("0x")


def test_the_osaka_node_refuses_a_transaction_over_the_gas_cap(w3: Web3, node: NodeProcess) -> None:
    answer = rpc(node.url, "eth_sendRawTransaction", [raw_transfer(w3, TX_GAS_LIMIT_CAP + 1)])
    assert answer["error"]["message"] == (
        "transaction gas limit too high (cap: 16777216, tx: 16777217)"
    )
    at_cap = rpc(node.url, "eth_sendRawTransaction", [raw_transfer(w3, TX_GAS_LIMIT_CAP)])
    receipt = w3.eth.wait_for_transaction_receipt(at_cap["result"], timeout=30, poll_latency=0.05)
    assert receipt.status == 1


def test_the_prague_node_admits_a_transaction_over_the_osaka_cap(
    prague_w3: Web3, prague_node: NodeProcess
) -> None:
    answer = rpc(
        prague_node.url, "eth_sendRawTransaction", [raw_transfer(prague_w3, TX_GAS_LIMIT_CAP + 1)]
    )
    receipt = prague_w3.eth.wait_for_transaction_receipt(
        answer["result"], timeout=30, poll_latency=0.05
    )
    assert receipt.status == 1


def test_gas_estimates_stop_at_the_cap_while_calls_keep_the_rpc_cap(
    w3: Web3, node: NodeProcess, prague_w3: Web3
) -> None:
    # spin(n) writes n fresh slots (22,100 gas each): 800 of them need about 17.7M gas
    events = deploy(w3, "Events")
    data = events.encode_abi("spin", [800])
    call = {"from": OWNER.address, "to": events.address, "data": data}
    answer = rpc(node.url, "eth_estimateGas", [call])
    assert answer["error"]["message"] == "gas required exceeds allowance (16777216)"
    assert "error" not in rpc(node.url, "eth_call", [call, "latest"])  # as geth: 50M for calls
    under = rpc(node.url, "eth_estimateGas", [dict(call, data=events.encode_abi("spin", [600]))])
    assert 13_000_000 < int(under["result"], 16) <= TX_GAS_LIMIT_CAP
    # on Prague the same estimate goes up to the block gas limit
    prague_events = deploy(prague_w3, "Events")
    prague_call = dict(call, to=prague_events.address)
    estimate = prague_w3.eth.estimate_gas(prague_call)  # type: ignore[arg-type]
    assert TX_GAS_LIMIT_CAP < estimate < 30_000_000


def test_a_too_large_gas_in_a_web3_transaction_is_refused_with_the_cap(w3: Web3) -> None:
    events = deploy(w3, "Events")
    with pytest.raises(Web3RPCError, match="transaction gas limit too high"):
        send(w3, events.functions.spin(1), gas=TX_GAS_LIMIT_CAP + 100)


def test_nodes_name_their_fork(node: NodeProcess, prague_node: NodeProcess) -> None:
    assert rpc(node.url, "coco_nodeInfo")["result"]["fork"] == "osaka"
    assert rpc(prague_node.url, "coco_nodeInfo")["result"]["fork"] == "prague"


def test_a_prague_chain_stays_prague_when_restarted_without_fork(tmp_path: Path) -> None:
    """The fork is the chain's (its genesis record), not the default of the day: a chain made
    before Osaka became the default keeps its rules."""
    data = tmp_path / "data"
    first = NodeProcess(data, "--fork", "prague").start()
    try:
        assert rpc(first.url, "coco_nodeInfo")["result"]["fork"] == "prague"
    finally:
        first.stop()
    again = NodeProcess(data).start()
    try:
        assert rpc(again.url, "coco_nodeInfo")["result"]["fork"] == "prague"
        call = {"to": "0x" + P256VERIFY_ADDRESS.hex(), "data": "0x" + p256_input().hex()}
        assert rpc(again.url, "eth_call", [call, "latest"])["result"] == "0x"
    finally:
        again.stop()
