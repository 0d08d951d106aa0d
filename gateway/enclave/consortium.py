"""The enclave's side of a consortium: its terms, the join handshake and the QBFT driver.

* Terms (``consortium.json``, the same on every node) fix block 0: its extraData is
  keccak256 of their canonical JSON, so the genesis hash commits to them.
* The join handshake (docs/PROTOCOL.md, "Join handshake"): a joining enclave attests a fresh
  X25519 key; a member enclave checks the report against the terms and answers the
  consortium secret encrypted to that key (X25519 + HKDF-SHA256 + AES-256-GCM).
* ``QbftDriver`` runs the pure QBFT core (gateway.consensus.qbft) inside the enclave, where the
  node key signs, and turns its effects into candidate blocks, ledger writes and outbound
  bytes for the host to carry (``ConsensusStep``).
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Protocol

import rlp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from eth_keys.datatypes import PrivateKey
from eth_utils import keccak

from gateway.consensus.qbft import (
    Block,
    Broadcast,
    Decide,
    Discarded,
    Effect,
    HeightContext,
    MessageFormatError,
    NewBlock,
    PeerBehind,
    Persist,
    Prepare,
    PreparedCertificate,
    Proposal,
    ProposeNeeded,
    QbftConfig,
    QbftNode,
    RoundChange,
    RoundSnapshot,
    ScheduleTimer,
    ValidateBlock,
    decode_message,
    encode_message,
    proposer,
    round_timeout,
)
from gateway.consensus.qbft.messages import rlp_decode, rlp_encode, sign_digest
from gateway.enclave.blocks import VALIDATION_RULES, Candidate
from gateway.enclave.messages import FORK_NAMES, ConsensusStep
from gateway.errors import InvalidParams, RpcError, ServerError, Unauthorized
from gateway.execution.chain import (
    CREATE2_DEPLOYER,
    CREATE2_DEPLOYER_CODE,
    GenesisAccount,
    GenesisSpec,
)
from gateway.protocol import attestation

log = logging.getLogger("gateway.enclave.consortium")

TERMS_VERSION = 1
NODE_ROLES = ("validator", "member")

# ----------------------------------------------------------------------------- terms


@dataclass(frozen=True)
class Terms:
    """``consortium.json``, checked and typed (docs/PROTOCOL.md, "Consortium terms")."""

    raw: dict[str, Any]
    digest: bytes  # keccak256 of the canonical JSON: the genesis block's extraData
    chain_id: int
    fork: str
    gas_limit: int
    genesis_timestamp: int
    alloc: tuple[tuple[bytes, int], ...]
    privacy: str
    private_balances: bool
    validation: str
    block_period: float
    round_timeout: float
    max_round_timeout: float
    epoch_period: int
    validators: tuple[bytes, ...]
    genesis_node: bytes
    nodes: dict[bytes, str]  # address -> role ("validator" | "member")
    measurements: frozenset[bytes]
    platforms: frozenset[str]
    allow_virtual: bool


def canonical_terms(terms: dict[str, Any]) -> bytes:
    """The terms' canonical JSON: sorted keys, no spaces, ASCII (non-ASCII as \\u escapes)."""
    return json.dumps(terms, sort_keys=True, separators=(",", ":")).encode()


def terms_digest(terms: dict[str, Any]) -> bytes:
    return keccak(canonical_terms(terms))


def _bad_terms(what: str) -> InvalidParams:
    return InvalidParams(f"invalid consortium terms: {what}", reason="bad-terms")


