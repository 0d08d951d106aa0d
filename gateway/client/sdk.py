"""The confidential client, written once for sync and async callers (sans-I/O).

A ``ConfidentialSession`` knows what to do with one JSON-RPC request: which fields to seal
into an envelope before it leaves, which answers to open when they come back, and which
extra requests it needs on the way (the node's attestation, a receipt to place a log).
It never does I/O itself. ``session.exchange(method, params)`` is a generator that *yields*
each request it wants sent, as ``(method, params)``, receives the JSON-RPC response object
for it, and finally *returns* the response to hand back to the caller. ``drive`` runs such
an exchange with a blocking ``make_request``, ``drive_async`` with an awaitable one; the
web3.py middleware (gateway/client/web3.py) is a thin shell around those two, so the sync
and the async web3 share every line of the logic.

What it does, per method:

- ``eth_sendTransaction``, ``eth_call``, ``eth_estimateGas``: a non-empty ``data``/``input``
  is sealed (``gateway.protocol.envelope.seal_request``) to the transaction key of the
  node's verified attestation, with a fresh ephemeral key, sender = ``from`` (zero when a
  call has none), to = ``to`` (none: a deployment, kind CREATE). The response key and the
  request digest are remembered by the envelope's digest, and, once the node returns the
  transaction hash, by that hash. Data that already is an envelope is sent as it is and
  recognised by its digest (web3's gas estimate and the signing middleware send the
  envelope again). The call's result is opened (Purpose.RESULT); a revert (error code 3)
  is opened (Purpose.REVERT) and rewritten the way nodes report plain reverts, so web3's
  contract API raises its usual errors.
- ``eth_call``, ``eth_estimateGas`` whose ``from`` is an account the session holds a query
  signer for (``add_query_signer``): a signed query (``gateway.protocol.query``, EIP-712)
  is attached (version 3: bound to the chain id and genesis hash and to the node whose
  attestation the session verified, answered at one block, once per nonce), over the call
  object's data as sent (the envelope, when sealed),
  answered at the block the call names (for latest/pending the chain head, one
  ``eth_blockNumber``, reused for ``Policy.head_ttl`` seconds, by default not at all; the
  block parameter sent is that number),
  valid for ``Policy.leash_blocks`` more blocks and until now plus ``Policy.leash_seconds``.
  The node then runs the call with msg.sender = ``from``, proven, and opens the envelope for
  it. A query refused because the chain moved past its leash is signed again once; one
  refused as made for another node (a URL that reaches several nodes) is signed again once
  for the node whose attestation the session fetches then.
- An unsigned ``eth_call``/``eth_estimateGas`` is sealed for the sender the node runs it
  as on this URL (``coco_whoami``, asked once): the signed-in account on a personal URL,
  the zero address on a ``--privacy strict`` node's public URL, else ``from``. A call
  refused with reason ``wrong-sender`` is sealed once more for the sender the error names.
- Retries decide on the error's ``data.reason`` code (docs/PROTOCOL.md), never its text.
- ``eth_sendRawTransaction``: the signed transaction's data is matched to the keys of an
  envelope this session sealed (the signing middleware ran inside this one); signed plain
  call data is refused unless the policy allows it: it would go on chain readable.
- ``eth_getTransactionReceipt``, ``eth_getBlockReceipts``, ``eth_getLogs``,
  ``eth_getFilterChanges``, ``eth_getFilterLogs``: the sealed ``data`` of every log of a
  transaction whose keys the session holds is replaced by the opened plaintext. A log
  from eth_getLogs is placed within its transaction (its index in the seal) from the
  transaction's receipt, fetched once.

The attestation is fetched on first use, verified (``gateway.protocol.attestation.verify``:
node signature, optional expected measurement and chain id, virtual platform only when
allowed) and cached until the key it offers leaves the admission window.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, Protocol, TypeAlias, TypeVar

import rlp
from eth_account import Account
from eth_account.messages import SignableMessage, encode_typed_data

from gateway.protocol import query
from gateway.protocol.attestation import AttestationError, Report, TxKey, verify
from gateway.protocol.envelope import (
    REQUEST_HEADER_SIZE,
    EnvelopeAuthenticationError,
    EnvelopeError,
    FutureEpochError,
    Kind,
    Purpose,
    SenderMismatchError,
    StaleEpochError,
    UnknownEpochError,
    epoch_at,
    is_envelope,
    open_response,
    request_digest,
    seal_request,
)

__all__ = [
    "AttestationError",
    "ConfidentialSession",
    "ConfidentialityError",
    "Exchange",
    "Policy",
    "QuerySigner",
    "Request",
    "ResponseKeys",
    "SignedQueryError",
    "VerifiedAttestation",
    "drive",
    "drive_async",
]

Request: TypeAlias = tuple[str, Any]
"""One JSON-RPC request to send: (method, params)."""

T = TypeVar("T")
Exchange: TypeAlias = Generator[Request, Any, T]
"""Yields the requests to send, is sent each JSON-RPC response object, returns ``T``."""

ZERO_ADDRESS: Final = bytes(20)

SEALED_METHODS: Final = frozenset({"eth_sendTransaction", "eth_call", "eth_estimateGas"})
QUERY_METHODS: Final = frozenset({"eth_call", "eth_estimateGas"})
LOG_METHODS: Final = frozenset({"eth_getLogs", "eth_getFilterChanges", "eth_getFilterLogs"})
HANDLED_METHODS: Final = (
    SEALED_METHODS
    | LOG_METHODS
    | {
        "eth_sendRawTransaction",
        "eth_getTransactionReceipt",
        "eth_getBlockReceipts",
    }
)

EXECUTION_REVERTED: Final = 3
UNAUTHORIZED: Final = -32002
# envelope refusals (error data.reason, docs/PROTOCOL.md) that sealing again may cure
RESEAL_REASONS: Final = frozenset(
    {
        EnvelopeAuthenticationError.reason,
        StaleEpochError.reason,
        FutureEpochError.reason,
        UnknownEpochError.reason,
    }
)
SENDER_MISMATCH: Final = SenderMismatchError.reason
ERROR_SELECTOR: Final = bytes.fromhex("08c379a0")  # Error(string)

# Intrinsic gas of one calldata byte: 4 when zero, 16 otherwise; the Prague calldata floor
# (EIP-7623) counts 10 per token, 1 token for a zero byte and 4 for any other. Another
# envelope of the same length can turn each zero byte of the random part into a non-zero
# one, so an estimate made with one envelope is raised by this much per such zero byte.
GAS_PER_ZERO_BYTE_MARGIN: Final = 30
_RANDOM_FROM: Final = REQUEST_HEADER_SIZE - 32  # the ephemeral key, nonce and ciphertext


class ConfidentialityError(Exception):
    """Sending or reading this would break confidentiality or authenticity: the node
    answered a sealed request in the clear, an answer failed authentication, or a signed
    transaction carries plain call data."""


class SignedQueryError(Exception):
    """A signed query could not be made: the chain head is unknown, or the call object
    carries a signedQuery of its own over data the SDK would have to seal."""


class QuerySigner(Protocol):
    """What signs queries for one account: an eth-account ``LocalAccount`` (or anything
    with its ``address`` and ``sign_message``)."""

    @property
    def address(self) -> str: ...

    def sign_message(self, signable_message: SignableMessage, /) -> Any: ...


@dataclass(frozen=True)
class ResponseKeys:
    """What opens the answers to one request envelope. Never log ``response_key``."""

    response_key: bytes = field(repr=False)
    request_digest: bytes


@dataclass(frozen=True)
class Policy:
    """What the session accepts from a node and what it lets through.

    ``expected_measurement``: the measurement the attestation must report (32 bytes, or
    0x-hex); None checks none. ``allow_virtual``: accept a software enclave's report (dev
    nodes); off by default, because such a report proves nothing about the code that runs.
    ``expected_chain_id``: the chain the report must be for. ``allow_plaintext``: let signed
    transactions with plain call data through eth_sendRawTransaction (off: refused).
    ``remember``: how many transactions' (and envelopes') keys to keep, oldest dropped.

    Signed queries (for accounts the session holds a query signer for): ``leash_blocks``,
    how many blocks past the head a query stays valid (at most 1024); ``leash_seconds``,
    how long it stays valid by the clock; ``head_ttl``, how long one ``eth_blockNumber``
    answer is reused as the block a "latest" query is answered at (0: asked per query, so
    "latest" is the head; more saves a round trip and reads up to that many seconds old).
    """

    allow_virtual: bool = False
    expected_measurement: bytes | str | None = None
    expected_chain_id: int | None = None
    allow_plaintext: bool = False
    remember: int = 10_000
    leash_blocks: int = 64
    leash_seconds: int = 300
    head_ttl: float = 0.0

    def __post_init__(self) -> None:
        if not 0 <= self.leash_blocks <= query.MAX_BLOCK_RANGE:
            raise ValueError(f"leash_blocks must be within 0..{query.MAX_BLOCK_RANGE}")
        if not 0 < self.leash_seconds <= query.MAX_LEASH_SECONDS:
            raise ValueError(f"leash_seconds must be within 1..{query.MAX_LEASH_SECONDS}")

    def measurement(self) -> bytes | None:
        value = self.expected_measurement
        if value is None or isinstance(value, bytes):
            return value
        raw = bytes.fromhex(value.removeprefix("0x"))
        if len(raw) != 32:
            raise ValueError(f"expected_measurement must be 32 bytes, got {len(raw)}")
        return raw


@dataclass(frozen=True)
class VerifiedAttestation:
    """A report whose signature and policy checks passed, with the node's epoch then.

    ``skew``: the node's current epoch minus ours when it answered; epochs are judged by
    the node's clock (which decides admission), followed with ours.
    """

    report: Report
    node_epoch: int
    fetched_at: float
    skew: int

    def current_epoch(self, now: float) -> int:
        return epoch_at(int(now), self.report.epoch_period) + self.skew

    def key_for(self, now: float) -> TxKey | None:
        """The newest key the node still admits at ``now``, if the report has one: an
        epoch in [current - grace, current]."""
        current = self.current_epoch(now)
        usable = [
            k for k in self.report.tx_keys if current - self.report.grace <= k.epoch <= current
        ]
        return max(usable, key=lambda k: k.epoch) if usable else None


class _Bounded(Generic[T]):
    """A thread-safe mapping that forgets its oldest entries beyond ``limit``."""

    def __init__(self, limit: int) -> None:
        self._limit = max(1, limit)
        self._items: OrderedDict[bytes, T] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: bytes) -> T | None:
        with self._lock:
            return self._items.get(key)

    def put(self, key: bytes, value: T) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self._limit:
                self._items.popitem(last=False)


class ConfidentialSession:
    """The state one confidential client keeps: the verified attestation, the response
    keys of the envelopes it sealed and of the transactions that carried them, and the
    query signers of the accounts whose calls it signs.

    Thread-safe; share one session between every middleware instance of a Web3 object
    (web3 builds new instances whenever the middleware onion changes).
    """

    def __init__(
        self,
        policy: Policy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        query_signers: Iterable[QuerySigner | bytes | str] = (),
    ) -> None:
        self.policy = policy or Policy()
        self._measurement = self.policy.measurement()
        self._clock = clock
        self._lock = threading.Lock()
        self._attestation: VerifiedAttestation | None = None
        self._by_digest: _Bounded[ResponseKeys] = _Bounded(self.policy.remember)
        self._by_tx: _Bounded[ResponseKeys] = _Bounded(self.policy.remember)
        self._first_log: _Bounded[int] = _Bounded(self.policy.remember)
        self._signers: dict[bytes, QuerySigner] = {}
        self._head: tuple[int, float] | None = None  # (eth_blockNumber, when fetched)
        self._facts: dict[str, Any] | None = None  # coco_whoami and coco_nodeInfo, once
        self.attestations_fetched = 0
        self.heads_fetched = 0
        for signer in query_signers:
            self.add_query_signer(signer)

    # ------------------------------------------------------------------ public state
    @property
    def attestation(self) -> VerifiedAttestation | None:
        """The attestation in use (None before the first sealed request)."""
        with self._lock:
            return self._attestation

    def forget_attestation(self) -> None:
        """Fetch and verify the attestation again before the next sealed request."""
        with self._lock:
            self._attestation = None

    def keys_for_transaction(self, tx_hash: bytes | str) -> ResponseKeys | None:
        """The keys that open the logs of a transaction this session sent."""
        return self._by_tx.get(_as_bytes(tx_hash))

    def remember_transaction(self, tx_hash: bytes | str, keys: ResponseKeys) -> None:
        """Hold the keys of a transaction (say, ones saved by an earlier process), so its
        receipt and logs are opened."""
        self._by_tx.put(_as_bytes(tx_hash), keys)

    def keys_for_envelope(self, envelope: bytes | str) -> ResponseKeys | None:
        """The keys of an envelope this session sealed."""
        return self._by_digest.get(request_digest(_as_bytes(envelope)))

    def add_query_signer(self, signer: QuerySigner | bytes | str) -> str:
        """Sign the eth_call and eth_estimateGas of ``signer``'s account from now on (a
        LocalAccount, or a private key); returns the account's address."""
        account: QuerySigner = (
            Account.from_key(signer) if isinstance(signer, bytes | str) else signer
        )
        address = _address(account.address, "signer address")
        assert address is not None
        with self._lock:
            self._signers[address] = account
        return str(account.address)

    def remove_query_signer(self, address: bytes | str) -> None:
        """Stop signing ``address``'s calls (they go out anonymous again)."""
        with self._lock:
            self._signers.pop(_as_bytes(address), None)

    @property
    def query_signers(self) -> tuple[str, ...]:
        """The accounts whose calls this session signs."""
        with self._lock:
            return tuple(str(s.address) for s in self._signers.values())

    @staticmethod
    def handles(method: str) -> bool:
        """Whether ``exchange`` does anything for ``method`` (others pass through)."""
        return method in HANDLED_METHODS

    # ------------------------------------------------------------------ the exchange
    def exchange(self, method: str, params: Any) -> Exchange[Any]:
        """Send one request the confidential way; see the module docstring."""
        if method in SEALED_METHODS:
            return (yield from self._sealed(method, params))
        if method == "eth_sendRawTransaction":
            return (yield from self._raw_transaction(params))
        response = yield (method, params)
        result = _result(response)
        if result is None:
            return response
        if method == "eth_getTransactionReceipt":
            return _with_result(response, self._open_receipt(result))
        if method == "eth_getBlockReceipts" and isinstance(result, list):
            return _with_result(response, [self._open_receipt(r) for r in result])
        if method in LOG_METHODS and isinstance(result, list):
            return _with_result(response, (yield from self._open_logs(result)))
        return response

    # ------------------------------------------------------------------ attestation
    def _tx_key(self, *, refresh: bool) -> Exchange[tuple[TxKey, int]]:
        """The transaction key to seal to now, and the chain id it is for."""
        now = self._clock()
        with self._lock:
            cached = None if refresh else self._attestation
        if cached is not None:
            key = cached.key_for(now)
            if key is not None:
                return key, cached.report.chain_id
        answer = _result((yield ("coco_getAttestation", [])), what="coco_getAttestation")
        verified = self._verify(answer)
        with self._lock:
            self._attestation = verified
            self.attestations_fetched += 1
        key = verified.key_for(verified.fetched_at)
        if key is None:
            raise AttestationError(
                "the attestation offers no transaction key for the current epoch "
                f"(node epoch {verified.node_epoch}, keys for epochs "
                f"{[k.epoch for k in verified.report.tx_keys]})"
            )
        return key, verified.report.chain_id

    def _verify(self, answer: Any) -> VerifiedAttestation:
        if not isinstance(answer, Mapping) or "report" not in answer:
            raise AttestationError("coco_getAttestation returned no report")
        report = Report.from_json(answer["report"])
        try:
            signature = bytes.fromhex(str(answer["signature"]).removeprefix("0x"))
            node_epoch = int(answer["currentEpoch"])
        except (KeyError, TypeError, ValueError) as exc:
            raise AttestationError(f"malformed attestation answer: {exc}") from None
        verify(
            report,
            signature,
            expected_measurement=self._measurement,
            expected_chain_id=self.policy.expected_chain_id,
            allow_virtual=self.policy.allow_virtual,
        )
        now = self._clock()
        skew = node_epoch - epoch_at(int(now), report.epoch_period)
        return VerifiedAttestation(report, node_epoch, now, skew)

    # ------------------------------------------------------------------ sealing
    def _sealed(self, method: str, params: Any) -> Exchange[Any]:
        if not isinstance(params, list | tuple) or not params or not isinstance(params[0], Mapping):
            return (yield (method, params))
        tx = dict(params[0])
        fields = [f for f in ("data", "input") if _as_bytes(tx.get(f))]
        values = {_as_bytes(tx[f]) for f in fields}
        if len(values) > 1:
            raise ValueError("the transaction's 'data' and 'input' differ; set one of them")
        data = values.pop() if values else b""
        sender = _address(tx.get("from"), "from")
        if sender is None and method == "eth_sendTransaction" and data:
            raise ValueError("eth_sendTransaction needs 'from' (the envelope is bound to it)")
        to = _address(tx.get("to"), "to")
        signer = self._signer_for(method, tx, sender)
        if tx.get("signedQuery") is not None and data and not is_envelope(data):
            raise SignedQueryError(
                "the call object carries a signedQuery over plain data, which the SDK would "
                "seal (breaking the signature): leave the signing to the SDK "
                "(add_query_signer), or sign over the envelope"
            )
        # sealed already (by this session, for the gas estimate or the signer inside), or
        # nothing to hide (a plain value transfer): sent as it is, signed if it is a query
        seal = bool(data) and not is_envelope(data)
        if not seal and signer is None:
            keys = self._by_digest.get(request_digest(data)) if data else None
            return self._answer(method, (yield (method, params)), keys, None)

        keys, sealed = None, None
        seal_for = sender or ZERO_ADDRESS
        if seal and signer is None and method in QUERY_METHODS:
            seal_for = yield from self._runs_as(sender)
        rest = list(params[1:])
        retried: set[str] = set()
        retry = ""
        while True:
            outgoing = tx
            if seal:
                # "node": the attestation of the node this URL reaches now, for its address
                key, chain_id = yield from self._tx_key(refresh=retry in ("epoch", "node"))
                sealed = seal_request(
                    data,
                    kind=Kind.CREATE if to is None else Kind.CALL,
                    chain_id=chain_id,
                    epoch=key.epoch,
                    enclave_public=key.public_key,
                    sender=seal_for,
                    to=to,
                )
                keys = ResponseKeys(sealed.response_key, sealed.request_digest)
                self._by_digest.put(keys.request_digest, keys)
                outgoing = {**tx, **dict.fromkeys(fields, "0x" + sealed.envelope.hex())}
            elif data:
                keys = self._by_digest.get(request_digest(data))
            if signer is not None:
                assert sender is not None
                if retry == "node" and not seal:
                    yield from self._tx_key(refresh=True)
                signed, block = yield from self._signed_query(
                    signer,
                    outgoing,
                    sender,
                    to,
                    sealed.envelope if sealed else data,
                    params[1] if len(params) > 1 else None,
                    retry,
                )
                outgoing = {**outgoing, "signedQuery": signed}
                # the node answers a signed query at the block it names, and only there
                rest = [hex(block), *params[2:]]
            response = yield (method, [outgoing, *rest])
            reasons = self._retry(method, response, seal=seal, signed=signer is not None)
            retry = next((reason for reason in reasons if reason not in retried), "")
            if not retry:
                break
            retried.add(retry)
            if retry == "sender":
                seal_for = _address(_error_data(response).get("runAs"), "runAs") or ZERO_ADDRESS
        return self._answer(method, response, keys, sealed.envelope if sealed else None)

    @staticmethod
    def _retry(method: str, response: Any, *, seal: bool, signed: bool) -> tuple[str, ...]:
        """Why a refused request may succeed when sent once more, most likely first (each
        reason is tried once), decided on the error's ``data.reason`` code alone.
        "sender": an unsigned call's envelope was sealed for another sender than the one the
        node runs it as (``data.runAs``): seal for that one. "epoch": the key rotated under
        us (or the node's keys changed): fetch the attestation, seal again. "leash": the
        chain moved past the query's leash (or the cached head was stale): sign on a fresh
        head. "node": the query was signed for another node than the one that got it (a URL
        that reaches several nodes): fetch the attestation again, sign for its node."""
        error = response.get("error") if isinstance(response, Mapping) else None
        if not isinstance(error, Mapping):
            return ()
        reason = _error_data(response).get("reason")
        if seal and reason == SENDER_MISMATCH and method in QUERY_METHODS and not signed:
            return ("sender",)
        if seal and reason in RESEAL_REASONS:
            return ("epoch",)
        if signed and error.get("code") == UNAUTHORIZED and reason == "out-of-leash":
            return ("leash",)
        if signed and error.get("code") == UNAUTHORIZED and reason == "wrong-node":
            return ("node",)
        return ()

    # ------------------------------------------------------------------ who the node runs
    def _node_facts(self) -> Exchange[dict[str, Any]]:
        """What this session needs to know of the node and of this URL, asked once:
        ``coco_whoami`` (the URL's signed-in account, the privacy mode) and
        ``coco_nodeInfo`` (the genesis hash that signed queries are bound to)."""
        with self._lock:
            facts = self._facts
        if facts is not None:
            return facts
        who = _result((yield ("coco_whoami", [])))
        info = _result((yield ("coco_nodeInfo", [])))
        facts = {
            "caller": _address(who.get("address"), "caller") if isinstance(who, Mapping) else None,
            "strict": isinstance(who, Mapping) and who.get("privacy") == "strict",
            "genesis": _as_bytes(info.get("genesisHash")) if isinstance(info, Mapping) else b"",
        }
        with self._lock:
            self._facts = facts
        return facts

    def _runs_as(self, sender: bytes | None) -> Exchange[bytes]:
        """The msg.sender the node will run an unsigned call as on this URL, which its
        envelope must be sealed for: the signed-in account on a personal URL, the zero
        address on a strict node's public URL, else ``from`` (zero without one)."""
        facts = yield from self._node_facts()
        if facts["caller"] is not None:
            return bytes(facts["caller"])
        if facts["strict"]:
            return ZERO_ADDRESS
        return sender or ZERO_ADDRESS

    # ------------------------------------------------------------------ signed queries
    def _signer_for(
        self, method: str, tx: Mapping[str, Any], sender: bytes | None
    ) -> QuerySigner | None:
        """The signer of this call's queries: one the session holds for ``from``, unless
        the call object is signed already."""
        if method not in QUERY_METHODS or sender is None or tx.get("signedQuery") is not None:
            return None
        with self._lock:
            return self._signers.get(sender)

    def _leash_head(self, *, refresh: bool) -> Exchange[int]:
        """The chain head to leash a query to: eth_blockNumber, reused for head_ttl."""
        now = self._clock()
        with self._lock:
            cached = None if refresh else self._head
        if cached is not None and 0 <= now - cached[1] < self.policy.head_ttl:
            return cached[0]
        response = yield ("eth_blockNumber", [])
        number = _quantity(_result(response))
        if number is None:
            error = response.get("error") if isinstance(response, Mapping) else response
            raise SignedQueryError(f"eth_blockNumber gave no head to leash a query to: {error}")
        with self._lock:
            self._head = (number, now)
            self.heads_fetched += 1
        return number

    def _signed_query(
        self,
        signer: QuerySigner,
        tx: Mapping[str, Any],
        sender: bytes,
        to: bytes | None,
        data: bytes,
        block_param: Any,
        retry: str,
    ) -> Exchange[tuple[dict[str, Any], int]]:
        """The ``signedQuery`` member (version 3) for a call object whose data as sent is
        ``data``, and the block number it is answered at (the block parameter to send). It
        is bound to the node of the verified attestation (its ``nodeAddress``)."""
        _, chain_id = yield from self._tx_key(refresh=False)
        with self._lock:
            attested = self._attestation
        if attested is None:  # another thread forgot it meanwhile
            _, chain_id = yield from self._tx_key(refresh=True)
            with self._lock:
                attested = self._attestation
            assert attested is not None
        node = attested.report.node_address
        facts = yield from self._node_facts()
        genesis = facts["genesis"]
        if len(genesis) != 32:
            raise SignedQueryError(
                "the node did not tell its genesis hash (coco_nodeInfo), which a signed query "
                "is bound to: it predates signed query version 2"
            )
        head = yield from self._leash_head(refresh=retry == "leash")
        block = yield from self._query_block(block_param, head)
        # the head may have passed the block already: the range counts from the block
        span = min(query.MAX_BLOCK_RANGE, max(0, head - block) + self.policy.leash_blocks)
        leash = {
            "nonce": secrets.randbits(64),
            "blockNumber": block,
            "blockRange": span,
            "expiry": int(self._clock()) + self.policy.leash_seconds,
        }
        value = _quantity(tx.get("value")) or 0
        message = query.typed_data(
            chain_id=chain_id,
            genesis_hash=genesis,
            sender=sender,
            to=to,
            value=value,
            data=data,
            leash=leash,
            node=node,
        )
        signed = signer.sign_message(encode_typed_data(full_message=message))
        return {
            "version": query.VERSION,
            "signature": "0x" + bytes(signed.signature).hex(),
            "leash": {
                **{name: hex(number) for name, number in leash.items()},
                "node": "0x" + node.hex(),
            },
        }, block

    def _query_block(self, block_param: Any, head: int) -> Exchange[int]:
        """The block number a call's block parameter names (the head for latest/pending)."""
        if block_param is None or block_param in ("latest", "pending"):
            return head
        if block_param == "earliest":
            return 0
        number = _quantity(block_param)
        if number is not None and not (isinstance(block_param, str) and block_param.isalpha()):
            return number
        if isinstance(block_param, str):
            block = _result((yield ("eth_getBlockByNumber", [block_param, False])))
            found = _quantity(block.get("number")) if isinstance(block, Mapping) else None
            if found is not None:
                return found
        raise SignedQueryError(
            f"a signed query is answered at one block, named by number or tag; cannot sign "
            f"one for the block parameter {block_param!r}"
        )

    def _answer(
        self, method: str, response: Any, keys: ResponseKeys | None, sealed: bytes | None
    ) -> Any:
        """Open what answers a sealed request. ``sealed``: the envelope, when this exchange
        sealed it (rather than passing on one sealed before)."""
        if keys is None or not isinstance(response, Mapping):
            return response
        error = response.get("error")
        if isinstance(error, Mapping):
            if error.get("code") == EXECUTION_REVERTED and method != "eth_sendTransaction":
                return {**response, "error": self._open_revert(error, keys)}
            return response
        result = response.get("result")
        if result is None:
            return response
        if method == "eth_sendTransaction":
            self._by_tx.put(_as_bytes(result), keys)
        elif method == "eth_call":
            plain = self._open(result, keys, Purpose.RESULT, 0, "the call's return data")
            return _with_result(response, "0x" + plain.hex())
        elif method == "eth_estimateGas" and sealed is not None:
            zeros = sealed[_RANDOM_FROM:].count(0)
            return _with_result(response, hex(int(result, 16) + GAS_PER_ZERO_BYTE_MARGIN * zeros))
        return response

    def _open_revert(self, error: Mapping[str, Any], keys: ResponseKeys) -> dict[str, Any]:
        """Rewrite a sealed revert the way nodes report plain ones: message "execution
        reverted[: reason]", data = the revert bytes. web3 then raises ContractLogicError,
        ContractCustomError or ContractPanicError as usual."""
        plain = self._open(error.get("data"), keys, Purpose.REVERT, 0, "the revert data")
        reason = _error_string(plain)
        message = f"execution reverted: {reason}" if reason is not None else "execution reverted"
        return {**error, "message": message, "data": "0x" + plain.hex()}

    def _raw_transaction(self, params: Any) -> Exchange[Any]:
        raw = _as_bytes(params[0]) if isinstance(params, list | tuple) and params else b""
        data = _raw_transaction_data(raw)
        keys = None
        if data:
            if is_envelope(data):
                keys = self._by_digest.get(request_digest(data))
            elif not self.policy.allow_plaintext:
                raise ConfidentialityError(
                    "refusing to send a signed transaction with plain call data: it would go "
                    "on chain readable. Send it with eth_sendTransaction and let the signing "
                    "middleware sign inside the confidential one (add ConfidentialMiddleware "
                    "with middleware_onion.add, the signer with inject(..., layer=0)), or "
                    "allow plaintext in the policy"
                )
        response = yield ("eth_sendRawTransaction", params)
        result = _result(response)
        if keys is not None and result is not None:
            self._by_tx.put(_as_bytes(result), keys)
        return response

    # ------------------------------------------------------------------ opening
    @staticmethod
    def _open(value: Any, keys: ResponseKeys, purpose: Purpose, index: int, what: str) -> bytes:
        try:
            return open_response(
                _as_bytes(value),
                response_key=keys.response_key,
                request_digest=keys.request_digest,
                purpose=purpose,
                index=index,
            )
        except (EnvelopeError, ValueError) as exc:
            raise ConfidentialityError(
                f"{what} of a confidential request did not open: {exc}"
            ) from exc

    def _open_receipt(self, receipt: Any) -> Any:
        if not isinstance(receipt, Mapping):
            return receipt
        tx_hash = _as_bytes(receipt.get("transactionHash"))
        keys = self._by_tx.get(tx_hash)
        logs = receipt.get("logs")
        if keys is None or not logs:
            return receipt
        first = _quantity(logs[0].get("logIndex"))
        if first is not None:
            self._first_log.put(tx_hash, first)
        return _replace(
            receipt, logs=[self._open_log(entry, keys, i, tx_hash) for i, entry in enumerate(logs)]
        )

    def _open_logs(self, logs: list[Any]) -> Exchange[list[Any]]:
        # eth_getLogs shows a log's index in the block; its seal is bound to its position in
        # the transaction, which the transaction's receipt gives (fetched once per tx)
        wanted: dict[bytes, None] = {}
        for entry in logs:
            if isinstance(entry, Mapping):
                tx_hash = _as_bytes(entry.get("transactionHash"))
                if self._by_tx.get(tx_hash) is not None and self._first_log.get(tx_hash) is None:
                    wanted[tx_hash] = None
        for tx_hash in wanted:
            receipt = _result((yield ("eth_getTransactionReceipt", ["0x" + tx_hash.hex()])))
            first_logs = receipt.get("logs") if isinstance(receipt, Mapping) else None
            first = _quantity(first_logs[0].get("logIndex")) if first_logs else None
            if first is not None:
                self._first_log.put(tx_hash, first)
        opened = []
        for entry in logs:
            tx_hash = _as_bytes(entry.get("transactionHash")) if isinstance(entry, Mapping) else b""
            keys = self._by_tx.get(tx_hash) if tx_hash else None
            if keys is None:
                opened.append(entry)
                continue
            first = self._first_log.get(tx_hash)
            index = _quantity(entry.get("logIndex"))
            if first is None or index is None or index < first:
                raise ConfidentialityError(
                    f"cannot place a log of transaction 0x{tx_hash.hex()} within it (its "
                    "receipt is missing or disagrees), so its sealed data cannot be checked"
                )
            opened.append(self._open_log(entry, keys, index - first, tx_hash))
        return opened

    def _open_log(self, entry: Any, keys: ResponseKeys, index: int, tx_hash: bytes) -> Any:
        what = f"the data of log {index} of transaction 0x{tx_hash.hex()}"
        plain = self._open(entry.get("data"), keys, Purpose.LOG, index, what)
        return _replace(entry, data="0x" + plain.hex())


