"""Calls: eth_call, eth_estimateGas and eth_createAccessList, each a run thrown away after."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from eth import constants
from eth.abc import BlockHeaderAPI
from eth.chains.base import MiningChain
from eth.vm.spoof import SpoofTransaction
from eth_utils import ValidationError

from gateway.errors import ExecutionReverted, InvalidParams, ServerError
from gateway.execution import access
from gateway.execution import format as fmt
from gateway.execution.admission import (
    EnvelopeKeys,
    check_initcode,
    envelope_refusal,
    insufficient_funds,
)
from gateway.execution.revert import decode_revert_reason, vm_error_message
from gateway.protocol import envelope

CALL_GAS_CAP = 50_000_000  # geth's default RPC gas cap
MAX_ACCESS_LIST_ROUNDS = 16  # eth_createAccessList re-runs until its list is stable
ENVELOPE_NOT_TRACED = (
    "invalid argument 0 (transaction.input): eth_createAccessList does not trace enveloped "
    "(encrypted) call data: the list of accounts and storage slots the call touched would "
    "show in plaintext what the encrypted call did"
)


@dataclass(frozen=True)
class CallArgs:
    """A call or gas estimate, as parsed from JSON-RPC."""

    sender: bytes | None = None
    to: bytes | None = None
    gas: int | None = None
    gas_price: int | None = None
    max_fee_per_gas: int | None = None
    max_priority_fee_per_gas: int | None = None
    value: int = 0
    data: bytes = b""
    nonce: int | None = None


@dataclass(frozen=True)
class Calls:
    """Runs calls on any block's state; holds only what does not change as the chain grows."""

    chain: MiningChain
    tx_builder: Any
    chain_id: int
    tx_gas_cap: int | None  # EIP-7825, from Osaka on
    envelopes: EnvelopeKeys | None = None

    def run(
        self,
        args: CallArgs,
        header: BlockHeaderAPI,
        gas: int,
        plaintext: bytes | None = None,
        access_list: access.AccessList | None = None,
        watch: Callable[[Any], None] | None = None,
    ) -> Any:
        """Execute ``args`` on ``header``'s state and throw the changes away.

        ``plaintext`` is the decrypted data of an enveloped call: intrinsic gas is charged on
        the envelope (what a transaction would carry), the code runs on the plaintext.
        """
        check_initcode(args.to, args.data if plaintext is None else plaintext)
        vm: Any = self.chain.get_vm(header)
        child = vm.create_header_from_parent(
            header, timestamp=max(int(time.time()), header.timestamp + 1), coinbase=header.coinbase
        )
        exec_header = (
            child.copy(gas_limit=max(CALL_GAS_CAP, header.gas_limit), base_fee_per_gas=0)
            if hasattr(child, "base_fee_per_gas")
            else child.copy(gas_limit=max(CALL_GAS_CAP, header.gas_limit))
        )
        # lazily: only a call that uses BLOCKHASH reads ancestor headers
        prev_hashes = itertools.islice(
            itertools.chain([header.hash], vm.previous_hashes or ()), 256
        )
        state: Any = vm.build_state(
            self.chain.chaindb.db, exec_header, vm.chain_context, prev_hashes
        )
        sender = args.sender or constants.ZERO_ADDRESS
        balance = int(state.get_balance(sender))
        if args.value > balance:
            raise insufficient_funds(sender, balance, args.value)
        unsigned = vm.create_unsigned_transaction(
            nonce=int(state.get_nonce(sender)),
            gas_price=0,
            gas=gas,
            to=args.to or b"",
            value=args.value,
            data=args.data,
        )
        if access_list:  # eth_createAccessList: run as an EIP-2930 transaction would
            builder: Any = self.tx_builder
            unsigned = builder.new_unsigned_access_list_transaction(
                self.chain_id, unsigned.nonce, 0, gas, unsigned.to, args.value, args.data,
                [(a, [int.from_bytes(k, "big") for k in keys]) for a, keys in access_list],
            )  # fmt: skip
        if watch is not None:
            watch(state)
        if plaintext is None:
            tx = SpoofTransaction(unsigned, from_=sender)
        else:
            tx = SpoofTransaction(unsigned, from_=sender, data=plaintext)
        snapshot = state.snapshot()
        try:
            return state.apply_transaction(tx)
        except ValidationError as exc:
            raise ServerError(validation_message(str(exc))) from None
        finally:
            state.revert(snapshot)

    def open_call(self, args: CallArgs) -> envelope.OpenedRequest | None:
        if self.envelopes is None or not envelope.is_envelope(args.data):
            return None
        sender = args.sender or constants.ZERO_ADDRESS
        try:
            return self.envelopes.open(args.data, sender, args.to or None, admission=True)
        except envelope.EnvelopeError as exc:
            detail, fields = envelope_refusal(exc, sender, args.to)
            raise InvalidParams(
                f"invalid call envelope: {detail}", {"reason": exc.reason, **fields}
            ) from None

    def call(self, args: CallArgs, header: BlockHeaderAPI) -> bytes:
        """Return data; for an enveloped call, sealed to the caller's response key."""
        opened = self.open_call(args)
        plaintext = None if opened is None else opened.plaintext
        computation = self.run(args, header, call_gas(args), plaintext)
        if computation.is_error:
            raise_for(computation, opened)
        output = bytes(computation.output)
        if opened is None:
            return output
        return envelope.seal_response(
            output, response_key=opened.response_key, request_digest=opened.request_digest
        )

    def estimate_gas(self, args: CallArgs, header: BlockHeaderAPI, block_gas_limit: int) -> int:
        """The least gas ``args`` succeeds with, up to ``block_gas_limit`` (the head's)."""
        opened = self.open_call(args)
        plaintext = None if opened is None else opened.plaintext
        cap = call_gas(args) if args.gas is not None else block_gas_limit
        if self.tx_gas_cap is not None:
            # no transaction may carry more (EIP-7825); geth's estimator caps the same way,
            # while eth_call keeps the RPC gas cap, as geth's does
            cap = min(cap, self.tx_gas_cap)
        computation = self.run(args, header, cap, plaintext)
        if computation.is_error:
            if type(computation.error).__name__ == "OutOfGas":
                raise ServerError(f"gas required exceeds allowance ({cap})")  # geth's words
            raise_for(computation, opened)
        used = cap - int(computation.get_gas_remaining())
        # try the common case first: what the run used plus the 1/64 withheld by CALLs
        hint = min(cap, used + used // 63 + 2300)
        lo, hi = used - 1, cap
        if self.succeeds(args, header, hint, plaintext):
            hi = hint
        else:
            lo = hint
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            if self.succeeds(args, header, mid, plaintext):
                hi = mid
            else:
                lo = mid
        return hi

    def succeeds(
        self, args: CallArgs, header: BlockHeaderAPI, gas: int, plaintext: bytes | None
    ) -> bool:
        try:
            return not self.run(args, header, gas, plaintext).is_error
        except ServerError:
            return False

    def create_access_list(
        self,
        args: CallArgs,
        header: BlockHeaderAPI,
        state: Any,
        given: Sequence[tuple[bytes, Sequence[bytes]]] = (),
    ) -> dict[str, Any]:
        """eth_createAccessList, as geth answers it: run the call, list what it touched
        (less its sender, recipient, precompiles and coinbase, warm anyway), run it again
        with that list until the list stays the same; ``gasUsed`` is the last run's.
        ``state`` is ``header``'s."""
        if self.envelopes is not None and envelope.is_envelope(args.data):
            raise InvalidParams(ENVELOPE_NOT_TRACED)
        sender = args.sender or constants.ZERO_ADDRESS
        to = args.to or fmt.contract_address(sender, int(state.get_nonce(sender)))
        vm_class: Any = self.chain.get_vm_class(header)
        precompiles = vm_class.get_state_class().computation_class.get_precompiles()
        excluded = {sender, to, bytes(header.coinbase), *(bytes(a) for a in precompiles)}
        gas = call_gas(args)
        tried = access.starting_list(given, excluded)
        for _round in range(MAX_ACCESS_LIST_ROUNDS):
            recorder = access.AccessRecorder()
            computation = self.run(args, header, gas, access_list=tried, watch=recorder.attach)
            found = recorder.access_list(excluded | access.created(computation))
            if found == tried:
                break
            tried = found
        used = vm_class.finalize_gas_used(SimpleNamespace(gas=gas), computation)
        out: dict[str, Any] = {
            "accessList": access.access_list_rpc(tried),
            "gasUsed": fmt.qty(used),
        }
        if computation.is_error:
            out["error"] = failure(computation)
        return out


def call_gas(args: CallArgs) -> int:
    return CALL_GAS_CAP if args.gas is None else min(args.gas, CALL_GAS_CAP)


def failure(computation: Any) -> str:
    """A failed run's error, as eth_createAccessList reports it (geth's wording)."""
    if type(computation.error).__name__ == "Revert":
        reason = decode_revert_reason(bytes(computation.output))
        return f"execution reverted: {reason}" if reason else "execution reverted"
    return vm_error_message(computation.error)


def raise_for(computation: Any, opened: envelope.OpenedRequest | None = None) -> None:
    error = computation.error
    if computation.is_error and type(error).__name__ == "Revert":
        output = bytes(computation.output)
        if opened is not None:
            # the reason is the caller's secret: only the sealed revert data goes back
            sealed = envelope.seal_response(
                output,
                response_key=opened.response_key,
                request_digest=opened.request_digest,
                purpose=envelope.Purpose.REVERT,
            )
            raise ExecutionReverted(None, sealed)
        raise ExecutionReverted(decode_revert_reason(output), output)
    raise ServerError(vm_error_message(error))


def validation_message(text: str) -> str:
    if "intrinsic" in text.lower():
        return "intrinsic gas too low"
    if "gas" in text.lower() and "limit" in text.lower():
        return "gas limit too high for a call"
    return "the call is not valid against the chosen block's state"
