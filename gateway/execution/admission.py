"""Admission: decode a raw transaction, check it against the pool and head, open its envelope."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from eth.abc import BlockHeaderAPI, SignedTransactionAPI

from gateway.errors import AccountStateRefusal, InvalidParams, ServerError
from gateway.execution import format as fmt
from gateway.execution import rlpscan
from gateway.execution.osaka import gas_limit_too_high
from gateway.execution.pool import PoolTx, TxPool
from gateway.protocol import envelope

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
MAX_TX_SIZE = 128 * 1024  # geth's txMaxSize
MAX_INITCODE_SIZE = 2 * 24_576  # EIP-3860
SUPPORTED_TX_TYPES = (0, 1, 2)


class EnvelopeKeys(Protocol):
    """The enclave's side of the envelope format: opens request envelopes."""

    def open(
        self, data: bytes, sender: bytes, to: bytes | None, *, admission: bool
    ) -> envelope.OpenedRequest: ...


@dataclass(frozen=True)
class Admission:
    """The chain's fixed admission rules; the head, its state and the pool come per call."""

    tx_builder: Any
    chain_id: int
    tx_gas_cap: int | None  # EIP-7825, from Osaka on
    envelopes: EnvelopeKeys | None = None
    require_encryption: bool = False

    def decode(self, raw: bytes) -> SignedTransactionAPI:
        if len(raw) > MAX_TX_SIZE:
            raise ServerError(
                f"oversized data: the transaction is {len(raw)} bytes, the limit is "
                f"{MAX_TX_SIZE} bytes"
            )
        if not raw:
            raise InvalidParams("invalid raw transaction: empty input")
        if raw[0] <= 0x7F and raw[0] not in SUPPORTED_TX_TYPES:
            raise ServerError("transaction type not supported")
        try:
            # the structure first, cheaply: py-rlp's recursive decode of absurd nesting
            # costs gigabytes before it fails
            rlpscan.check(memoryview(raw)[1:] if raw[0] <= 0x7F else raw)
        except rlpscan.RlpShapeError as exc:
            raise InvalidParams(f"invalid raw transaction: {exc}") from None
        try:
            tx = self.tx_builder.decode(raw)
        except Exception:  # rlp and py-evm raise a zoo of types for malformed input
            raise InvalidParams(
                "invalid raw transaction: not a valid RLP-encoded signed transaction"
            ) from None
        return tx  # type: ignore[no-any-return]

    def replay(self, raw: bytes) -> PoolTx:
        """A transaction of a block built elsewhere, to re-execute it: decoded, its sender
        recovered and its envelope opened (with its own epoch's key, as for a mined
        transaction). No pool or head-state rule applies: the block decides; a transaction
        that does not apply makes the block invalid."""
        tx = self.decode(raw)
        sender = _recover_sender(tx)
        plaintext = self.open_envelope(tx.data, sender, tx.to, admission=False)
        return _pool_tx(raw, tx, sender, plaintext)

    def admit(
        self,
        raw: bytes,
        *,
        head: BlockHeaderAPI,
        base_fee: int,
        state: Any,
        pool: TxPool,
        restoring: bool = False,
        sender: bytes | None = None,
    ) -> PoolTx:
        """Check a signed transaction against the pool's rules and ``head``'s ``state``.

        ``base_fee`` is the next block's. ``restoring`` re-admits a transaction the node had
        accepted before a restart: the rules that judge it against the head state of the
        moment (fee cap against the base fee, cost against the balance, the envelope's epoch
        window) are not applied again, since a running node would have kept it waiting too.

        ``sender``: the signer as another attested enclave of the consortium recovered it (a
        transaction it forwarded, sealed under the consortium's key): taken as is, without
        recovering it again; the pooled transaction is marked ``vouched``, and a proposer
        recovers the sender before the transaction goes into a block (building.py).
        """
        tx = self.decode(raw)
        if not 0 < tx.s <= SECP256K1_N // 2 or not 0 < tx.r < SECP256K1_N:
            # EIP-2: only the low-s form of a signature is valid, so each has one encoding
            raise ServerError("invalid transaction v, r, s values")
        vouched = sender is not None
        sender = _recover_sender(tx) if sender is None else _vouched_sender(tx, sender)
        chain_id = tx.chain_id
        if chain_id is None:
            raise ServerError("only replay-protected (EIP-155) transactions allowed over RPC")
        if chain_id != self.chain_id:
            raise ServerError(f"invalid chain id for signer: have {chain_id} want {self.chain_id}")
        intrinsic = int(tx.intrinsic_gas)
        if tx.gas < intrinsic:
            raise ServerError(f"intrinsic gas too low: have {tx.gas}, want {intrinsic}")
        if tx.gas > head.gas_limit:
            raise ServerError("exceeds block gas limit")
        if self.tx_gas_cap is not None and tx.gas > self.tx_gas_cap:
            raise ServerError(gas_limit_too_high(tx.gas, self.tx_gas_cap))
        fee_cap, tip_cap = _fee_caps(tx)
        if tip_cap > fee_cap:  # only a type-2 transaction names two
            raise ServerError(
                f"max priority fee per gas higher than max fee per gas: address "
                f"0x{sender.hex()}, maxPriorityFeePerGas: {tip_cap}, maxFeePerGas: {fee_cap}"
            )
        if fee_cap < base_fee and not restoring:
            raise ServerError(
                f"max fee per gas less than block base fee: address 0x{sender.hex()}, "
                f"maxFeePerGas: {fee_cap}, baseFee: {base_fee}"
            )
        plaintext = self.open_envelope(tx.data, sender, tx.to, admission=not restoring)
        code = plaintext if plaintext is not None else bytes(tx.data)
        check_initcode(tx.to, code)
        if (
            self.require_encryption
            and plaintext is None
            and tx.data
            and (not tx.to or state.get_code(tx.to))
        ):
            raise ServerError(
                "this node requires encrypted call data and init code: seal the data to "
                "the enclave's transaction key (coco_getAttestation) in an envelope; "
                "plain value transfers are accepted",
                reason="encryption-required",
            )
        ptx = _pool_tx(raw, tx, sender, plaintext)
        ptx.vouched = vouched
        replaces = pool.check(ptx, int(state.get_nonce(sender)))
        cost = tx.gas * fee_cap + tx.value
        balance = int(state.get_balance(sender))
        if balance < cost and not restoring:
            raise insufficient_funds(bytes(sender), balance, cost)
        ptx.replaces = replaces
        return ptx

    def open_envelope(
        self, data: bytes, sender: bytes, to: bytes | None, *, admission: bool
    ) -> bytes | None:
        """The plaintext of enveloped data (None for plain data); a bad envelope is refused."""
        if self.envelopes is None or not envelope.is_envelope(data):
            return None
        try:
            return self.envelopes.open(data, sender, to or None, admission=admission).plaintext
        except envelope.EnvelopeError as exc:
            detail, fields = envelope_refusal(exc, sender, to)
            raise ServerError(
                f"invalid transaction envelope: {detail}", {"reason": exc.reason, **fields}
            ) from None