# ---------------------------------------------------------------------- drivers


def drive(exchange: Exchange[T], make_request: Callable[[Any, Any], Any]) -> T:
    """Run an exchange with a blocking ``make_request(method, params) -> response``."""
    try:
        request = next(exchange)
        while True:
            request = exchange.send(make_request(*request))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        exchange.close()


async def drive_async(
    exchange: Exchange[T], make_request: Callable[[Any, Any], Awaitable[Any]]
) -> T:
    """Run an exchange with an awaitable ``make_request(method, params) -> response``."""
    try:
        request = next(exchange)
        while True:
            request = exchange.send(await make_request(*request))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        exchange.close()


# ---------------------------------------------------------------------- helpers


def _as_bytes(value: Any) -> bytes:
    """0x-hex or bytes to bytes; None and "" to b""."""
    if value is None:
        return b""
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        text = value.removeprefix("0x").removeprefix("0X")
        if len(text) % 2:
            text = "0" + text
        try:
            return bytes.fromhex(text)
        except ValueError:
            raise ValueError(f"expected 0x-hex, got {value!r}") from None
    raise TypeError(f"expected 0x-hex or bytes, got {type(value).__name__}")


def _address(value: Any, name: str) -> bytes | None:
    if value is None or value == "" or value == b"":
        return None
    try:
        raw = _as_bytes(value)
    except (TypeError, ValueError):
        raw = b""
    if len(raw) != 20:
        raise ValueError(
            f"'{name}' must be a 20-byte address to seal the envelope to it, got {value!r} "
            "(resolve ENS names before sending)"
        )
    return raw