def _address(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 42:
        raise _bad_terms(f"{what} must be a 0x-prefixed 20-byte address, not {value!r}")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise _bad_terms(f"{what} is not hex: {value!r}") from None


def _number(raw: dict[str, Any], name: str, kind: type, default: Any = None) -> Any:
    value = raw.get(name, default)
    if value is None:
        raise _bad_terms(f'"{name}" is missing')
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad_terms(f'"{name}" must be a number, not {value!r}')
    if kind is int and not isinstance(value, int):
        raise _bad_terms(f'"{name}" must be an integer, not {value!r}')
    if value < 0:
        raise _bad_terms(f'"{name}" must not be negative')
    return kind(value)


def parse_terms(raw: Any) -> Terms:
    """Check the terms; raise InvalidParams (reason "bad-terms") naming what is wrong."""
    if not isinstance(raw, dict):
        raise _bad_terms("they must be a JSON object")
    if raw.get("version") != TERMS_VERSION:
        raise _bad_terms(f"version {raw.get('version')!r} (this node reads {TERMS_VERSION})")
    fork = raw.get("fork", "osaka")
    if fork not in FORK_NAMES:
        raise _bad_terms(f'"fork" {fork!r} is not one of {", ".join(FORK_NAMES)}')
    alloc_raw = raw.get("alloc", {})
    if not isinstance(alloc_raw, dict):
        raise _bad_terms('"alloc" must map addresses to balances in wei')
    alloc = []
    for address, balance in alloc_raw.items():
        try:
            wei = int(balance)
        except (TypeError, ValueError):
            raise _bad_terms(f"the balance of {address} is not a number: {balance!r}") from None
        alloc.append((_address(address, "an alloc address"), wei))
    privacy = raw.get("privacy", "open")
    if privacy not in ("open", "strict"):
        raise _bad_terms(f'"privacy" must be "open" or "strict", not {privacy!r}')
    validation = raw.get("validation", "attested-diff")
    if validation not in VALIDATION_RULES:
        raise _bad_terms(f'"validation" must be one of {", ".join(VALIDATION_RULES)}')
    validators_raw = raw.get("validators")
    if not isinstance(validators_raw, list) or not validators_raw:
        raise _bad_terms('"validators" must be a non-empty list of addresses')
    validators = tuple(_address(v, "a validator") for v in validators_raw)
    if len(set(validators)) != len(validators):
        raise _bad_terms('"validators" lists an address twice')
    nodes: dict[bytes, str] = {}
    nodes_raw = raw.get("nodes", [])
    if not isinstance(nodes_raw, list):
        raise _bad_terms('"nodes" must be a list')
    for entry in nodes_raw:
        if not isinstance(entry, dict):
            raise _bad_terms('each of "nodes" must be an object')
        role = entry.get("role", "validator")
        if role not in NODE_ROLES:
            raise _bad_terms(f"node role {role!r} is not one of {', '.join(NODE_ROLES)}")
        nodes[_address(entry.get("address"), "a node address")] = role
    for v in validators:
        nodes.setdefault(v, "validator")
    measurements = raw.get("measurements", [])
    platforms = raw.get("platforms", [attestation.VIRTUAL])
    if not isinstance(measurements, list) or not isinstance(platforms, list):
        raise _bad_terms('"measurements" and "platforms" must be lists')
    try:
        allowed = frozenset(bytes.fromhex(str(x).removeprefix("0x")) for x in measurements)
    except ValueError:
        raise _bad_terms('"measurements" must be 0x-hex sha256 values') from None
    round_timeout = _number(raw, "roundTimeout", float, 4.0)  # as config.ConsortiumTerms
    max_round_timeout = _number(raw, "maxRoundTimeout", float, 30.0)
    if not 0 < round_timeout <= max_round_timeout:
        raise _bad_terms("need 0 < roundTimeout <= maxRoundTimeout")
    epoch_period = _number(raw, "epochPeriod", int, 86_400)
    if epoch_period < 1:
        raise _bad_terms('"epochPeriod" must be at least 1 second')
    chain_id = _number(raw, "chainId", int)
    if chain_id < 1:
        raise _bad_terms('"chainId" must be positive')
    if "members" in raw:  # governance terms (docs/GOVERNANCE.md), as block 0 reads them
        from gateway.enclave.govern import check_genesis_terms

        check_genesis_terms(raw)
    return Terms(
        raw=raw,
        digest=terms_digest(raw),
        chain_id=chain_id,
        fork=fork,
        gas_limit=_number(raw, "gasLimit", int, 30_000_000),
        genesis_timestamp=_number(raw, "genesisTimestamp", int),
        alloc=tuple(alloc),
        privacy=privacy,
        # as a strict dev node's rule: balances private unless the terms make them public
        private_balances=privacy == "strict" and not bool(raw.get("publicBalances", False)),
        validation=validation,
        block_period=_number(raw, "blockPeriod", float, 1.0),
        round_timeout=round_timeout,
        max_round_timeout=max_round_timeout,
        epoch_period=epoch_period,
        validators=validators,
        genesis_node=_address(raw.get("genesisNode"), '"genesisNode"'),
        nodes=nodes,
        measurements=allowed,
        platforms=frozenset(str(p) for p in platforms),
        allow_virtual=bool(raw.get("allowVirtual", False)),
    )


def genesis_spec(terms: Terms) -> GenesisSpec:
    """Block 0 of the consortium's chain: every node computes the same one from the terms."""
    alloc = {CREATE2_DEPLOYER: GenesisAccount(code=CREATE2_DEPLOYER_CODE, nonce=1)}
    for address, balance in terms.alloc:
        alloc[address] = GenesisAccount(balance=balance)
    return GenesisSpec(
        chain_id=terms.chain_id,
        fork=terms.fork,
        gas_limit=terms.gas_limit,
        timestamp=terms.genesis_timestamp,
        extra_data=terms.digest,
        alloc=alloc,
        private_balances=terms.private_balances,
    )


def qbft_config(terms: Terms, genesis_hash: bytes) -> QbftConfig:
    """The consortium's QBFT parameters; its messages are bound to its chain id and genesis
    (the QBFT v2 domain, docs/qbft.md)."""
    return QbftConfig(
        validators=terms.validators,
        chain_id=terms.chain_id,
        genesis_hash=genesis_hash,
        base_round_timeout=terms.round_timeout,
        max_round_timeout=terms.max_round_timeout,
        block_period=terms.block_period,
    )


# ----------------------------------------------------------------------------- join handshake

JOIN_DOMAIN = b"coco-gateway/join/v1"
WRAP_VERSION = 1  # one secret: the consortium secret (generation 0)
WRAP_VERSION_2 = 2  # every ledger secret generation, 0 first, 32 bytes each (after rotations)
MAX_WRAPPED_GENERATIONS = 4097
_WRAP_HEADER = 1 + 32 + 12  # version, ephemeral X25519 key, nonce


def join_associated_data(chain_id: int, genesis_hash: bytes, joiner: bytes) -> bytes:
    """What a wrapped secret is bound to: the chain, its genesis (so its terms), the joiner."""
    return JOIN_DOMAIN + chain_id.to_bytes(32, "big") + genesis_hash + joiner


def _wrap_key(shared: bytes, ephemeral: bytes, join_key: bytes) -> bytes:
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=JOIN_DOMAIN + ephemeral + join_key
    ).derive(shared)