def _recover_sender(tx: SignedTransactionAPI) -> bytes:
    """The address that signed ``tx``, or a refusal when its signature does not recover one."""
    try:
        tx.validate()
        return bytes(tx.sender)
    except Exception:
        raise ServerError("invalid sender: the signature does not recover an address") from None


def _vouched_sender(tx: SignedTransactionAPI, sender: bytes) -> bytes:
    """``sender`` as the signer of ``tx`` (py-evm's cached ``sender``), after the field checks
    that ``_recover_sender`` makes; the signature is recovered later, by a proposer."""
    if len(sender) != 20:
        raise ServerError("invalid sender: the forwarded sender is not an address")
    try:
        tx.validate()
    except Exception:
        raise ServerError("invalid sender: the signature does not recover an address") from None
    tx.__dict__["sender"] = sender  # what py-evm's cached_property ``sender`` reads first
    return sender


def signed_by(tx: SignedTransactionAPI, sender: bytes) -> bool:
    """Whether ``tx``'s signature recovers ``sender`` (recovered now, not the cached one)."""
    try:
        return bytes(tx.get_sender()) == sender
    except Exception:
        return False


def _fee_caps(tx: SignedTransactionAPI) -> tuple[int, int]:
    """``tx``'s fee cap and tip cap per gas: a legacy or EIP-2930 one's gas price is both."""
    if fmt.tx_type(tx) == 2:
        return int(tx.max_fee_per_gas), int(tx.max_priority_fee_per_gas)
    return int(tx.gas_price), int(tx.gas_price)


def _pool_tx(
    raw: bytes, tx: SignedTransactionAPI, sender: bytes, plaintext: bytes | None
) -> PoolTx:
    fee_cap, tip_cap = _fee_caps(tx)
    return PoolTx(
        hash=bytes(tx.hash),
        sender=sender,
        nonce=int(tx.nonce),
        gas=int(tx.gas),
        fee_cap=fee_cap,
        tip_cap=tip_cap,
        raw=raw,
        tx=tx,
        plaintext=plaintext,
    )


def insufficient_funds(sender: bytes, balance: int, cost: int) -> AccountStateRefusal:
    text = f"insufficient funds for gas * price + value: address 0x{sender.hex()}"
    return AccountStateRefusal(f"{text} have {balance} want {cost}", f"{text} want {cost}", sender)


def envelope_refusal(
    exc: envelope.EnvelopeError, sender: bytes, to: bytes | None
) -> tuple[str, dict[str, str]]:
    """The message and typed fields of a refused envelope. When the AEAD failed, they name
    the sender and recipient the node opened it for, so a client can tell a wrong sender
    or recipient from an altered envelope; the caller knows both already (the transaction's
    signer and recipient, or the identity it called as)."""
    if type(exc) is not envelope.EnvelopeAuthenticationError:
        return str(exc), {}
    recipient = "0x" + bytes(to).hex() if to else None
    opened = f"the node opened it for sender 0x{bytes(sender).hex()} and " + (
        f"recipient {recipient}" if recipient else "a contract creation"
    )
    fields = {"sender": "0x" + bytes(sender).hex()}
    if recipient:
        fields["recipient"] = recipient
    return f"{exc} ({opened})", fields


def check_initcode(to: bytes | None, code: bytes) -> None:
    """EIP-3860 (Shanghai and later), with geth's words; py-evm would raise it as OutOfGas."""
    if not to and len(code) > MAX_INITCODE_SIZE:
        raise ServerError(
            f"max initcode size exceeded: code size {len(code)} limit {MAX_INITCODE_SIZE}"
        )
