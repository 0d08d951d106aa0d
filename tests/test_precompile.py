"""The confidential random-bytes precompile at 0xc0c0: in py-evm for every fork, and on a node.

The py-evm tests build chains with ``gateway.execution.chain`` (the forks the node runs); the
node tests go through JSON-RPC, where ``eth_call`` runs on ``vm.build_state`` and mined
transactions on ``vm.apply_transaction``.
"""

from __future__ import annotations

from typing import Any

import evm_support
import pytest
from conftest import DEV_KEYS, rpc
from eth_abi import encode
from eth_account import Account
from evm_support import CHAIN_ID, SENDER_KEY, run_message
from test_web3_e2e import deploy, send
from web3 import Web3
from web3.exceptions import ContractCustomError

from gateway.execution.chain import FORKS, GenesisAccount
from gateway.execution.precompiles import (
    RANDOM_BYTES_ADDRESS,
    RANDOM_BYTES_MAX,
    random_bytes_gas,
)

OWNER = Account.from_key(DEV_KEYS[0])
OTHER = Account.from_key(DEV_KEYS[1])
THIRD = Account.from_key(DEV_KEYS[2])
RANDOM = Web3.to_checksum_address(RANDOM_BYTES_ADDRESS)

# Runtime code that stores one random word from the precompile in slot 0 and the STATICCALL's
# success flag in slot 1:
#   STATICCALL(gas, 0xc0c0, in 0..0 (empty: 32 bytes), out 0..32); SSTORE(1, success);
#   SSTORE(0, MLOAD(0))
PROBE = bytes.fromhex("20" * 20)
PROBE_CODE = bytes.fromhex("602060006000600061c0c05afa60015560005160005500")


def length_word(n: int) -> bytes:
    return n.to_bytes(32, "big")


def new_chain(fork: str) -> Any:
    return evm_support.new_chain(fork, {PROBE: GenesisAccount(code=PROBE_CODE)})


def call_precompile(fork: str, data: bytes, gas: int = 100_000) -> Any:
    """Run one message straight into the precompile, as a CALL from a contract would."""
    return run_message(new_chain(fork), RANDOM_BYTES_ADDRESS, data, gas=gas)


# ---------------------------------------------------------------- py-evm, every fork


@pytest.mark.parametrize("fork", sorted(FORKS))
def test_every_fork_has_the_precompile_beside_pyevms(fork: str) -> None:
    state = new_chain(fork).get_vm().state
    table = state.computation_class.get_precompiles()
    pyevm_vm = FORKS[fork].__bases__[0]  # the py-evm fork the gateway's extends
    pyevm_table = pyevm_vm.get_state_class().computation_class.get_precompiles()
    assert set(table) == set(pyevm_table) | {RANDOM_BYTES_ADDRESS}
    assert all(table[address] is pyevm_table[address] for address in pyevm_table)
    # precompiles start warm (EIP-2929), so a call to it pays no cold-account surcharge
    assert state.is_address_warm(RANDOM_BYTES_ADDRESS)


