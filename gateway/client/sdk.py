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

import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Generic, TypeAlias, TypeVar

import rlp

from gateway.protocol.attestation import AttestationError, Report, TxKey, verify
from gateway.protocol.envelope import (
    REQUEST_HEADER_SIZE,
    EnvelopeError,
    Kind,
    Purpose,
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
    "Request",
    "ResponseKeys",
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
    """

    allow_virtual: bool = False
    expected_measurement: bytes | str | None = None
    expected_chain_id: int | None = None
    allow_plaintext: bool = False
    remember: int = 10_000

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
    """The state one confidential client keeps: the verified attestation, and the response
    keys of the envelopes it sealed and of the transactions that carried them.

    Thread-safe; share one session between every middleware instance of a Web3 object
    (web3 builds new instances whenever the middleware onion changes).
    """

    def __init__(
        self, policy: Policy | None = None, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.policy = policy or Policy()
        self._measurement = self.policy.measurement()
        self._clock = clock
        self._lock = threading.Lock()
        self._attestation: VerifiedAttestation | None = None
        self._by_digest: _Bounded[ResponseKeys] = _Bounded(self.policy.remember)
        self._by_tx: _Bounded[ResponseKeys] = _Bounded(self.policy.remember)
        self._first_log: _Bounded[int] = _Bounded(self.policy.remember)
        self.attestations_fetched = 0

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
        if not fields:
            return (yield (method, params))  # a plain value transfer: nothing to hide
        values = {_as_bytes(tx[f]) for f in fields}
        if len(values) > 1:
            raise ValueError("the transaction's 'data' and 'input' differ; set one of them")
        (data,) = values
        sender = _address(tx.get("from"), "from")
        if sender is None and method == "eth_sendTransaction":
            raise ValueError("eth_sendTransaction needs 'from' (the envelope is bound to it)")
        to = _address(tx.get("to"), "to")

        if is_envelope(data):
            # sealed already (by this session, for the gas estimate or the signer inside)
            keys = self._by_digest.get(request_digest(data))
            response = yield (method, params)
            return self._answer(method, response, keys, None)

        for attempt in (0, 1):
            key, chain_id = yield from self._tx_key(refresh=attempt > 0)
            sealed = seal_request(
                data,
                kind=Kind.CREATE if to is None else Kind.CALL,
                chain_id=chain_id,
                epoch=key.epoch,
                enclave_public=key.public_key,
                sender=sender or ZERO_ADDRESS,
                to=to,
            )
            keys = ResponseKeys(sealed.response_key, sealed.request_digest)
            self._by_digest.put(keys.request_digest, keys)
            hexed = "0x" + sealed.envelope.hex()
            response = yield (method, [{**tx, **dict.fromkeys(fields, hexed)}, *params[1:]])
            if attempt == 0 and _refused_for_epoch(response):
                continue  # the key rotated under us: fetch the attestation, seal again
            break
        return self._answer(method, response, keys, sealed.envelope)

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


def _refused_for_epoch(response: Any) -> bool:
    """The node refused the envelope for its epoch (stale, future or unknown key)."""
    error = response.get("error") if isinstance(response, Mapping) else None
    message = str(error.get("message", "")) if isinstance(error, Mapping) else ""
    return "envelope" in message and "epoch" in message


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