def _quantity(value: Any) -> int | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value), 16)
    except ValueError:
        return None


def _result(response: Any, *, what: str | None = None) -> Any:
    """The result of a response object; with ``what``, an error response raises."""
    if not isinstance(response, Mapping):
        return None
    if what is not None and "error" in response:
        error = response["error"]
        message = error.get("message") if isinstance(error, Mapping) else error
        raise AttestationError(f"{what}: {message}")
    return response.get("result")


def _error_data(response: Any) -> Mapping[str, Any]:
    """The ``data`` object of a JSON-RPC error response ({} when it has none)."""
    error = response.get("error") if isinstance(response, Mapping) else None
    data = error.get("data") if isinstance(error, Mapping) else None
    return data if isinstance(data, Mapping) else {}


def _with_result(response: Mapping[str, Any], result: Any) -> dict[str, Any]:
    return {**response, "result": result}


def _replace(mapping: Mapping[str, Any], **changes: Any) -> Any:
    """A copy of ``mapping`` with ``changes``, of the same type when it can be rebuilt
    (web3's AttributeDict), else a dict."""
    merged = {**mapping, **changes}
    try:
        return type(mapping)(merged)  # type: ignore[call-arg]
    except Exception:
        return merged


def _error_string(revert: bytes) -> str | None:
    """The reason of an Error(string) revert, None for any other revert data."""
    if revert[:4] != ERROR_SELECTOR or len(revert) < 4 + 64:
        return None
    body = revert[4:]
    offset = int.from_bytes(body[:32], "big")
    if offset + 32 > len(body):
        return None
    length = int.from_bytes(body[offset : offset + 32], "big")
    if offset + 32 + length > len(body):
        return None
    try:
        return body[offset + 32 : offset + 32 + length].decode("utf-8")
    except UnicodeDecodeError:
        return None


def _raw_transaction_data(raw: bytes) -> bytes | None:
    """The data field of a signed transaction (legacy or typed), None if it does not
    decode."""
    positions = {1: 6, 2: 7, 3: 7, 4: 7}  # EIP-2930, 1559, 4844, 7702: index of 'data'
    try:
        if raw and raw[0] >= 0xC0:
            fields = rlp.decode(raw)
            position = 5
        elif raw and raw[0] in positions:
            fields = rlp.decode(raw[1:])
            if raw[0] == 3 and fields and isinstance(fields[0], list):
                fields = fields[0]  # blob transaction in its network wrapper
            position = positions[raw[0]]
        else:
            return None
        data = fields[position]
    except Exception:
        return None
    return bytes(data) if isinstance(data, bytes | bytearray) else None
