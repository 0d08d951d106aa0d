"""The private-balances chain rule: BALANCE answers only for accounts whose balance is not private.

A chain created by a strict node (docs/consensus.md, "Private balances") fixes this rule in its
genesis. Under it, ``BALANCE(a)`` pushes ``a``'s balance only when

- ``a`` is the address whose code is running (``address(this).balance``, also in a constructor),
- ``a`` is the transaction's origin (its signer; in a call, the caller identity the enclave
  enforces), unless that is the zero address (nobody), or
- ``a`` holds code that is not an EIP-7702 delegation designator (a contract);

otherwise it pushes 0. Gas is charged exactly as EIP-2929's BALANCE charges it, so the answer
cannot be told from the gas either. SELFBALANCE is left as it is (it is always the running
address's own). A fork adds the rule by building its opcode table with ``private_opcodes``.
"""

from __future__ import annotations

from collections.abc import Mapping

from eth import constants
from eth._utils.address import force_bytes_to_address
from eth._utils.state import code_is_delegation_designation
from eth.abc import ComputationAPI, OpcodeAPI
from eth.vm import mnemonics, opcode_values
from eth.vm.forks.berlin import constants as berlin_constants
from eth.vm.opcode import as_opcode
from eth_typing import Address
from eth_utils.toolz import merge


def balance_visible(computation: ComputationAPI, address: Address) -> bool:
    """Whether the rule lets the running code read ``address``'s balance."""
    if address == computation.msg.storage_address:
        return True
    origin = computation.transaction_context.origin
    if address == origin and origin != constants.ZERO_ADDRESS:
        return True
    return is_contract_code(computation.state.get_code(address))


def is_contract_code(code: bytes) -> bool:
    """Whether an account with this code is a contract, whose balance the rule leaves public
    (an EIP-7702 delegation designator marks an EOA that runs someone's code)."""
    return bool(code) and not code_is_delegation_designation(code)


def private_balance(computation: ComputationAPI) -> None:
    """BALANCE under the rule, with EIP-2929's cold/warm account-load gas."""
    address = force_bytes_to_address(computation.stack_pop1_bytes())
    state = computation.state
    if state.is_address_warm(address):
        cost = berlin_constants.WARM_STORAGE_READ_COST
    else:
        state.mark_address_warm(address)
        cost = berlin_constants.COLD_ACCOUNT_ACCESS_COST
    computation.consume_gas(cost, reason=mnemonics.BALANCE)
    visible = balance_visible(computation, address)
    computation.stack_push_int(state.get_balance(address) if visible else 0)


PRIVATE_BALANCE_OPCODES: dict[int, OpcodeAPI] = {
    opcode_values.BALANCE: as_opcode(
        gas_cost=constants.GAS_NULL,
        logic_fn=private_balance,
        mnemonic=mnemonics.BALANCE,
    ),
}


def private_opcodes(opcodes: Mapping[int, OpcodeAPI]) -> dict[int, OpcodeAPI]:
    """A fork's opcode table (EIP-2929 or later) with BALANCE under the private-balances rule."""
    return merge(opcodes, PRIVATE_BALANCE_OPCODES)