def wrap_secret(
    secret: bytes,
    join_key: bytes,
    associated_data: bytes,
    *,
    ephemeral: X25519PrivateKey | None = None,  # fixed only by the worked example's test
    nonce: bytes | None = None,
) -> bytes:
    """The consortium secret encrypted to ``join_key`` (X25519) with a fresh ephemeral key:
    ``0x01 || ephemeral public (32) || nonce (12) || AES-256-GCM ciphertext+tag``; after a
    ledger secret rotation ``secret`` is every generation's secret concatenated, generation
    0 first, and the version byte is 0x02."""
    ephemeral = ephemeral or X25519PrivateKey.generate()
    ephemeral_public = ephemeral.public_key().public_bytes_raw()
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(join_key))
    nonce = nonce or secrets.token_bytes(12)
    sealed = AESGCM(_wrap_key(shared, ephemeral_public, join_key)).encrypt(
        nonce, secret, associated_data
    )
    version = WRAP_VERSION if len(secret) == 32 else WRAP_VERSION_2
    return bytes([version]) + ephemeral_public + nonce + sealed


def unwrap_secret(wrapped: bytes, join_key: X25519PrivateKey, associated_data: bytes) -> bytes:
    """Open a wrapped secret with this enclave's pending join key; RpcError if it is not
    for that key (or for another chain, genesis or node). Version 2: the generations'
    secrets concatenated (``split_generations``)."""
    count, rest = divmod(len(wrapped) - _WRAP_HEADER - 16, 32)
    if not (
        rest == 0
        and (
            (wrapped[:1] == bytes([WRAP_VERSION]) and count == 1)
            or (wrapped[:1] == bytes([WRAP_VERSION_2]) and 2 <= count <= MAX_WRAPPED_GENERATIONS)
        )
    ):
        raise InvalidParams(
            f"not a version-{WRAP_VERSION} or {WRAP_VERSION_2} wrapped consortium secret "
            f"({len(wrapped)} bytes)",
            reason="bad-wrapped-secret",
        )
    ephemeral_public, nonce, sealed = wrapped[1:33], wrapped[33:45], wrapped[45:]
    own = join_key.public_key().public_bytes_raw()
    try:
        shared = join_key.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
        return AESGCM(_wrap_key(shared, ephemeral_public, own)).decrypt(
            nonce, sealed, associated_data
        )
    except (InvalidTag, ValueError):
        raise InvalidParams(
            "the wrapped consortium secret does not open: it was not encrypted to this "
            "enclave's pending join key, or for another chain, genesis or node",
            reason="bad-wrapped-secret",
        ) from None


def split_generations(secrets_blob: bytes) -> tuple[bytes, dict[int, bytes]]:
    """The consortium secret (generation 0) and the rotated generations of a concatenation
    of 32-byte secrets (a version-2 wrap, or a recovered secret)."""
    parts = [secrets_blob[i : i + 32] for i in range(0, len(secrets_blob), 32)]
    if not parts or len(secrets_blob) % 32:
        raise InvalidParams(
            "the ledger secrets are not 32-byte secrets", reason="bad-wrapped-secret"
        )
    return parts[0], {g: part for g, part in enumerate(parts) if g >= 1}


def join_report(
    *,
    chain_id: int,
    measurement: bytes,
    code: str,
    node_address: bytes,
    epoch_period: int,
    grace: int,
    join_key: bytes,
    now: int,
) -> attestation.Report:
    """A joining enclave's attestation (version 2: with its join key, no transaction keys,
    which it cannot derive before it holds the secret)."""
    return attestation.Report(
        chain_id=chain_id,
        platform=attestation.VIRTUAL,
        measurement=measurement,
        node_address=node_address,
        tx_keys=(),
        epoch_period=epoch_period,
        grace=grace,
        issued_at=now,
        code=code,
        join_key=join_key,
    )


def _refuse(reason: str, message: str, **fields: Any) -> RpcError:
    return Unauthorized(f"join refused: {message}", reason=reason, **fields)


def refuse_join(reason: str, message: str, **fields: Any) -> RpcError:
    """A join refusal with a stable reason (docs/PROTOCOL.md, "Join handshake")."""
    return _refuse(reason, message, **fields)