@pytest.mark.parametrize("fork", sorted(FORKS))
@pytest.mark.parametrize("length", [0, 1, 31, 32, 33, 100, RANDOM_BYTES_MAX])
def test_output_has_the_requested_length_and_gas_is_base_plus_words(fork: str, length: int) -> None:
    computation = call_precompile(fork, length_word(length))
    assert computation.is_success
    assert len(computation.output) == length
    assert computation.get_gas_used() == random_bytes_gas(length)
    assert random_bytes_gas(length) == 100 + 20 * ((length + 31) // 32)


def test_empty_input_gives_32_bytes_for_120_gas() -> None:
    computation = call_precompile("prague", b"")
    assert computation.is_success
    assert len(computation.output) == 32
    assert computation.get_gas_used() == 120


def test_every_call_draws_different_bytes() -> None:
    outputs = {bytes(call_precompile("prague", length_word(32)).output) for _ in range(20)}
    assert len(outputs) == 20


@pytest.mark.parametrize(
    "data",
    [
        length_word(RANDOM_BYTES_MAX + 1),
        length_word(2**256 - 1),
        b"\x20",  # not a whole word
        length_word(32) + b"\x00",  # more than one word
    ],
    ids=["over-cap", "huge", "short-input", "long-input"],
)
def test_bad_requests_fail_and_burn_the_calls_gas(data: bytes) -> None:
    computation = call_precompile("prague", data, gas=50_000)
    assert computation.is_error
    assert computation.output == b""
    assert computation.get_gas_used() == 50_000


def test_too_little_gas_fails() -> None:
    computation = call_precompile("prague", length_word(64), gas=random_bytes_gas(64) - 1)
    assert computation.is_error
    assert computation.output == b""


@pytest.mark.parametrize("fork", sorted(FORKS))
def test_contract_staticcall_in_mined_blocks(fork: str) -> None:
    """A contract reads the precompile inside block building; each block draws anew."""
    chain = new_chain(fork)
    words = []
    for nonce in range(3):
        tx = chain.create_unsigned_transaction(
            nonce=nonce, gas_price=2 * 10**9, gas=100_000, to=PROBE, value=0, data=b""
        ).as_signed_transaction(SENDER_KEY, chain_id=CHAIN_ID)
        _block, _receipt, computation = chain.apply_transaction(tx)
        assert computation.is_success
        chain.mine_block()
        state = chain.get_vm().state
        assert state.get_storage(PROBE, 1) == 1  # the STATICCALL succeeded
        words.append(state.get_storage(PROBE, 0))
    assert chain.get_canonical_head().block_number == 3
    assert len(set(words)) == 3 and 0 not in words


# ---------------------------------------------------------------- through a node


def intrinsic_gas(data: bytes) -> tuple[int, int]:
    """(intrinsic gas, EIP-7623 calldata floor) of a plain call carrying ``data``."""
    zeros = data.count(0)
    nonzero = len(data) - zeros
    return 21_000 + 4 * zeros + 16 * nonzero, 21_000 + 10 * (zeros + 4 * nonzero)


def test_eth_call_returns_fresh_bytes_every_time(w3: Web3) -> None:
    outputs = set()
    for _ in range(5):
        out = w3.eth.call({"to": RANDOM, "data": "0x" + length_word(48).hex()})
        assert len(out) == 48
        outputs.add(bytes(out))
    assert len(outputs) == 5
    assert len(w3.eth.call({"to": RANDOM})) == 32


def test_eth_call_over_the_cap_is_an_error(node: Any) -> None:
    response = rpc(
        node.url,
        "eth_call",
        [{"to": RANDOM, "data": "0x" + length_word(RANDOM_BYTES_MAX + 1).hex()}, "latest"],
    )
    assert "error" in response and "result" not in response


def test_mined_call_charges_the_precompile_gas(w3: Web3) -> None:
    data = length_word(RANDOM_BYTES_MAX)
    receipt = w3.eth.wait_for_transaction_receipt(
        w3.eth.send_transaction({"from": OWNER.address, "to": RANDOM, "data": "0x" + data.hex()}),
        timeout=30,
    )
    assert receipt.status == 1
    standard, floor = intrinsic_gas(data)  # the dev node runs Prague (EIP-7623)
    assert receipt.gasUsed == max(standard + random_bytes_gas(RANDOM_BYTES_MAX), floor)
    assert w3.eth.estimate_gas({"to": RANDOM, "data": "0x" + data.hex()}) == receipt.gasUsed


# ---------------------------------------------------------------- RandomDraw on a node


def custom_error(name: str, types: list[str], values: list[Any]) -> str:
    """The revert data of a Solidity custom error, as web3 reports it."""
    selector = Web3.keccak(text=f"{name}({','.join(types)})")[:4]
    return "0x" + (selector + encode(types, values)).hex()


@pytest.fixture(scope="module")
def random_draw(w3: Web3) -> Any:
    return deploy(w3, "RandomDraw")


def test_random_draw_picks_a_secret_winner_in_a_mined_transaction(
    w3: Web3, random_draw: Any
) -> None:
    draw = random_draw
    entrants = [OWNER, OTHER, THIRD]
    for entrant in entrants:
        assert send(w3, draw.functions.enter(), sender=entrant).status == 1
    assert draw.functions.entrantCount().call() == 3

    with pytest.raises(ContractCustomError) as err:
        draw.functions.enter().call({"from": OTHER.address})
    assert err.value.data == custom_error("AlreadyEntered", ["address"], [OTHER.address])
    with pytest.raises(ContractCustomError) as err:
        draw.functions.winner().call({"from": OWNER.address})
    assert err.value.data == custom_error("NotDrawn", [], [])
    with pytest.raises(ContractCustomError) as err:
        draw.functions.draw().call({"from": OTHER.address})
    assert err.value.data == custom_error("NotOrganizer", ["address"], [OTHER.address])

    receipt = send(w3, draw.functions.draw())
    assert receipt.status == 1
    (drawn,) = draw.events.Drawn().process_receipt(receipt)
    assert drawn.args.entrants == 3
    assert draw.functions.drawn().call()

    winner = draw.functions.winner().call({"from": OWNER.address})
    assert winner in {e.address for e in entrants}
    won = {e.address: draw.functions.hasWon().call({"from": e.address}) for e in entrants}
    assert won == {e.address: e.address == winner for e in entrants}
    assert draw.functions.hasWon().call() is False  # no signer: sender zero

    # only the organizer may read the winner, and the draw happens once
    for caller in (OTHER.address, None):
        with pytest.raises(ContractCustomError) as err:
            draw.functions.winner().call({"from": caller} if caller else {})
        expected = caller or "0x0000000000000000000000000000000000000000"
        assert err.value.data == custom_error("NotOrganizer", ["address"], [expected])
    with pytest.raises(ContractCustomError) as err:
        draw.functions.draw().call({"from": OWNER.address})
    assert err.value.data == custom_error("AlreadyDrawn", [], [])


def test_random_draw_with_no_entrants_refuses(w3: Web3) -> None:
    empty = deploy(w3, "RandomDraw")
    with pytest.raises(ContractCustomError) as err:
        empty.functions.draw().call({"from": OWNER.address})
    assert err.value.data == custom_error("NoEntrants", [], [])


def test_random_bytes_view_differs_per_call_and_is_capped(w3: Web3, random_draw: Any) -> None:
    fn = random_draw.functions.randomBytes
    samples = {fn(64).call() for _ in range(5)}
    assert len(samples) == 5 and all(len(s) == 64 for s in samples)
    assert fn(0).call() == b""
    assert len(fn(RANDOM_BYTES_MAX).call()) == RANDOM_BYTES_MAX
    with pytest.raises(ContractCustomError) as err:
        fn(RANDOM_BYTES_MAX + 1).call()
    assert err.value.data == custom_error("RandomnessUnavailable", [], [])