def check_join_attestation(request: Any, chain_id: int) -> tuple[attestation.Report, bytes]:
    """The joining node's report and its signature, if the request is well formed, signed by
    the node key it names, carries its join key and is for ``chain_id``; else RpcError with
    reason bad-attestation or wrong-chain. What the node may do is for the caller to judge
    (the terms: ``check_join_request``; the governance state: gateway.enclave.govern)."""
    if not isinstance(request, dict):
        raise _refuse("bad-attestation", "the join request is not a map")
    signature = request.get("signature")
    if not isinstance(signature, bytes) or len(signature) != 65:
        raise _refuse("bad-attestation", "the join request has no 65-byte signature")
    try:
        report = attestation.Report.from_json(request.get("report"))
        attestation.verify(report, signature, allow_virtual=True)  # policy: checked below
    except attestation.AttestationError as exc:
        raise _refuse("bad-attestation", str(exc)) from None
    if report.join_key is None or request.get("joinKey") != report.join_key:
        raise _refuse("bad-attestation", "the report does not carry the request's join key")
    node = "0x" + report.node_address.hex()
    if report.chain_id != chain_id:
        raise _refuse(
            "wrong-chain",
            f"node {node} attests chain {report.chain_id}, this consortium is chain {chain_id}",
            chainId=report.chain_id,
        )
    return report, signature


def check_join_request(request: Any, terms: Terms) -> attestation.Report:
    """The joining node's report, if it may have the secret under ``terms`` (a consortium
    without governance); else RpcError with reason bad-attestation, wrong-chain,
    unknown-measurement, virtual-not-allowed or unlisted-node (and a message naming the
    value)."""
    report, _ = check_join_attestation(request, terms.chain_id)
    node = "0x" + report.node_address.hex()
    if report.measurement not in terms.measurements:
        raise _refuse(
            "unknown-measurement",
            f"node {node} runs code measured 0x{report.measurement.hex()}, which the "
            "consortium's terms do not list in measurements",
            measurement="0x" + report.measurement.hex(),
        )
    if report.platform == attestation.VIRTUAL and (
        not terms.allow_virtual or attestation.VIRTUAL not in terms.platforms
    ):
        raise _refuse(
            "virtual-not-allowed",
            f"node {node} runs a virtual (software) enclave, which the consortium's terms "
            "do not allow (allowVirtual)",
            platform=report.platform,
        )
    if report.platform != attestation.VIRTUAL:
        # no hardware platform's evidence can be verified by this version
        raise _refuse(
            "bad-attestation",
            f"node {node} attests platform {report.platform!r}, whose evidence this node "
            "cannot verify",
            platform=report.platform,
        )
    if report.node_address not in terms.nodes:
        raise _refuse(
            "unlisted-node",
            f"node {node} is not listed in the consortium's terms (nodes)",
            address=node,
        )
    return report


# ----------------------------------------------------------------------------- link signature

LINK_DOMAIN = b"coco-gateway/p2p/link/v2"
MAX_TRANSCRIPT = 4096


def sign_link(node_key: bytes, transcript: bytes) -> bytes:
    if len(transcript) > MAX_TRANSCRIPT:
        raise InvalidParams(
            f"a link transcript is at most {MAX_TRANSCRIPT} bytes", reason="bad-transcript"
        )
    return sign_digest(PrivateKey(node_key), keccak(LINK_DOMAIN + transcript))


# ----------------------------------------------------------------------------- round snapshot

SNAPSHOT_META = "qbft.round"
SNAPSHOT_VERSION = 1


def encode_snapshot(snap: RoundSnapshot) -> bytes:
    """``rlp([1, height, round, voted digest or b"", prepared])``, prepared = ``[]`` or
    ``[block height, block proposer, block payload, round, [encoded PREPARE message, ...]]``."""
    cert = snap.prepared
    prepared: list[object] = (
        []
        if cert is None
        else [
            cert.block.height,
            cert.block.proposer,
            cert.block.payload,
            cert.round,
            [encode_message(Prepare(p)) for p in cert.prepares],
        ]
    )
    return rlp_encode(
        [SNAPSHOT_VERSION, snap.height, snap.round, snap.voted_digest or b"", prepared]
    )


def _int(item: Any) -> int:
    if not isinstance(item, bytes):
        raise ValueError("expected an integer")
    return int.from_bytes(item, "big")


def decode_snapshot(data: bytes) -> RoundSnapshot:
    """Raises ValueError (or MessageFormatError) on anything but encode_snapshot's output."""
    top = rlp_decode(data)
    if not isinstance(top, list) or len(top) != 5 or _int(top[0]) != SNAPSHOT_VERSION:
        raise ValueError("not a version-1 round snapshot")
    voted = top[3]
    if not isinstance(voted, bytes) or len(voted) not in (0, 32):
        raise ValueError("bad voted digest")
    cert = None
    prepared = top[4]
    if not isinstance(prepared, list):
        raise ValueError("bad prepared certificate")
    if prepared:
        if len(prepared) != 5 or not isinstance(prepared[4], list):
            raise ValueError("bad prepared certificate")
        proposer_, payload = prepared[1], prepared[2]
        if not isinstance(proposer_, bytes) or not isinstance(payload, bytes):
            raise ValueError("bad prepared block")
        prepares = []
        for raw in prepared[4]:
            if not isinstance(raw, bytes):
                raise ValueError("bad prepare")
            message = decode_message(raw)
            if not isinstance(message, Prepare):
                raise ValueError("not a prepare")
            prepares.append(message.prepare_payload)
        block = Block(_int(prepared[0]), proposer_, payload)
        cert = PreparedCertificate(block, _int(prepared[3]), tuple(prepares))
    return RoundSnapshot(_int(top[1]), _int(top[2]), voted or None, cert)


# ----------------------------------------------------------------------------- the QBFT driver

# how far ahead of this validator's clock a proposal's timestamp may be
MAX_FUTURE_SECONDS = 15
MAX_SIDECAR_HASHES = 64  # proposals whose sidecars are kept while they are decided
MAX_SIDECARS_PER_HASH = 4  # a replayed proposal with a bad sidecar cannot hide the good one
MAX_SIDECAR_BYTES = 256 * 1024 * 1024
MAX_CANDIDATES = 32
MAX_INBOUND = 4096  # messages per step
# A proposer starts no transaction after this fraction of its round's timeout has gone into
# building: the rest of the round is for the validators' checks (applying the diff, or
# re-executing the body) and the PREPARE and COMMIT exchanges (docs/qbft.md, "Block size
# and the round timer"). Applying an attested diff takes a fraction of the build (measured:
# checks and both exchanges 0.2 to 0.3 s after a 0.6 s build); re-executing takes as long
# as the build, so that rule keeps the smaller share.
BUILD_BUDGET_FRACTIONS = {"attested-diff": 0.5, "re-execute": 0.3}
BUILD_BUDGET_FRACTION = min(BUILD_BUDGET_FRACTIONS.values())


class BlockHost(Protocol):
    """What the driver needs from the enclave (gateway.enclave.core.Enclave)."""

    validator: bytes
    validation_rule: str

    def head_info(self) -> HeadInfo: ...

    def prepare_candidate(
        self, timestamp: int, *, budget: float | None = None
    ) -> Candidate | None: ...

    def verify_candidate(self, header_rlp: bytes, body_blob: bytes) -> Candidate: ...

    def commit_candidate(
        self, candidate: Candidate, round_: int, proposer: bytes, seals: list[bytes]
    ) -> dict[str, Any]: ...

    def get_meta(self, name: str) -> bytes | None: ...

    def validators_for(self, height: int) -> tuple[bytes, ...]: ...

    def put_meta(self, name: str, value: bytes) -> None: ...


@dataclass(frozen=True)
class HeadInfo:
    number: int
    hash: bytes
    timestamp: int
    proposer: bytes | None  # the QBFT proposer of the head block (None at genesis)


def header_fields(header_rlp: bytes) -> tuple[bytes, int, int]:
    """(parent hash, number, timestamp) of an RLP header, read without py-evm's sedes."""
    try:
        fields = rlp.decode(header_rlp)
    except rlp.exceptions.DecodingError:
        raise ValueError("the block value is not an RLP header") from None
    if not isinstance(fields, list) or len(fields) < 15:
        raise ValueError("the block value is not an RLP header")
    parent, number, timestamp = fields[0], fields[8], fields[11]
    if not all(isinstance(x, bytes) for x in (parent, number, timestamp)) or len(parent) != 32:
        raise ValueError("the block value is not an RLP header")
    return parent, int.from_bytes(number, "big"), int.from_bytes(timestamp, "big")


class QbftDriver:
    """One validator's QBFT inside the enclave (``ConsensusStep``).

    The QbftNode is made at the first step (the host's clock), at the height after the
    ledger's head, with the round snapshot this validator persisted (if for that height);
    it is made again whenever the ledger moved without it (blocks imported in catch-up).
    """

    def __init__(self, host: BlockHost, config: QbftConfig, node_key: bytes) -> None:
        self.host = host
        self.config = config
        self.key = PrivateKey(node_key)
        self.node: QbftNode | None = None
        self.timer: float | None = None
        # by block hash: (height, candidate) built or verified here; (height, [sidecar, ...])
        # that came with proposals, not yet verified
        self.candidates: OrderedDict[bytes, tuple[int, Candidate]] = OrderedDict()
        self.sidecars: OrderedDict[bytes, tuple[int, list[bytes]]] = OrderedDict()
        self.bodies: OrderedDict[bytes, bytes] = OrderedDict()  # decided here, recently
        self._sidecar_bytes = 0
        # the height whose block timer was set from its parent's timestamp, and a block this
        # validator built ahead for a height it leads in round 0: (height, parent, candidate)
        self._timer_height = 0
        self._prebuild_height = 0
        self._prebuilt: tuple[int, bytes, Candidate] | None = None
        self._last_decided_round = 0  # the round in which the last block decided here was

    # ------------------------------------------------------------------ the step
    def step(self, msg: ConsensusStep) -> dict[str, Any]:
        now = float(msg.now)
        if len(msg.inbound) > MAX_INBOUND:
            raise InvalidParams(
                f"at most {MAX_INBOUND} messages per consensus step", reason="too-many-messages"
            )
        for item in msg.inbound:  # all checked before any is acted on
            if not (
                isinstance(item, list)
                and len(item) == 2
                and isinstance(item[0], bytes)
                and (item[1] is None or isinstance(item[1], bytes))
            ):
                raise InvalidParams(
                    "a consensus inbound item is [message bytes, sidecar bytes or None]",
                    reason="bad-inbound",
                )
        out: dict[str, Any] = {"outbound": [], "decided": [], "discarded": [], "behind": []}
        node = self._node(now, out)
        if msg.tick and node is not None and self._prebuild_height == node.height:
            self._prebuild(node, now)
        for item in msg.inbound:
            if node is None:  # not a validator at this height: it follows by catch-up
                break
            message = self._inbound(item, out)
            if message is not None:
                self._run(node.receive(message, now), now, out)
            node = self._node(now, out)
        if msg.tick and node is not None:
            self._run(node.tick(now), now, out)
            node = self._node(now, out)
        if node is None:
            self.timer = now + 1.0  # look again: the validator set may include it later
            out["timer"] = self.timer
        else:
            timer = self._align_block_timer(node, now, out)
            if timer is None and self._prebuild_height == node.height:
                # the build ahead is still owed (this step carried messages, not the tick the
                # at-once timer asked for): ask again, or the block is built only at its timer
                timer = now
            out["timer"] = self.timer if timer is None else min(timer, self.timer or timer)
        out["status"] = self.status()
        return out

    def _align_block_timer(self, node: QbftNode, now: float, out: dict[str, Any]) -> float | None:
        """Once per height: start round 0 at the parent's timestamp plus the block period
        (``QbftNode.set_block_timer``); and when this validator leads round 0 of the new
        height and its block timer has not expired, ask the host for a step at once, in which
        it builds that block ahead (``_prebuild``), so the build overlaps the block period
        instead of following it. Returns that at-once deadline, or None."""
        head = self.host.head_info()
        if node.height != head.number + 1 or self._timer_height == node.height:
            return None
        self._timer_height = node.height
        expiry = head.timestamp + self.config.block_period
        self._run(node.set_block_timer(node.height, expiry, now), now, out)
        if (
            node.round == 0
            and node.propose_at is not None
            and node.propose_at > now
            and proposer(0, node.ctx) == node.address
        ):
            self._prebuild_height = node.height
            return now
        return None

    def _prebuild(self, node: QbftNode, now: float) -> None:
        """Build round 0's block of this height before its block timer expires. Its
        timestamp is the expiry's second (never after the clock at which it is proposed);
        the budget is the time left before the expiry plus the usual build budget, so the
        proposal still leaves the round's validators the same share of the round."""
        self._prebuild_height = 0
        head = self.host.head_info()
        at = node.propose_at
        if node.height != head.number + 1 or node.round != 0 or at is None or at <= now:
            return
        timestamp = max(int(at), head.timestamp + 1)
        budget = (at - now) + self._build_fraction() * round_timeout(
            0, self.config.base_round_timeout, self.config.max_round_timeout
        )
        candidate = self.host.prepare_candidate(timestamp, budget=budget)
        if candidate is not None:
            self._prebuilt = (node.height, head.hash, candidate)
            log.info(
                "built block %d ahead (%d transaction(s)) for the block timer at %.3f",
                node.height,
                len(candidate.included),
                at,
            )

    def status(self) -> dict[str, Any]:
        head = self.host.head_info()
        node = self.node
        if node is None:
            height, round_ = head.number + 1, 0
            validators = tuple(sorted(self.host.validators_for(height)))
            who = proposer(0, HeightContext(height, validators, head.proposer))
        else:
            height, round_ = node.height, node.round
            validators = node.config.validators
            who = proposer(node.round, node.ctx)
        return {
            "height": height,
            "round": round_,
            "proposer": who,
            "finalized": head.number,
            "validators": list(validators),
        }

    def _node(self, now: float, out: dict[str, Any]) -> QbftNode | None:
        head = self.host.head_info()
        node = self.node
        # the validator set of this height (governance may change it: docs/GOVERNANCE.md)
        validators = self.host.validators_for(head.number + 1)
        if (
            node is not None
            and node.height == head.number + 1
            and node.config.validators == tuple(sorted(validators))
        ):
            return node
        # a new height the QBFT node has not reached, or one it moved to itself after deciding
        # the previous block but with the previous height's set: start it afresh with this
        # height's set (a node removed by vote stops voting; an added one is counted)
        previous = node
        if self.key.public_key.to_canonical_address() not in validators:
            self.node = None
            return None
        config = self.config
        if tuple(sorted(validators)) != config.validators:
            config = replace(config, validators=tuple(validators))
        snapshot = None
        stored = self.host.get_meta(SNAPSHOT_META)
        if stored is not None:
            try:
                snapshot = decode_snapshot(stored)
            except (ValueError, MessageFormatError) as exc:
                log.warning("ignored an unreadable QBFT round snapshot: %s", exc)
        if snapshot is not None and snapshot.height == head.number + 1:
            log.info(
                "QBFT resumes height %d at round %d from its persisted snapshot",
                snapshot.height,
                snapshot.round,
            )
        node = QbftNode(
            config,
            self.key,
            height=head.number + 1,
            last_proposer=head.proposer,
            now=now,
            snapshot=snapshot,
        )
        self.node = node
        self._timer_height = 0  # a new node: its block timer is set from the head again
        self._run(node.tick(now), now, out)
        if previous is not None and previous.height < node.height:
            # the head moved by catch-up, not by this node's own decision: the messages the
            # old instance kept for later heights are the new one's (the next height's
            # proposal has often come already), checked again as they are received
            node.future = previous.future
            for message in node.future.take(node.height, None):
                self._run(node.receive(message, now), now, out)
        return node

    def _inbound(self, item: list[Any], out: dict[str, Any]) -> Any:
        data, sidecar = item
        try:
            message = decode_message(data)
        except MessageFormatError as exc:
            out["discarded"].append({"reason": exc.reason, "sender": None, "code": 0})
            return None
        block = _block_of(message)
        if block is not None and isinstance(sidecar, bytes) and sidecar:
            self._keep_sidecar(keccak(block.payload), block.height, sidecar)
        return message

    def _keep_sidecar(self, block_hash: bytes, height: int, sidecar: bytes) -> None:
        if block_hash in self.candidates or height <= self.host.head_info().number:
            return
        entry = self.sidecars.get(block_hash)
        if entry is None:
            entry = self.sidecars[block_hash] = (height, [])
        kept = entry[1]
        if sidecar in kept or len(kept) >= MAX_SIDECARS_PER_HASH:
            return
        kept.append(sidecar)
        self._sidecar_bytes += len(sidecar)
        while self.sidecars and (
            len(self.sidecars) > MAX_SIDECAR_HASHES or self._sidecar_bytes > MAX_SIDECAR_BYTES
        ):
            _, (_, dropped) = self.sidecars.popitem(last=False)
            self._sidecar_bytes -= sum(len(s) for s in dropped)

    def _drop_sidecars(self, block_hash: bytes) -> None:
        entry = self.sidecars.pop(block_hash, None)
        if entry is not None:
            self._sidecar_bytes -= sum(len(s) for s in entry[1])

    def _forget_through(self, height: int) -> None:
        """Drop the candidates and sidecars of decided heights."""
        for block_hash in [h for h, (n, _) in self.candidates.items() if n <= height]:
            del self.candidates[block_hash]
        for block_hash in [h for h, (n, _) in self.sidecars.items() if n <= height]:
            self._drop_sidecars(block_hash)

    def _remember(self, table: OrderedDict[bytes, Any], key: bytes, value: Any, cap: int) -> None:
        table[key] = value
        table.move_to_end(key)
        while len(table) > cap:
            table.popitem(last=False)

    # ------------------------------------------------------------------ effects
    def _run(self, effects: list[Effect], now: float, out: dict[str, Any]) -> None:
        """Carry out effects in order; answers to ProposeNeeded and ValidateBlock come back as
        more effects, carried out after the ones already in hand (as an asynchronous shell)."""
        queue = list(effects)
        i = 0
        while i < len(queue):
            e = queue[i]
            i += 1
            node = self.node
            if node is None:
                return
            if isinstance(e, Persist):
                self.host.put_meta(SNAPSHOT_META, encode_snapshot(e.snapshot))
            elif isinstance(e, Broadcast):
                out["outbound"].append([encode_message(e.message), self._sidecar_for(e.message)])
            elif isinstance(e, ScheduleTimer):
                self.timer = e.deadline
            elif isinstance(e, ProposeNeeded):
                queue.extend(self._propose(node, e, now))
            elif isinstance(e, ValidateBlock):
                ok = self._validate(e.block, now, out)
                queue.extend(node.block_validated(e.block.digest, ok, now))
            elif isinstance(e, Decide):
                if not self._decide(e, out):
                    self.node = None  # made again from the ledger at the next step
                    return
            elif isinstance(e, Discarded):
                out["discarded"].append(
                    {"reason": str(e.reason), "sender": e.sender, "code": e.code}
                )
            elif isinstance(e, PeerBehind):
                out["behind"].append([e.peer, e.height])

    def _sidecar_for(self, message: Any) -> bytes | None:
        block = _block_of(message)
        if block is None:
            return None
        block_hash = keccak(block.payload)
        entry = self.candidates.get(block_hash)
        if entry is not None:
            return entry[1].body
        body = self.bodies.get(block_hash)
        if body is not None:
            return body
        kept = self.sidecars.get(block_hash)
        return kept[1][0] if kept and kept[1] else None

    def _propose(self, node: QbftNode, e: ProposeNeeded, now: float) -> list[Effect]:
        head = self.host.head_info()
        if e.height != head.number + 1:
            return []
        candidate = self._take_prebuilt(e, head, now)
        if candidate is None:
            timestamp = max(int(now), head.timestamp + 1)
            budget = self._build_fraction() * round_timeout(
                e.round, self.config.base_round_timeout, self.config.max_round_timeout
            )
            candidate = self.host.prepare_candidate(timestamp, budget=budget)
        if candidate is None:
            log.warning("could not build block %d (round %d): no candidate", e.height, e.round)
            return []
        block_hash, header_rlp = candidate.hash, candidate.header_rlp
        self._remember(self.candidates, block_hash, (e.height, candidate), MAX_CANDIDATES)
        log.info("proposing block %d (round %d) 0x%s", e.height, e.round, block_hash.hex()[:16])
        return node.propose_value(e.height, e.round, header_rlp, now)

    def _build_fraction(self) -> float:
        """The rule's share of the round for building; the smaller share after a block that
        needed more than round 0 (the machine is slower than the share assumes)."""
        if self._last_decided_round > 0:
            return BUILD_BUDGET_FRACTION
        return BUILD_BUDGET_FRACTIONS.get(self.host.validation_rule, BUILD_BUDGET_FRACTION)

    def _take_prebuilt(self, e: ProposeNeeded, head: HeadInfo, now: float) -> Candidate | None:
        """The block built ahead for this height's round 0, if it is still on the head, its
        timestamp is not ahead of this clock, and it is not empty (an empty one is built
        again: transactions may have come meanwhile)."""
        prebuilt, self._prebuilt = self._prebuilt, None
        if prebuilt is None or e.round != 0:
            return None
        height, parent, candidate = prebuilt
        if height != e.height or parent != head.hash or not candidate.included:
            return None
        if header_fields(candidate.header_rlp)[2] > now:
            return None
        return candidate

    def _validate(self, block: Block, now: float, out: dict[str, Any]) -> bool:
        """A proposal's content: its header follows our head in time, and its sealed body
        opens and checks (attested diff or re-execution, per the terms)."""
        reason = self._check(block, now)
        if reason is None:
            return True
        log.warning("refused the proposal of block %d: %s", block.height, reason)
        code, _, _ = reason.partition(":")
        out["discarded"].append({"reason": code, "sender": block.proposer, "code": 0x12})
        return False

    def _check(self, block: Block, now: float) -> str | None:
        head = self.host.head_info()
        try:
            parent, number, timestamp = header_fields(block.payload)
        except ValueError as exc:
            return f"bad-header: {exc}"
        if number != block.height or number != head.number + 1:
            return f"wrong-height: header {number}, block {block.height}, head {head.number}"
        if parent != head.hash:
            return f"wrong-parent: 0x{parent.hex()} is not the head 0x{head.hash.hex()}"
        if timestamp <= head.timestamp:
            return f"timestamp-not-after-parent: {timestamp} <= {head.timestamp}"
        if timestamp > now + MAX_FUTURE_SECONDS:
            return (
                f"timestamp-in-future: {timestamp} is more than {MAX_FUTURE_SECONDS} s ahead "
                f"of this validator's clock ({int(now)})"
            )
        block_hash = keccak(block.payload)
        if block_hash in self.candidates:
            return None
        return self._verify_from_sidecars(block_hash, block.height, block.payload)

    def _verify_from_sidecars(
        self, block_hash: bytes, height: int, header_rlp: bytes
    ) -> str | None:
        entry = self.sidecars.get(block_hash)
        if entry is None or not entry[1]:
            return "missing-body: the proposal came without its sealed body"
        reason = "bad-body"
        for body in list(entry[1]):
            try:
                candidate = self.host.verify_candidate(header_rlp, body)
            except RpcError as exc:
                reason = f"{exc.reason_code or 'bad-body'}: {exc.message}"
                continue
            except Exception as exc:  # a hostile body must not stop consensus
                log.exception("verifying block 0x%s failed", block_hash.hex())
                reason = f"bad-body: {type(exc).__name__}"
                continue
            self._remember(self.candidates, block_hash, (height, candidate), MAX_CANDIDATES)
            self._drop_sidecars(block_hash)
            return None
        return reason

    def _decide(self, e: Decide, out: dict[str, Any]) -> bool:
        fb = e.finalized
        header_rlp = fb.block.payload
        block_hash = keccak(header_rlp)
        head = self.host.head_info()
        if fb.block.height <= head.number:
            return True  # imported meanwhile
        entry = self.candidates.get(block_hash)
        if entry is None:
            reason = self._verify_from_sidecars(block_hash, fb.block.height, header_rlp)
            entry = self.candidates.get(block_hash)
            if entry is None:
                log.error(
                    "decided block %d 0x%s cannot be committed here (%s); it will come by catch-up",
                    fb.block.height,
                    block_hash.hex(),
                    reason,
                )
                out["discarded"].append({"reason": "missing-body", "sender": None, "code": 0x16})
                return False
        candidate = entry[1]
        seals = list(fb.commit_seals)
        try:
            summary = self.host.commit_candidate(candidate, fb.round, fb.block.proposer, seals)
        except RpcError as exc:
            log.error("decided block %d could not be committed: %s", fb.block.height, exc.message)
            out["discarded"].append(
                {"reason": exc.reason_code or "commit-failed", "sender": None, "code": 0x16}
            )
            return False
        self._last_decided_round = fb.round
        body = candidate.body
        self._remember(self.bodies, block_hash, body, 16)
        self._forget_through(fb.block.height)
        out["decided"].append(
            {
                "number": fb.block.height,
                "hash": block_hash,
                "header": header_rlp,
                "body": body,
                "round": fb.round,
                "proposer": fb.block.proposer,
                "seals": seals,
                # public: the governance records it carried (None without governance), so
                # that an observer can follow the governance state (docs/PROTOCOL.md)
                "gov": None if candidate.governance is None else candidate.governance.section,
                "summary": summary,
            }
        )
        log.info(
            "decided block %d 0x%s in round %d (%d seals)",
            fb.block.height,
            block_hash.hex()[:16],
            fb.round,
            len(seals),
        )
        return True


def _block_of(message: Any) -> Block | None:
    if isinstance(message, Proposal):
        return message.proposed_block
    if isinstance(message, RoundChange):
        return message.proposed_block_for_next_round
    if isinstance(message, NewBlock):
        return message.finalized.block
    return None


def awaiting_secret(what: str) -> RpcError:
    return ServerError(
        f"{what} is not available yet: this node has not received the consortium secret "
        "(it joins through a member node; see coco_nodeStatus)",
        reason="awaiting-secret",
    )
