"""Inside the enclave: the node key, the ledger's sealed part, and the execution engine.

``Enclave.handle`` takes one decoded message and returns plain data or raises RpcError.
Both runtimes (separate process, in-process for tests) drive this same object.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import rlp
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eth.abc import BlockHeaderAPI
from eth.constants import BLANK_ROOT_HASH
from eth.db.schema import SchemaV1
from eth_account import Account
from eth_utils import keccak, to_checksum_address

from gateway import clock
from gateway.consensus.qbft.messages import Block as QbftBlock
from gateway.consensus.qbft.messages import commit_seal_digest, seen_public_key
from gateway.consensus.qbft.validation import quorum
from gateway.consensus.seal import SEAL_VERSION, seal_digest, sign_seal
from gateway.devaccounts import derive
from gateway.enclave import consortium, govern, recovering, rotation, snapshot
from gateway.enclave import messages as m
from gateway.enclave.blocks import (
    VALIDATION_RULES,
    BlockLifecycle,
    Candidate,
    body_generation,
    decode_header,
    open_body_full,
)
from gateway.enclave.keys import (
    NODE_KEY_FILE,
    SECRET_FILE,
    KeyRing,
    LocalSealer,
    SealedKeyError,
    measurement,
    read_consortium_secret,
    read_generations,
    read_node_key,
    write_consortium_secret,
    write_generations,
    write_node_key,
)
from gateway.enclave.sessions import MAX_REVOCATIONS, SessionBook
from gateway.enclave.storage import StorageSealer
from gateway.errors import (
    AccountStateRefusal,
    BlockRefused,
    InvalidParams,
    RpcError,
    ServerError,
    SnapshotRefused,
    Unauthorized,
)
from gateway.execution import format as fmt
from gateway.execution.balances import is_contract_code
from gateway.execution.calls import CallArgs
from gateway.execution.chain import (
    CREATE2_DEPLOYER,
    CREATE2_DEPLOYER_CODE,
    GenesisAccount,
    GenesisSpec,
    genesis_block_hash,
)
from gateway.execution.engine import Engine
from gateway.execution.logs import LogFilter, topic_bytes
from gateway.execution.views import sender_of
from gateway.governance import joins, ledger_secret
from gateway.governance import section as gsec
from gateway.governance import state as gs
from gateway.governance.errors import GovernanceError
from gateway.ledger import LEDGER_FILE, SNAPSHOT_META, CommittedBlock, Ledger, SealedValueError
from gateway.protocol import attestation, envelope, query

log = logging.getLogger("gateway.enclave")

NODE_KEYS_META = "rotation.nodeKeys"  # node public keys learned from joins (public JSON)
MAX_NODE_KEYS = 4096

# bounds of the consortium's batch messages
MAX_IMPORT_BLOCKS = 256
MAX_EXPORT_BLOCKS = 256
MAX_FORWARDED_TXS = 4096
MAX_REVOCATION_BLOBS = 1024  # sealed revocation blobs per ImportRevocations
FORWARDED_TX_INFO = b"coco-gateway/forwarded-tx/v1"
FORWARDED_TX_INFO_V2 = b"coco-gateway/forwarded-tx/v2"  # sealed: sender (20 bytes) || raw
# messages served under the build lock (one block operation at a time), not the enclave lock
BUILD_LOCK_MESSAGES = (
    m.BuildBlock,
    m.ImportBlocks,
    m.ConsensusStep,
    m.JoinComplete,
    m.ImportSnapshot,
    m.FinishSnapshot,
    m.DropSnapshot,
)
# the attestation publishes the current and the next epoch's key; admitting the next one
# keeps a client whose clock (or a node whose clock) is ahead at an epoch edge working
ADMISSION_LOOKAHEAD = 1
# live (unexpired) signed-query nonces the ledger keeps: at most MAX_LEASH_SECONDS each
MAX_LIVE_QUERY_NONCES = 1_000_000


class _EnvelopeKeys:
    """Opens request envelopes with the epoch keys derived from the consortium secret."""

    def __init__(self, keys: KeyRing, chain_id: int) -> None:
        self._keys = keys
        self._chain_id = chain_id
        self._epoch_keys: dict[int, X25519PrivateKey] = {}

    def _key(self, epoch: int) -> X25519PrivateKey:
        """An epoch's private transaction key, derived once (HKDF) and kept."""
        key = self._epoch_keys.get(epoch)
        if key is None:
            if len(self._epoch_keys) > 64:
                self._epoch_keys.clear()
            key = self._epoch_keys[epoch] = self._keys.tx_key(epoch)
        return key

    def open(
        self, data: bytes, sender: bytes, to: bytes | None, *, admission: bool
    ) -> envelope.OpenedRequest:
        if admission:
            # new requests must use a key of the current window; what was admitted once
            # (a pooled or mined transaction) stays readable with its own epoch's key
            return envelope.open_request(
                data,
                chain_id=self._chain_id,
                keys_by_epoch=self._key,
                current_epoch=envelope.epoch_at(int(time.time()), self._keys.epoch_period),
                sender=sender,
                to=to,
                grace=self._keys.grace,
                lookahead=ADMISSION_LOOKAHEAD,
            )
        return envelope.reopen_request(
            data, chain_id=self._chain_id, keys_by_epoch=self._key, sender=sender, to=to
        )


class Enclave(recovering.RecoveryMethods, BlockLifecycle, govern.GovernanceMethods):
    """One node's enclave. Opening runs in two parts: the node key, the ledger's meta and
    header chain first; the key ring, sealed storage, engine, sessions and pool once the
    consortium secret is here (at once, except on a consortium node that has not joined yet:
    it waits in state "awaiting-secret" for ``JoinComplete``)."""

    engine: Engine
    keys: KeyRing

    def __init__(self, opened: m.Open) -> None:
        self._lock = threading.RLock()  # the engine's pool, head and caches; the ledger
        self._build_lock = threading.Lock()  # one block at a time
        self._opened = opened
        data_dir = Path(opened.data_dir)
        self._data_dir = data_dir
        # meta and the header chain are readable now; kv and the pool once the keys are open
        self.ledger = Ledger(
            data_dir / LEDGER_FILE,
            durable_fsync=opened.durable_fsync,
            seal_storage=opened.seal_storage,
        )
        self.ledger.check_integrity()
        self.dev_keys: dict[bytes, bytes] = {}
        if opened.dev_mnemonic:
            for acct in derive(opened.dev_mnemonic, opened.dev_accounts):
                self.dev_keys[bytes.fromhex(acct.address[2:])] = acct.private_key
        self._sealer = LocalSealer.from_data_dir(data_dir)
        key: bytes | None
        if opened.consortium is not None:  # beside the ledger, not in it (keys.py)
            key = consortium_node_key(data_dir, self._sealer, self.ledger)
        else:
            key = sealed_secret(self.ledger, self._sealer, "node_key", "node identity key")
        assert key is not None
        self._node_key = key
        self.validator = bytes.fromhex(Account.from_key(key).address[2:])
        self._own_public = rotation.public_key_of(key)  # a rotated secret's share opens here
        self._node_keys: dict[bytes, bytes] | None = None  # learned node keys (rotation)
        self.measurement, self.measured_code = measurement()
        log.info(
            "virtual enclave: measurement 0x%s (%s); a software enclave protects nothing "
            "against this machine's operator",
            self.measurement.hex(),
            self.measured_code,
        )
        self.role = opened.role
        self.strict = opened.privacy == "strict"
        self.public_balances = opened.public_balances
        self._private_balances = _wants_private_balances(opened)
        self.epoch_period = opened.epoch_period
        # the QBFT validator set and the genesis validation rule (gateway.enclave.blocks);
        # a consortium node's terms replace these
        self.consensus_validators: tuple[bytes, ...] = (self.validator,)
        self.governance: govern.Governance | None = None  # terms with members: govern.py
        self.validation_rule = VALIDATION_RULES[0]
        self._candidates: OrderedDict[bytes, Candidate] = OrderedDict()
        # the single-node dev chain: blocks carry the v1 seal, not QBFT commit seals
        self.dev_chain = opened.consortium is None
        self.terms: consortium.Terms | None = None
        self.qbft: consortium.QbftDriver | None = None
        self._join_key: X25519PrivateKey | None = None
        self._exporter = snapshot.Exporter(self.ledger)
        self.chain_id = opened.chain_id
        spec: GenesisSpec | None = None
        if opened.consortium is not None:
            terms = self.terms = consortium.parse_terms(opened.consortium)
            if opened.chain_id not in (0, terms.chain_id):
                raise InvalidParams(
                    f"the node is configured for chain {opened.chain_id}, its consortium's "
                    f"terms say chain {terms.chain_id}",
                    reason="bad-terms",
                )
            self.chain_id = terms.chain_id
            self.consensus_validators = terms.validators
            self.validation_rule = terms.validation
            self.epoch_period = terms.epoch_period
            spec = consortium.genesis_spec(terms)
        stored = self.ledger.get_meta("genesis")
        if stored is not None:
            self._check_stored_genesis(GenesisSpec.from_json(stored))
        elif spec is None:
            spec = self._genesis_spec(opened)
        self._spec = spec
        secret = self._consortium_secret()
        if secret is None:
            self.state = "awaiting-secret"
            head = self.ledger.head()
            self.genesis_hash = (
                self.ledger.block_by_number(0).hash  # type: ignore[union-attr]
                if head is not None
                else genesis_block_hash(spec)  # type: ignore[arg-type]
            )
            log.info(
                "node 0x%s awaits the consortium secret (chain %d, genesis 0x%s): it joins "
                "through a member node",
                self.validator.hex(),
                self.chain_id,
                self.genesis_hash.hex(),
            )
            if opened.recover:
                self._start_recovery()
            return
        self._finish_open(secret)

    def _consortium_secret(self) -> bytes | None:
        """The consortium secret: a dev node's (made on its first start), or the one sealed
        beside this consortium node's ledger (the genesis node's was made at ``coco-gateway
        init``; the others' came in the join). None when this node must join: a consortium
        node never makes one, not even the genesis node, since a second secret would split
        the consortium's confidentiality in two."""
        terms = self.terms
        if terms is None:
            return sealed_secret(
                self.ledger, self._sealer, "consortium_secret", "consortium secret", make=True
            )
        secret = consortium_secret_of(self._data_dir, self._sealer, terms.chain_id, self.ledger)
        if secret is None and terms.genesis_node == self.validator:
            log.warning(
                "this is the consortium's genesis node, but its data directory %s holds no "
                "sealed consortium secret (%s): it does not make a new one (that would give "
                "the consortium two secrets); it joins through a node that holds the secret",
                self._data_dir,
                SECRET_FILE,
            )
        return secret

    def _check_stored_genesis(self, spec: GenesisSpec) -> None:
        data_dir, opened, terms = self._data_dir, self._opened, self.terms
        if terms is not None:
            if spec.extra_data != terms.digest:  # the genesis commits to its terms
                raise InvalidParams(
                    f"the data directory {data_dir} holds a chain made under other consortium "
                    f"terms (its genesis commits to 0x{spec.extra_data.hex()}, these terms hash "
                    f"to 0x{terms.digest.hex()}); use the consortium.json it was made with, "
                    "or another data directory",
                    reason="bad-terms",
                )
        else:
            if spec.chain_id != opened.chain_id:
                raise InvalidParams(
                    f"the data directory {data_dir} holds chain {spec.chain_id}, not "
                    f"{opened.chain_id}; pass --chain-id {spec.chain_id} or use another directory"
                )
            if spec.fork != opened.fork:
                raise InvalidParams(
                    f"the data directory {data_dir} holds a {spec.fork} chain, not {opened.fork}; "
                    f"pass --fork {spec.fork} or use another directory"
                )
            if self._private_balances and not spec.private_balances:
                raise InvalidParams(
                    f"the chain in {data_dir} was created without the private-balances rule, "
                    "so its contracts can read any account's balance (BALANCE): a strict node "
                    "cannot keep balances private on it; start with --public-balances, or "
                    "create a new chain in another --data-dir"
                )

    def _finish_open(self, secret: bytes) -> None:
        """The rest of opening, once the consortium secret is here."""
        opened = self._opened
        rotated: dict[int, bytes] = {}
        if self.terms is not None:
            rotated = read_generations(self._data_dir, self._sealer, self.chain_id)
        if sorted(rotated) != list(range(1, len(rotated) + 1)):
            raise SealedKeyError(
                f"the sealed ledger secret generations {sorted(rotated)} are not 1..n"
            )
        self.keys = KeyRing(
            node_key=self._node_key,
            secret=secret,
            epoch_period=self.epoch_period,
            grace=opened.epoch_grace,
            rotated=tuple(rotated[g] for g in sorted(rotated)),
        )
        if opened.seal_storage:
            self.ledger.set_sealer(StorageSealer(self.keys.storage_key))
        stored = self.ledger.get_meta("genesis")
        if stored is None:
            spec = self._spec
            assert spec is not None
            self.engine = Engine(self.ledger.kv, spec, create=True, **self._engine_options(opened))
            head = self.engine.head
            self.ledger.commit_genesis(
                CommittedBlock(0, head.hash, rlp.encode(head)),
                {"genesis": spec.to_json()},
            )
            log.info("created chain %d at genesis 0x%s", spec.chain_id, head.hash.hex())
        else:
            spec = GenesisSpec.from_json(stored)
            self.engine = Engine(self.ledger.kv, spec, create=False, **self._engine_options(opened))
            if self.ledger.kv.dirty:
                self.ledger.kv.discard()
            self._check_head()
        self.genesis_hash = self.engine.header_by_number(0).hash  # type: ignore[union-attr]
        self.governance = govern.open_governance(
            self.ledger,
            None if self.terms is None else self.terms.raw,
            bytes(self.genesis_hash),
            int(self.engine.head.block_number),
        )
        self._apply_policies()
        self._nonce_key = hmac.new(
            self.keys.token_key, b"coco-gateway/query-nonce/v1", hashlib.sha256
        ).digest()
        self.sessions = SessionBook(
            self.keys.token_key, self.chain_id, self.ledger, chain_tag=self.genesis_hash
        )
        self._migrate_revocations()
        self._issue_recovery_shares()
        self._restore_pool()
        if self.terms is not None and (
            self.validator in self.terms.validators
            or (self.governance is not None and self.role == "validator")
        ):  # on a governed chain a validator-role node runs QBFT once a vote adds it
            self.qbft = consortium.QbftDriver(
                self, consortium.qbft_config(self.terms, self.genesis_hash), self._node_key
            )
        elif self.terms is not None and self.role == "validator":
            log.warning(
                "node 0x%s runs as a validator but is not in the consortium's validators: "
                "it will follow the chain and not vote",
                self.validator.hex(),
            )
        self.state = "ready"

    def _engine_options(self, opened: m.Open) -> dict[str, Any]:
        self.envelopes = _EnvelopeKeys(self.keys, self.chain_id)
        return {
            "coinbase": self.validator,
            "envelopes": self.envelopes,
            "require_encryption": opened.require_encryption,
        }

    def _genesis_spec(self, opened: m.Open) -> GenesisSpec:
        alloc = {CREATE2_DEPLOYER: GenesisAccount(code=CREATE2_DEPLOYER_CODE, nonce=1)}
        for address, balance in opened.genesis_alloc:
            alloc[bytes(address)] = GenesisAccount(balance=int(balance))
        return GenesisSpec(
            chain_id=opened.chain_id,
            fork=opened.fork,
            gas_limit=opened.gas_limit,
            timestamp=opened.genesis_timestamp or int(time.time()),
            alloc=alloc,
            private_balances=_wants_private_balances(opened),
        )

    def _check_head(self) -> None:
        committed = self.ledger.head()
        head = self.engine.head
        if committed is None or committed.hash != head.hash:
            raise RuntimeError(
                "ledger is inconsistent: the header chain and the state database disagree "
                "about the head block"
            )
        log.info("resumed at block %d (0x%s)", head.block_number, head.hash.hex())

    def _restore_pool(self) -> None:
        """Re-admit the transactions accepted before the restart.

        Rules that judge a transaction against the head state of the moment (fee cap against
        base fee, cost against balance, the envelope's epoch window) are not applied again:
        a running node would have kept such a transaction waiting too. Only what can never
        be mined (already mined, replaced, malformed) is dropped, with a log line.
        """
        restored = dropped = 0
        for entry in self.ledger.pool_entries():
            try:
                ptx = self.engine.admit(entry.raw, restoring=True)
            except RpcError as exc:
                self.ledger.pool_remove([entry.hash])
                dropped += 1
                log.info(
                    "dropped pooled tx 0x%s on restart: %s", entry.hash.hex(), _reason(exc.message)
                )
                continue
            self.engine.accept(ptx)
            restored += 1
        if restored or dropped:
            log.info("restored %d pending transactions (%d no longer valid)", restored, dropped)

    # ------------------------------------------------------------------ dispatch
    # messages a node awaiting the consortium secret serves
    AWAITING_SERVES = (
        m.GetStatus,
        m.JoinRequest,
        m.JoinComplete,
        m.SignLink,
        m.RecoveryInfo,
        m.RecoverySubmit,
    )

    def handle(self, msg: Any) -> Any:
        """Serve one message. Thread-safe: block building may run beside everything else.

        Every handler holds the enclave lock, except those that build, verify or commit a
        block (``BUILD_LOCK_MESSAGES``): they hold the build lock (one at a time) and take
        the enclave lock only to pick transactions and to commit; while a block executes,
        the pool keeps admitting transactions and reads are answered from the committed head.
        """
        handler = getattr(self, "_on_" + type(msg).__name__, None)
        if handler is None:
            raise InvalidParams(f"the enclave does not serve {type(msg).__name__}")
        if self.state != "ready" and not isinstance(msg, self.AWAITING_SERVES):
            raise consortium.awaiting_secret(type(msg).__name__)
        if isinstance(msg, BUILD_LOCK_MESSAGES):
            with self._build_lock:
                return handler(msg)
        with self._lock:
            return handler(msg)

    def close(self) -> None:
        self._exporter.close()
        self.ledger.close()

    def _on_GetStatus(self, msg: m.GetStatus) -> dict[str, Any]:
        if self.state != "ready":
            committed = self.ledger.head()
            return {
                "state": self.state,
                "role": self.role,
                "validator": self.validator,
                "chainId": self.chain_id,
                "genesisHash": self.genesis_hash,
                "head": {
                    "number": 0 if committed is None else committed.number,
                    "hash": self.genesis_hash if committed is None else committed.hash,
                },
                "finalized": 0 if committed is None else committed.number,
                "joinPending": self._join_key is not None,
                "recovery": None if self._recovery is None else self._recovery_progress(),
            }
        head = self.engine.head
        status: dict[str, Any] = {
            "state": self.state,
            "role": self.role,
            "chainId": self.engine.chain_id,
            "fork": self.engine.spec.fork,
            "head": {"number": head.block_number, "hash": head.hash, "timestamp": head.timestamp},
            "genesisHash": self.genesis_hash,
            "finalized": self.engine.finalized_number,
            "validator": self.validator,
            "poolSize": len(self.engine.pool),
            "gasPrice": self.engine.gas_price(),
            "baseFee": self.engine.next_base_fee(),
            "devAccounts": list(self.dev_keys),
            "privacy": "strict" if self.strict else "open",
            # the QBFT set of the next height (a governed chain's, as the votes left it)
            "validators": list(self.validators_for(head.block_number + 1)),
        }
        if self.qbft is not None:
            status["consensus"] = self.qbft.status()
        # the ledger secret generations held here and the one the next block is sealed under
        status["ledgerSecret"] = {
            "generations": self.keys.generation + 1,
            "sealing": self.sealing_generation(),
        }
        staged = snapshot.decode_state(self.ledger.get_meta(SNAPSHOT_META))
        status["snapshot"] = None if staged is None else self._snapshot_progress(staged)
        return status

    # ------------------------------------------------------------------ the consortium
    def head_info(self) -> consortium.HeadInfo:
        """The committed head, as the QBFT driver needs it."""
        with self._lock:
            head = self.engine.head
            committed = self.ledger.block_by_hash(head.hash)
        proposer = committed.proposer if committed is not None and head.block_number else b""
        return consortium.HeadInfo(
            head.block_number, head.hash, head.timestamp, proposer if proposer else None
        )

    def get_meta(self, name: str) -> bytes | None:
        return self.ledger.get_meta(name)

    def put_meta(self, name: str, value: bytes) -> None:
        self.ledger.put_meta(name, value)

    def _on_ConsensusStep(self, msg: m.ConsensusStep) -> dict[str, Any]:
        if self.qbft is None:
            raise InvalidParams(
                f"node 0x{self.validator.hex()} is not a validator of this chain: it runs "
                "no consensus (members and dev nodes do not)",
                reason="not-a-validator",
            )
        self._exporter.expire(time.monotonic())
        return self.qbft.step(msg)

    def _on_SignLink(self, msg: m.SignLink) -> bytes:
        return consortium.sign_link(self._node_key, msg.transcript)

    def _attested_report(self, key: bytes) -> Any:
        """This enclave's attestation report binding the X25519 public ``key`` (a join key,
        or the recovery key members seal their shares to)."""
        return consortium.join_report(
            chain_id=self.chain_id,
            measurement=self.measurement,
            code=self.measured_code,
            node_address=self.validator,
            epoch_period=self.epoch_period,
            grace=self._opened.epoch_grace,
            join_key=key,
            now=int(time.time()),
        )

    def _on_JoinRequest(self, msg: m.JoinRequest) -> dict[str, Any]:
        if self.terms is None or self.state == "ready":
            raise InvalidParams(
                "this node holds the consortium secret already: it has nothing to join",
                reason="already-joined",
            )
        self._join_key = X25519PrivateKey.generate()  # kept in memory only
        join_public = self._join_key.public_key().public_bytes_raw()
        report = self._attested_report(join_public)
        log.info("join requested: attesting join key 0x%s", join_public.hex()[:16])
        return {
            "report": report.to_json(),
            "signature": attestation.sign(report, self._node_key),
            "joinKey": join_public,
        }

    def _on_JoinAdmit(self, msg: m.JoinAdmit) -> dict[str, Any]:
        if self.terms is None:
            raise InvalidParams(
                "a dev node is a consortium of one: it admits no other node",
                reason="not-a-consortium",
            )
        try:
            if self.governance is None:
                report = consortium.check_join_request(msg.request, self.terms)
            else:  # who may join is the governance state's (docs/GOVERNANCE.md, "Joins")
                report = self._admit_by_governance(msg.request, int(time.time()))
        except RpcError as exc:
            # a pending node asks every few seconds: its host counts those (node-pending)
            (log.debug if exc.reason_code == "node-pending" else log.warning)(
                "refused a join: %s", exc.message
            )
            raise
        assert report.join_key is not None
        self._learn_node_key(
            rotation.public_key_of_attestation(report, bytes(msg.request.get("signature", b"")))
        )
        wrapped = consortium.wrap_secret(
            b"".join(self.keys.all_generations()),  # every generation: old blocks stay readable
            report.join_key,
            consortium.join_associated_data(self.chain_id, self.genesis_hash, report.node_address),
        )
        log.info(
            "admitted node 0x%s (measurement 0x%s): sent it the consortium secret, encrypted "
            "to its attested join key",
            report.node_address.hex(),
            report.measurement.hex()[:16],
        )
        return {"wrapped": wrapped}

    def _on_JoinComplete(self, msg: m.JoinComplete) -> dict[str, Any]:
        with self._lock:
            if self.state == "ready":
                raise InvalidParams(
                    "this node holds the consortium secret already", reason="already-joined"
                )
            if self._join_key is None:
                raise InvalidParams(
                    "no join is pending on this node (JoinRequest first; a restart forgets "
                    "the join key)",
                    reason="no-pending-join",
                )
            secret, rotated = consortium.split_generations(
                consortium.unwrap_secret(
                    msg.wrapped,
                    self._join_key,
                    consortium.join_associated_data(
                        self.chain_id, self.genesis_hash, self.validator
                    ),
                )
            )
            if rotated:
                write_generations(self._data_dir, self._sealer, self.chain_id, rotated)
            write_consortium_secret(self._data_dir, self._sealer, self.chain_id, secret)
            self._join_key = None
            log.info("joined the consortium: the consortium secret is sealed here")
            self._finish_open(secret)
            return self._on_GetStatus(m.GetStatus())

    # ------------------------------------------------------------------ ledger secret rotation
    def _rotation_maker(self, height: int) -> Any:
        """What ``Governance.build`` calls when block ``height`` rotates the ledger secret."""

        def make(state: gs.GovernanceState) -> tuple[bytes, bytes]:
            return rotation.make_record(
                state,
                height,
                chain_id=self.chain_id,
                genesis=bytes(self.genesis_hash),
                own=(self.validator, self._own_public),
                key_of=self._node_public_key,
            )

        return make

    def _learned_node_keys(self) -> dict[bytes, bytes]:
        """Node public keys learned from join requests and join records (ledger meta
        ``rotation.nodeKeys``: public, kept so that a restarted proposer still knows them)."""
        if self._node_keys is None:
            raw = self.ledger.get_meta(NODE_KEYS_META)
            keys: dict[bytes, bytes] = {}
            if raw is not None:
                for value in json.loads(raw):
                    public = bytes.fromhex(value[2:])
                    keys[ledger_secret.address_of(public)] = public
            self._node_keys = keys
        return self._node_keys

    def _learn_node_key(self, public: bytes | None) -> None:
        if public is None or len(public) != ledger_secret.PUBLIC_KEY_BYTES:
            return
        known = self._learned_node_keys()
        address = ledger_secret.address_of(public)
        if known.get(address) == public or len(known) >= MAX_NODE_KEYS:
            return
        known[address] = public
        self.ledger.put_meta(
            NODE_KEYS_META,
            json.dumps(["0x" + k.hex() for _, k in sorted(known.items())]).encode(),
        )

    def _learn_join_keys(self, records: list[bytes]) -> None:
        """A committed block's join records name their nodes' keys (their signatures); the
        validators' keys seen in their QBFT messages are kept too (a restarted proposer
        knows them before they speak again)."""
        known = self._learned_node_keys()
        for validator in self.validators_for(int(self.engine.head.block_number) + 1):
            if validator not in known:
                self._learn_node_key(seen_public_key(validator))
        for raw in records:
            if joins.is_join(raw):
                try:
                    record = joins.decode_join(raw)
                except GovernanceError:
                    continue
                self._learn_node_key(
                    rotation.public_key_of_attestation(record.report, record.signature)
                )

    def _node_public_key(self, address: bytes) -> bytes | None:
        """A trusted node's identity public key, if known: learned from its join, or seen in
        a valid signature of it (a validator's QBFT messages)."""
        return self._learned_node_keys().get(address) or seen_public_key(address)

    def _rotated_secret(self, outcome: Any, height: int) -> tuple[int, bytes | None]:
        """This node's share of the ledger secret record that ends ``outcome``'s section
        (the section's public rules are checked): opened; ``bad-governance`` when it does
        not open, or when there is none and this node does not hold the generation yet."""
        try:
            generation, secret = rotation.take_secret(
                outcome.records[-1],
                self._node_key,
                self.validator,
                chain_id=self.chain_id,
                genesis=bytes(self.genesis_hash),
            )
        except GovernanceError as exc:
            raise BlockRefused("bad-governance", exc.message) from None
        if secret is None and self.keys.generation < generation:
            raise BlockRefused(
                "bad-governance",
                f"block {height} starts ledger secret generation {generation} without a share "
                f"for this node 0x{self.validator.hex()}: it cannot read the blocks after it "
                "(a node that is not trusted, or whose key the proposer did not know)",
            )
        return generation, secret

    def _adopt_generation(self, generation: int, secret: bytes) -> None:
        """Keep ledger secret ``generation``: sealed beside the ledger (a consortium node),
        then in the key ring. A generation made again (another candidate of the rotating
        height) replaces the one kept."""
        rotated = list(self.keys.rotated)
        if generation == len(rotated) + 1:
            rotated.append(secret)
        elif 1 <= generation <= len(rotated):
            if rotated[generation - 1] == secret:
                return
            rotated[generation - 1] = secret
        else:
            raise BlockRefused(
                "bad-governance",
                f"ledger secret generation {generation} follows no generation held here "
                f"(newest {len(rotated)})",
            )
        if self.terms is not None:
            write_generations(
                self._data_dir,
                self._sealer,
                self.chain_id,
                {g + 1: s for g, s in enumerate(rotated)},
            )
        self.keys = dataclasses.replace(self.keys, rotated=tuple(rotated))
        log.info(
            "ledger secret generation %d kept (sealed in the data directory); blocks after the "
            "rotating block are sealed under it",
            generation,
        )

    # ------------------------------------------------------------------ sealed snapshots
    def _snapshots_allowed(self) -> None:
        if self.dev_chain:
            raise SnapshotRefused(
                "not-a-consortium", "a dev node is a consortium of one: it has no snapshots"
            )

    def _on_ExportSnapshot(self, msg: m.ExportSnapshot) -> dict[str, Any]:
        self._snapshots_allowed()
        if msg.head is not None and (not isinstance(msg.head, bytes) or len(msg.head) != 32):
            raise SnapshotRefused("bad-cursor", "a snapshot's head is a 32-byte block hash")
        if not isinstance(msg.limit, int) or isinstance(msg.limit, bool) or msg.limit < 0:
            raise SnapshotRefused("bad-cursor", "a chunk limit is a non-negative integer")
        return self._exporter.export(
            key=self.keys.snapshot_key_of(self.keys.generation),
            generation=self.keys.generation,
            chain_id=self.chain_id,
            genesis=self.genesis_hash,
            head=msg.head,
            cursor=msg.cursor,
            limit=msg.limit,
        )

    @staticmethod
    def _snapshot_progress(state: dict[str, Any]) -> dict[str, Any]:
        return {
            "height": state["height"],
            "hash": state["hash"],
            "next": state["next"],
            "bytes": state["bytes"],
        }

    def _on_ImportSnapshot(self, msg: m.ImportSnapshot) -> dict[str, Any]:
        self._snapshots_allowed()
        try:
            chunk = snapshot.open_chunk(
                self.keys.snapshot_key_of, self.chain_id, self.genesis_hash, msg.chunk
            )
        except SnapshotRefused as exc:
            log.warning("refused a snapshot chunk: %s: %s", exc.reason_code, exc.message)
            raise
        if chunk.sealed != self.ledger.sealed:
            raise SnapshotRefused(
                "bad-snapshot-chunk",
                "the snapshot comes from a ledger with another storage mode (sealed or "
                "--insecure-plaintext-storage) than this node's",
            )
        state = snapshot.decode_state(self.ledger.get_meta(SNAPSHOT_META))
        restart = chunk.start == snapshot.CURSOR_START
        if restart:
            with self._lock:
                head = self.engine.head.block_number
            if chunk.height <= head:
                raise SnapshotRefused(
                    "snapshot-not-ahead",
                    f"the snapshot is of block {chunk.height}; this node is at {head} already",
                )
            state = {"height": chunk.height, "hash": chunk.hash, "next": b"", "bytes": 0}
            log.info("receiving a snapshot of block %d 0x%s", chunk.height, chunk.hash.hex()[:16])
        elif (
            state is None
            or state["hash"] != chunk.hash
            or state["height"] != chunk.height
            or state["next"] != chunk.start
        ):
            raise SnapshotRefused(
                "snapshot-out-of-order",
                "the chunk does not continue the snapshot staged here (another snapshot, "
                "or not the next chunk)",
            )
        new = {
            **state,
            "next": chunk.next,
            "bytes": int(state["bytes"]) + chunk.size,
            "totals": None if chunk.totals is None else list(chunk.totals),
        }
        self.ledger.stage_snapshot(
            chunk.kv, chunk.blocks, snapshot.encode_state(new), restart=restart
        )
        return self._snapshot_progress(new)

    def _on_DropSnapshot(self, msg: m.DropSnapshot) -> bool:
        self.ledger.drop_snapshot()
        return True

    def _on_FinishSnapshot(self, msg: m.FinishSnapshot) -> dict[str, Any]:
        self._snapshots_allowed()
        state = snapshot.decode_state(self.ledger.get_meta(SNAPSHOT_META))
        if state is None:
            raise SnapshotRefused("no-snapshot", "no snapshot is staged here")
        try:
            header, governance = self._check_snapshot(state)
        except SnapshotRefused as exc:
            log.warning(
                "refused the snapshot of block %s: %s: %s",
                state.get("height"),
                exc.reason_code,
                exc.message,
            )
            self.ledger.drop_snapshot()
            raise
        with self._lock:
            self.ledger.open_snapshot(
                None if governance is None else (governance[1], gs.encode(governance[0]))
            )
            if governance is not None and self.governance is not None:
                self.governance.state = governance[0]
            stored = self.ledger.get_meta("genesis")
            assert stored is not None
            self.engine = Engine(
                self.ledger.kv,
                GenesisSpec.from_json(stored),
                create=False,
                **self._engine_options(self._opened),
            )
            self._check_head()
            self._apply_policies()
            self._candidates.clear()
            if self.qbft is not None:
                self.qbft.node = None  # made again at the new head by the next step
                self.qbft._forget_through(header.block_number)
            self._restore_pool()
        log.info(
            "opened the snapshot of block %d 0x%s (state root 0x%s): later blocks come by catch-up",
            header.block_number,
            bytes(header.hash).hex(),
            bytes(header.state_root).hex()[:16],
        )
        return {
            "height": header.block_number,
            "hash": bytes(header.hash),
            "stateRoot": bytes(header.state_root),
        }

    def _check_snapshot(
        self, state: dict[str, Any]
    ) -> tuple[Any, tuple[gs.GovernanceState, list[tuple[int, bytes, bytes, bytes]]] | None]:
        """The staged snapshot's checks before it is opened; its head header, and on a chain
        with governance the governance state at its head and each block's governance row,
        replayed from the blocks' sealed bodies (``_replay_governance``)."""
        if state.get("next") is not None or state.get("totals") is None:
            raise SnapshotRefused("snapshot-incomplete", "not every chunk has been received")
        rows, block_rows = self.ledger.staged_counts()
        if [rows, block_rows] != list(state["totals"]):
            raise SnapshotRefused(
                "snapshot-incomplete",
                f"staged {rows} kv rows and {block_rows} blocks; the snapshot has "
                f"{state['totals'][0]} and {state['totals'][1]}",
            )
        height, head_hash = int(state["height"]), bytes(state["hash"])
        with self._lock:
            own = self.engine.head.block_number
        if height <= own:
            raise SnapshotRefused(
                "snapshot-not-ahead", f"the snapshot is of block {height}; this node is at {own}"
            )
        blocks = self.ledger.staged_blocks()
        if [b.number for b in blocks] != list(range(height + 1)):
            raise SnapshotRefused("broken-chain", "the snapshot's blocks are not 0 to its head")
        if blocks[0].hash != self.genesis_hash:
            raise SnapshotRefused(
                "wrong-genesis",
                f"the snapshot's block 0 is 0x{blocks[0].hash.hex()}, this node's genesis is "
                f"0x{self.genesis_hash.hex()}",
            )
        parent = None
        header: Any = None
        for block in blocks:
            try:
                header = decode_header(block.header)
            except BlockRefused as exc:
                raise SnapshotRefused("broken-chain", exc.message) from None
            if bytes(header.hash) != block.hash or header.block_number != block.number:
                raise SnapshotRefused(
                    "broken-chain", f"block row {block.number} is not its header's hash"
                )
            if parent is not None and bytes(header.parent_hash) != parent:
                raise SnapshotRefused(
                    "broken-chain", f"block {block.number}'s parent is not block {block.number - 1}"
                )
            parent = block.hash
        top = blocks[-1]
        if top.hash != head_hash:
            raise SnapshotRefused("broken-chain", "the snapshot's head is not its last block")
        governance = self._replay_governance(blocks)
        try:
            self.check_seals(
                top.number,
                top.proposer,
                top.header,
                top.round,
                list(top.seals),
                None if governance is None else governance[0].validators_at(top.number),
            )
        except BlockRefused as exc:
            raise SnapshotRefused("bad-seals", exc.message) from None
        try:
            if self.ledger.staged_value(head_hash) != top.header:
                raise SnapshotRefused(
                    "state-root-missing", "the snapshot's state lacks its head header"
                )
            head_key = SchemaV1.make_canonical_head_hash_lookup_key()
            if self.ledger.staged_value(head_key) != head_hash:
                raise SnapshotRefused(
                    "state-root-missing", "the snapshot's canonical head record is not its head"
                )
            root = bytes(header.state_root)
            if root != BLANK_ROOT_HASH:
                node = self.ledger.staged_value(root)
                if node is None or keccak(node) != root:
                    raise SnapshotRefused(
                        "state-root-missing",
                        f"the head's state root 0x{root.hex()} does not resolve in the snapshot",
                    )
        except SealedValueError as exc:
            raise SnapshotRefused("bad-snapshot-row", str(exc)) from None
        return header, governance

    def _replay_governance(
        self, blocks: list[CommittedBlock]
    ) -> tuple[gs.GovernanceState, list[tuple[int, bytes, bytes, bytes]]] | None:
        """On a chain with governance, the state at a snapshot's head, replayed from block
        0's (the terms) through each block's governance section, read from its sealed body
        and checked against its header's extraData as a validator checks it; and each
        block's ledger row. A snapshot thus carries its governance without a format change,
        and a section that does not fit its header is ``bad-governance``."""
        if self.governance is None or self.terms is None:
            return None
        current = gs.genesis_from_terms(self.terms.raw, bytes(self.genesis_hash))
        rows: list[tuple[int, bytes, bytes, bytes]] = []
        for block in blocks[1:]:
            header = decode_header(block.header)
            if block.body is None:
                raise SnapshotRefused(
                    "bad-snapshot-row", f"block {block.number} came without its sealed body"
                )
            try:
                if body_generation(block.body) != current.ledger_generation:
                    raise BlockRefused(
                        "bad-body",
                        f"block {block.number}'s body is not sealed under its generation "
                        f"{current.ledger_generation}",
                    )
                _, _, records = open_body_full(
                    self.keys.body_key_of, self.chain_id, block.hash, block.body
                )
                current, _ = gsec.apply_section(
                    current, records, block.number, header.timestamp, bytes(header.extra_data)
                )
            except BlockRefused as exc:
                raise SnapshotRefused("bad-snapshot-row", exc.message) from None
            except gsec.SectionRefused as exc:
                raise SnapshotRefused("bad-governance", f"block {block.number}: {exc}") from None
            rows.append(
                (block.number, block.hash, gsec.section_bytes(records), gs.state_digest(current))
            )
        log.info(
            "replayed the governance of the snapshot's %d blocks (state 0x%s)",
            len(rows),
            gs.state_digest(current).hex()[:16],
        )
        return current, rows

    # ------------------------------------------------------------------ who may see what
    def _viewer(self, auth: str | None) -> bytes | None:
        """The signed-in account behind a session token (None when anonymous)."""
        return None if auth is None else self.sessions.verify(auth).address

    def _tx_filter(self, auth: str | None) -> Callable[[Any], bool] | None:
        """Which transactions the caller may see; None means all (privacy "open")."""
        if not self.strict:
            self._viewer(auth)  # a bad token is an error whatever the privacy mode
            return None
        viewer = self._viewer(auth)
        return lambda tx: viewer is not None and sender_of(tx) == viewer

    def _own(self, result: dict[str, Any] | None, auth: str | None) -> dict[str, Any] | None:
        """A transaction or receipt, or None (as if unknown) when it is not the caller's."""
        viewer = self._viewer(auth)
        if result is None or not self.strict:
            return result
        if viewer is None or result["from"].lower() != "0x" + viewer.hex():
            return None
        return result

    def _on_GetBlock(self, msg: m.GetBlock) -> dict[str, Any] | None:
        header = self.engine.resolve(msg.ref)
        if header is None:
            return None
        return self.engine.block_rpc(header, msg.full, self._tx_filter(msg.auth))

    def _on_GetBlockTxCount(self, msg: m.GetBlockTxCount) -> int | None:
        header = self.engine.resolve(msg.ref)
        return None if header is None else self.engine.block_tx_count(header)

    def _on_GetTxByBlockIndex(self, msg: m.GetTxByBlockIndex) -> dict[str, Any] | None:
        header = self.engine.resolve(msg.ref)
        if header is None:
            return None
        return self._own(self.engine.tx_by_index_rpc(header, msg.index), msg.auth)

    def _on_GetAccount(self, msg: m.GetAccount) -> Any:
        viewer = self._viewer(msg.auth)
        private = self.strict and not self.public_balances
        if private and msg.kind in ("balance", "nonce") and viewer != msg.address:
            # a contract's balance is public (any code reads it: gateway.execution.balances)
            header = self.engine.resolve(msg.ref)
            public = (
                msg.kind == "balance"
                and header is not None
                and is_contract_code(self.engine.code(msg.address, header))
            )
            if not public:
                raise Unauthorized(
                    f"not authorized to read the {msg.kind} of 0x{msg.address.hex()}: this "
                    "node keeps balances and nonces private; use that account's personal RPC "
                    "URL (sign in at the node's root page, or coco-gateway token)",
                    reason="private-account",
                )
        header = self.engine.require(msg.ref)
        if msg.kind == "balance":
            return str(self.engine.balance(msg.address, header))
        if msg.kind == "nonce":
            return self.engine.nonce(msg.address, header, pending=msg.ref == "pending")
        if msg.kind == "code":
            return self.engine.code(msg.address, header)
        raise InvalidParams(f"unknown account field {msg.kind!r}")

    def _on_GetStorage(self, msg: m.GetStorage) -> bytes:
        self._viewer(msg.auth)
        if self.strict:
            raise Unauthorized(
                "eth_getStorageAt is not available on this node: contract storage is "
                "confidential and is read only through the contract's own functions",
                reason="private-storage",
            )
        header = self.engine.require(msg.ref)
        return self.engine.storage(msg.address, msg.slot, header).to_bytes(32, "big")

    def _call_sender(self, msg: m.Call, block_number: int) -> bytes | None:
        """msg.sender of a call: the signer of a signed query, else the signed-in account,
        else (privacy "strict") nobody, the zero address, whatever ``from`` says.

        ``block_number``: the block the call is answered at, which a signed query names."""
        if msg.query_signature is not None and msg.query_leash is not None:
            now = int(time.time())
            try:
                signer = query.check(
                    msg.query_signature,
                    chain_id=self.engine.chain_id,
                    genesis_hash=self.genesis_hash,
                    sender=msg.sender,
                    to=msg.to,
                    value=msg.value,
                    data=msg.data,
                    leash=msg.query_leash,
                    node=msg.query_node,
                    this_node=self.validator,
                    block_number=block_number,
                    head_number=self.engine.head.block_number,
                    now=now,
                )
                self._use_query_nonce(signer, msg.query_leash, now)
            except query.QueryError as exc:
                raise Unauthorized(f"signed query refused: {exc}", reason=exc.reason) from None
            return signer
        viewer = self._viewer(msg.auth)
        if viewer is not None:
            if msg.sender is not None and msg.sender != viewer:
                raise InvalidParams(
                    f"from 0x{msg.sender.hex()} is not the signed-in account 0x{viewer.hex()}"
                )
            return viewer
        return None if self.strict else msg.sender

    def _use_query_nonce(self, signer: bytes, leash: dict[str, int], now: int) -> None:
        """A signed query answers at most once: its (signer, nonce) is written to the ledger
        before the answer leaves, and kept until the leash expires (restarts included)."""
        nonce_id = hmac.new(
            self._nonce_key, signer + int(leash["nonce"]).to_bytes(8, "big"), hashlib.sha256
        ).digest()[:16]
        outcome = self.ledger.use_query_nonce(
            nonce_id, int(leash["expiry"]), now, MAX_LIVE_QUERY_NONCES
        )
        if outcome == "replayed":
            raise query.QueryError(
                "replayed",
                f"nonce {int(leash['nonce'])} of 0x{signer.hex()} was answered already: a "
                "signed query answers once; sign a new one",
            )
        if outcome == "full":
            raise query.QueryError(
                "too-many-queries",
                f"the node holds {MAX_LIVE_QUERY_NONCES} unexpired signed-query nonces; "
                "retry later or use a session (personal RPC URL)",
            )

    def _run_as_caller(self, msg: m.Call, run: Callable[[CallArgs, Any], Any]) -> Any:
        """Execute code for a caller: every method that runs code (eth_call, eth_estimateGas,
        and any later one) goes through here, so all get the same identity rule.

        The code runs as ``_call_sender`` decides (on a strict node: the signed-in account,
        the signer of a signed query, or nobody, the zero address, whatever ``from`` says);
        under the chain's private-balances rule that identity is also the one account
        besides the running contract whose balance BALANCE tells. A refusal that would tell
        an account's balance tells it only to a caller signed in as that account
        (``_tell_or_hide``): not to whoever holds a signed query, which anyone may send.
        """
        header = self.engine.require(msg.ref)
        sender = self._call_sender(msg, header.block_number)
        args = CallArgs(sender=sender, to=msg.to, gas=msg.gas, value=msg.value, data=msg.data)
        try:
            return run(args, header)
        except AccountStateRefusal as exc:
            raise self._tell_or_hide(exc, self._viewer(msg.auth)) from None
        except InvalidParams as exc:
            if exc.reason_code == envelope.EnvelopeAuthenticationError.reason:
                self._explain_sender(msg, sender or bytes(20))
            raise

    def _tell_or_hide(self, exc: AccountStateRefusal, viewer: bytes | None) -> RpcError:
        """The refusal with its balance or nonce for a caller signed in as the account (or
        anyone when balances are not private on this node), without them for everyone else."""
        private = self.strict and not self.public_balances  # the policies in force
        if not private or (viewer is not None and viewer == exc.account):
            return exc
        return ServerError(exc.private)

    def _on_Call(self, msg: m.Call) -> Any:
        if msg.estimate:
            return self._run_as_caller(msg, self.engine.estimate_gas)
        return self._run_as_caller(msg, self.engine.call)

    def _explain_sender(self, msg: m.Call, run_as: bytes) -> None:
        """An envelope that did not open for the sender the call runs as: if it opens for
        another identity the caller could have meant (its ``from``, the zero address, the
        signed-in account), say exactly that instead of "altered"."""
        viewer = None if msg.auth is None else self._viewer(msg.auth)
        candidates = [c for c in (msg.sender, bytes(20), viewer) if c is not None and c != run_as]
        for sealed_for in dict.fromkeys(candidates):
            try:
                self.envelopes.open(msg.data, sealed_for, msg.to, admission=True)
            except envelope.EnvelopeError:
                continue
            if viewer is not None:
                why = "a call on a personal RPC URL runs as its signed-in account"
            elif self.strict and run_as == bytes(20):
                why = (
                    "this node runs a call without a session or a signed query as the zero "
                    "address; sign the query, use your personal RPC URL, or seal for 0x0"
                )
            else:
                why = "a call runs as its from address (the zero address without one)"
            raise InvalidParams(
                f"invalid call envelope: sealed for sender 0x{sealed_for.hex()} but the node "
                f"runs this call as 0x{run_as.hex()}: {why}",
                reason=envelope.SenderMismatchError.reason,
                sealedFor="0x" + sealed_for.hex(),
                runAs="0x" + run_as.hex(),
            )

    def _on_SubmitRawTx(self, msg: m.SubmitRawTx) -> bytes:
        # the raw transaction may be a replay of someone else's: its sender's balance and
        # nonce are told only to a caller signed in as that sender
        viewer = self._viewer(msg.auth)
        try:
            return self._submit(msg.raw)
        except AccountStateRefusal as exc:
            raise self._tell_or_hide(exc, viewer) from None

    def _submit(self, raw: bytes) -> bytes:
        self._check_service_open()  # network-not-open while the service is opening
        ptx = self.engine.admit(raw)
        # durable before acknowledged: the pool row is committed before the caller hears back
        self.ledger.pool_add(ptx.hash, ptx.raw, ptx.replaces.hash if ptx.replaces else None)
        self.engine.accept(ptx)
        return ptx.hash

    def _on_SubmitTx(self, msg: m.SubmitTx) -> bytes:
        viewer = self._viewer(msg.auth)
        self._check_service_open()
        if self.strict and viewer != msg.sender:
            # the same answer whether or not the account is unlocked here
            raise Unauthorized(
                f"eth_sendTransaction from 0x{msg.sender.hex()} needs that account's personal "
                "RPC URL: on this node an unlocked account signs only for a caller signed in "
                "as it (sign in at the node's root page, or coco-gateway token)"
            )
        key = self.dev_keys.get(msg.sender)
        if key is None:
            raise ServerError(
                f"unknown account 0x{msg.sender.hex()}: only dev accounts are unlocked"
            )
        head = self.engine.head
        nonce = (
            msg.nonce
            if msg.nonce is not None
            else self.engine.nonce(msg.sender, head, pending=True)
        )
        tx: dict[str, Any] = {
            "chainId": self.engine.chain_id,
            "nonce": nonce,
            "to": to_checksum_address(msg.to) if msg.to else b"",
            "value": msg.value,
            "data": msg.data,
        }
        if msg.gas is None:
            args = CallArgs(sender=msg.sender, to=msg.to, value=msg.value, data=msg.data)
            tx["gas"] = self.engine.estimate_gas(args, head)
        else:
            tx["gas"] = msg.gas
        legacy = msg.gas_price is not None or msg.tx_type == 0
        if legacy:
            tx["gasPrice"] = msg.gas_price if msg.gas_price is not None else self.engine.gas_price()
        else:
            tip = msg.max_priority_fee_per_gas
            if tip is None:
                tip = min(10**9, msg.max_fee_per_gas) if msg.max_fee_per_gas is not None else 10**9
            fee_cap = msg.max_fee_per_gas
            if fee_cap is None:
                fee_cap = 2 * self.engine.next_base_fee() + tip
            tx.update(maxFeePerGas=fee_cap, maxPriorityFeePerGas=tip, type=2)
        if not msg.to:
            del tx["to"]
        signed = Account.sign_transaction(tx, key)
        return self._submit(bytes(signed.raw_transaction))

    def _on_GetTx(self, msg: m.GetTx) -> dict[str, Any] | None:
        return self._own(self.engine.tx_rpc(msg.hash), msg.auth)

    def _on_GetReceipt(self, msg: m.GetReceipt) -> dict[str, Any] | None:
        return self._own(self.engine.receipt_rpc(msg.hash), msg.auth)

    def _on_GetBlockReceipts(self, msg: m.GetBlockReceipts) -> list[dict[str, Any]] | None:
        header = self.engine.resolve(msg.ref)
        if header is None:
            return None
        receipts = self.engine.block_receipts_rpc(header)
        return [r for r in receipts if self._own(r, msg.auth) is not None]

    def _on_GetLogs(self, msg: m.GetLogs) -> list[dict[str, Any]]:
        if msg.block_hash is not None:
            flt = LogFilter(0, 0, tuple(msg.addresses), _topics(msg.topics), msg.block_hash)
        else:
            start = self._number(msg.from_block)
            end = self._number(msg.to_block)
            if start > end:
                return []
            flt = LogFilter(start, end, tuple(msg.addresses), _topics(msg.topics))
        return self.engine.logs(flt, self._log_visibility(msg.auth))

    def _log_visibility(self, auth: str | None) -> Callable[[Any, Any], bool] | None:
        """A log is its transaction's sender's, and of every account an indexed topic names."""
        if not self.strict:
            self._viewer(auth)
            return None
        viewer = self._viewer(auth)
        if viewer is None:
            return lambda tx, topics: False
        named = b"\x00" * 12 + viewer
        return lambda tx, topics: (
            sender_of(tx) == viewer or any(topic_bytes(t) == named for t in list(topics)[1:])
        )

    def _number(self, ref: m.BlockRef) -> int:
        if isinstance(ref, int):
            return ref
        return self.engine.require(ref).block_number

    def _on_FeeHistory(self, msg: m.FeeHistory) -> dict[str, Any]:
        newest = self.engine.require(msg.newest)
        return self.engine.fee_history(msg.count, newest, msg.percentiles)

    def _on_PoolStatus(self, msg: m.PoolStatus) -> dict[str, int]:
        executable = self.engine.executable_count()
        return {"pending": executable, "queued": len(self.engine.pool) - executable}

    def _on_PendingTxs(self, msg: m.PendingTxs) -> list[bytes]:
        viewer = self._viewer(msg.auth)
        if not self.strict:
            return self.engine.pending_hashes()
        return [] if viewer is None else self.engine.pending_hashes(viewer)

    # ------------------------------------------------------------------ sessions
    def _on_SiweMessage(self, msg: m.SiweMessage) -> str:
        return self.sessions.prepare(msg.address, msg.origin)

    def _on_SignIn(self, msg: m.SignIn) -> dict[str, Any]:
        token, session = self.sessions.sign_in(msg.message, msg.signature)
        log.info("session opened for 0x%s", session.address.hex())
        return {"token": token, "address": session.address, "expiresAt": session.expires_at}

    def _on_SignOut(self, msg: m.SignOut) -> dict[str, Any]:
        sealed = self.sessions.revoke(msg.auth)
        log.info("session signed out")
        return {"revocation": sealed}

    def _on_ExportRevocations(self, msg: m.ExportRevocations) -> list[bytes]:
        return self.sessions.export_revocations()

    def _on_ImportRevocations(self, msg: m.ImportRevocations) -> dict[str, Any]:
        if len(msg.blobs) > MAX_REVOCATION_BLOBS:
            raise InvalidParams(
                f"at most {MAX_REVOCATION_BLOBS} revocation blobs per import",
                reason="too-many-revocations",
            )
        added, refused, full = self.sessions.import_revocations(msg.blobs)
        if refused:
            log.info("refused %d revocation blob(s): they do not open", refused)
        if full:
            log.warning(
                "the revoked-sessions table is full: some sign-outs from other nodes are not "
                "kept (those sessions still open here until they expire)"
            )
        if added:
            log.info("%d session(s) signed out at another node", len(added))
        return {
            "added": len(added),
            "refused": refused,
            "relay": self.sessions.seal_revocations(added),
        }

    def _migrate_revocations(self) -> None:
        """Revoked sessions of a ledger written before consortium-wide sign-out (a JSON
        object in meta, session id hex -> expiry) move to the blinded table."""
        legacy = self.ledger.get_meta("revoked_sessions")
        if legacy is None:
            return
        now = int(time.time())
        rows = [
            (self.sessions.revocation_id(bytes.fromhex(sid)), int(expiry))
            for sid, expiry in json.loads(legacy).items()
            if int(expiry) > now
        ]
        self.ledger.add_revocations(rows, now, MAX_REVOCATIONS)
        self.ledger.delete_meta("revoked_sessions")

    def _on_MyActivity(self, msg: m.MyActivity) -> dict[str, Any]:
        viewer = self._viewer(msg.auth)
        assert viewer is not None
        return {"address": "0x" + viewer.hex(), "transactions": self.engine.activity(viewer)}

    def _on_WhoAmI(self, msg: m.WhoAmI) -> bytes | None:
        return self._viewer(msg.auth)

    def _on_BuildBlock(self, msg: m.BuildBlock) -> dict[str, Any] | None:
        """The dev chain's producer, a consortium of one: build and commit at once, sealed
        with the v1 seal (gateway.consensus.seal) as its only seal."""
        candidate = self.prepare_candidate(msg.timestamp, allow_empty=msg.allow_empty)
        if candidate is None:
            return None
        seal = sign_seal(self._node_key, self.engine.chain_id, candidate.hash)
        return self.commit_candidate(candidate, 0, self.validator, [seal])

    # ------------------------------------------------------------------ blocks between nodes
    def _on_ImportBlocks(self, msg: m.ImportBlocks) -> dict[str, Any]:
        if len(msg.blocks) > MAX_IMPORT_BLOCKS:
            raise InvalidParams(
                f"at most {MAX_IMPORT_BLOCKS} blocks per import", reason="too-many-blocks"
            )
        self._exporter.expire(time.monotonic())
        decided: list[dict[str, Any]] = []
        for exported in msg.blocks:
            if not isinstance(exported, dict):
                raise InvalidParams("an imported block is not a map", reason="bad-block")
            summary = self.import_finalized(exported)
            if summary is not None:
                decided.append(summary)
        with self._lock:
            head = self.engine.head.block_number
        return {"imported": len(decided), "head": head, "decided": decided}

    def _exported(self, block: CommittedBlock, public: bool) -> dict[str, Any]:
        row = self.ledger.governance_row(block.number) if self.governance is not None else None
        return {
            "number": block.number,
            "hash": block.hash,
            "header": block.header,
            "body": None if public else block.body,
            "round": block.round,
            "proposer": block.proposer,
            "seals": list(block.seals),
            "gov": None if row is None else row[1],  # public governance records
        }

    def _on_ExportBlocks(self, msg: m.ExportBlocks) -> list[dict[str, Any]]:
        if msg.start < 0 or msg.count < 0:
            raise InvalidParams("start and count must not be negative", reason="bad-range")
        count = min(msg.count, MAX_EXPORT_BLOCKS)
        return [self._exported(b, msg.public) for b in self.ledger.blocks_range(msg.start, count)]

    def _committed(self, ref: Any) -> tuple[BlockHeaderAPI, CommittedBlock] | None:
        """The header ``ref`` names and the ledger's block of that number, if both exist."""
        header = self.engine.resolve(ref)
        if header is None:
            return None
        block = self.ledger.block_by_number(header.block_number)
        if block is None:
            return None
        return header, block

    def _on_GetFinality(self, msg: m.GetFinality) -> dict[str, Any] | None:
        found = self._committed(msg.ref)
        if found is None:
            return None
        block = found[1]
        if self.dev_chain:
            # the dev chain's blocks carry the v1 seal (gateway.consensus.seal)
            scheme, digest = "seal-v1", seal_digest(self.engine.chain_id, block.hash)
            validators: tuple[bytes, ...] = (self.validator,)
        else:
            scheme = "qbft-commit-seal-v1"
            digest = commit_seal_digest(
                QbftBlock(block.number, block.proposer, block.header).digest, block.round
            )
            validators = self.validators_for(block.number)
        return {
            "number": block.number,
            "hash": block.hash,
            "header": block.header,
            "round": block.round,
            "proposer": block.proposer,
            "scheme": scheme,
            "digest": digest,
            "seals": list(block.seals),
            "validators": list(validators),
            "quorum": quorum(len(validators)),
        }

    def _forwarded_ad(self, version: int = 1) -> bytes:
        chain = self.engine.chain_id.to_bytes(32, "big")
        return FORWARDED_TX_INFO + chain if version == 1 else FORWARDED_TX_INFO_V2 + chain

    def _on_ExportPooledTxs(self, msg: m.ExportPooledTxs) -> list[bytes]:
        """Pooled transactions sealed under the consortium's forwarding key: another node's
        host carries them without reading them (an enveloped one stays enveloped inside)."""
        if len(msg.hashes) > MAX_FORWARDED_TXS:
            raise InvalidParams(
                f"at most {MAX_FORWARDED_TXS} transactions per export", reason="too-many-txs"
            )
        aead = AESGCM(self.keys.forwarded_tx_key)
        out = self._export_governance([bytes(h) for h in msg.hashes])
        for tx_hash in msg.hashes:
            ptx = self.engine.pool.get(bytes(tx_hash))
            if ptx is None:
                continue
            nonce = secrets.token_bytes(12)
            sealed = aead.encrypt(nonce, ptx.sender + ptx.raw, self._forwarded_ad(2))
            out.append(b"\x02" + nonce + sealed)
        return out

    def _on_ImportPooledTxs(self, msg: m.ImportPooledTxs) -> dict[str, Any]:
        if len(msg.blobs) > MAX_FORWARDED_TXS:
            raise InvalidParams(
                f"at most {MAX_FORWARDED_TXS} transactions per import", reason="too-many-txs"
            )
        aead = AESGCM(self.keys.forwarded_tx_key)
        admitted: list[bytes] = []
        rows: list[tuple[bytes, bytes, bytes | None]] = []
        refused = 0
        governance: list[bytes] = []
        for blob in msg.blobs:
            if isinstance(blob, bytes) and blob[:1] == govern.RECORD_BLOB:  # public governance
                pooled = self._import_governance(blob, int(clock.now()))
                if pooled is None:
                    refused += 1
                else:
                    governance.append(pooled)
                continue
            if not isinstance(blob, bytes) or len(blob) < 29 or blob[0] not in (1, 2):
                refused += 1
                continue
            try:
                opened = aead.decrypt(blob[1:13], blob[13:], self._forwarded_ad(blob[0]))
                if blob[0] == 1:  # the raw transaction alone: recover its sender here
                    ptx = self.engine.admit(opened)
                elif len(opened) > 20:  # sender || raw: the forwarding enclave's recovery
                    ptx = self.engine.admit(opened[20:], sender=opened[:20])
                else:
                    refused += 1
                    continue
            except (InvalidTag, RpcError) as exc:
                if isinstance(exc, InvalidTag):
                    log.info("refused a forwarded transaction: it does not open")
                else:
                    log.debug("refused a forwarded transaction: %s", _reason(exc.message))
                refused += 1
                continue
            self.engine.accept(ptx)  # the batch's later transactions may follow it
            rows.append((ptx.hash, ptx.raw, ptx.replaces.hash if ptx.replaces else None))
            admitted.append(ptx.hash)
        # durable before acknowledged, as _submit, but one database commit for the batch
        self.ledger.pool_add_many(rows)
        answer: dict[str, Any] = {"admitted": admitted, "refused": refused}
        if governance:
            answer["governance"] = governance  # records pooled (not transactions)
        return answer

    def _forget_dropped(self, dropped: list[tuple[bytes, str]]) -> None:
        if dropped:
            self.ledger.pool_remove([h for h, _ in dropped])
            self.engine.pool.remove(h for h, _ in dropped)

    def _on_GetAttestation(self, msg: m.GetAttestation) -> dict[str, Any]:
        now = int(time.time())
        current = envelope.epoch_at(now, self.keys.epoch_period)
        report = attestation.Report(
            chain_id=self.engine.chain_id,
            platform=attestation.VIRTUAL,
            measurement=self.measurement,
            node_address=self.validator,
            tx_keys=tuple(
                attestation.TxKey(epoch, self.keys.tx_public(epoch))
                for epoch in (current, current + 1)
            ),
            epoch_period=self.keys.epoch_period,
            grace=self.keys.grace,
            issued_at=now,
            code=self.measured_code,
        )
        return {
            "report": report.to_json(),
            "signature": attestation.sign(report, self._node_key),
            "currentEpoch": current,
        }

    def _on_GetSeal(self, msg: m.GetSeal) -> dict[str, Any] | None:
        found = self._committed(msg.ref)
        if found is None:
            return None
        header, block = found
        return {
            "version": SEAL_VERSION,
            "chainId": self.engine.chain_id,
            "number": block.number,
            "hash": block.hash,
            "seal": block.seal,
            "sealer": block.sealer,
            "header": fmt.header_to_rpc(header),
        }

    # ------------------------------------------------------------------ traces and proofs
    def _on_CreateAccessList(self, msg: m.CreateAccessList) -> dict[str, Any]:
        """Refused on a strict node, whoever asks (docs/SECURITY.md): the list names the
        storage slots a call read, e.g. mapping keys derived from confidential state, which
        the contract's own answer does not reveal."""
        self._viewer(msg.auth)  # a bad token is an error whatever the privacy mode
        if self.strict:
            raise Unauthorized(ACCESS_LIST_REFUSED)
        call = msg.as_call()
        given = [(bytes(address), [bytes(k) for k in keys]) for address, keys in msg.access_list]
        return self._run_as_caller(  # type: ignore[no-any-return]
            call, lambda args, header: self.engine.create_access_list(args, header, given)
        )

    def _on_GetProof(self, msg: m.GetProof) -> dict[str, Any]:
        self._viewer(msg.auth)
        if self.strict:
            raise Unauthorized(PROOF_REFUSED)
        header = self.engine.require(msg.ref)
        return self.engine.proof(msg.address, msg.keys, header)


ACCESS_LIST_REFUSED = (
    "eth_createAccessList is not available on this node: an access list shows which "
    "accounts and storage slots a call touched, which can reveal confidential contract "
    "state; send transactions without one (it only saves gas)"
)
PROOF_REFUSED = (
    "eth_getProof is not available on this node: a proof carries balances, nonces, storage "
    "values and state-trie nodes, which this node keeps confidential"
)


def sealed_secret(
    ledger: Ledger, sealer: LocalSealer, name: str, what: str, *, make: bool = True
) -> bytes | None:
    """A 32-byte secret kept sealed in the ledger's meta: opened, or made now (``make``);
    None when there is none and ``make`` is off."""
    blob = ledger.get_meta(name + ".sealed")
    if blob is not None:
        return sealer.open(name, blob)
    legacy = ledger.get_meta(name)  # data directories from before sealing
    if legacy is None and not make:
        return None
    value = legacy if legacy is not None else secrets.token_bytes(32)
    store_sealed(ledger, sealer, name, value)
    if legacy is not None:
        ledger.delete_meta(name)
        log.info("sealed the %s that was stored in the clear", what)
    else:
        log.info("created the %s", what)
    return value


def store_sealed(ledger: Ledger, sealer: LocalSealer, name: str, value: bytes) -> None:
    ledger.put_meta(name + ".sealed", sealer.seal(name, value))


def _key_file_error(exc: SealedKeyError) -> InvalidParams:
    return InvalidParams(str(exc), reason="bad-key-file")


def consortium_node_key(data_dir: Path, sealer: LocalSealer, ledger: Ledger | None) -> bytes:
    """A consortium node's identity key, sealed in ``node-key.sealed`` beside its ledger:
    opened, moved there from the ledger's meta (data directories from before), or made."""
    try:
        key = read_node_key(data_dir, sealer)
        if key is not None:
            return key
        legacy = ledger.get_meta("node_key.sealed") if ledger is not None else None
        if legacy is not None:
            key = sealer.open("node_key", legacy)
            write_node_key(data_dir, sealer, key)
            assert ledger is not None
            ledger.delete_meta("node_key.sealed")
            log.info("moved the sealed node identity key out of the ledger, to %s", NODE_KEY_FILE)
            return key
    except SealedKeyError as exc:
        raise _key_file_error(exc) from None
    key = secrets.token_bytes(32)
    write_node_key(data_dir, sealer, key)
    log.info("created the node identity key (sealed in %s)", NODE_KEY_FILE)
    return key


def consortium_secret_of(
    data_dir: Path, sealer: LocalSealer, chain_id: int, ledger: Ledger | None
) -> bytes | None:
    """The consortium secret sealed beside a consortium node's ledger (moved there from the
    ledger's meta in data directories from before); None when it has none."""
    try:
        secret = read_consortium_secret(data_dir, sealer, chain_id)
        if secret is not None:
            return secret
        legacy = ledger.get_meta("consortium_secret.sealed") if ledger is not None else None
        if legacy is None:
            return None
        secret = sealer.open("consortium_secret", legacy)
        write_consortium_secret(data_dir, sealer, chain_id, secret)
        assert ledger is not None
        ledger.delete_meta("consortium_secret.sealed")
        log.info("moved the sealed consortium secret out of the ledger, to %s", SECRET_FILE)
        return secret
    except SealedKeyError as exc:
        raise _key_file_error(exc) from None


def make_identity(msg: m.MakeIdentity) -> dict[str, Any]:
    """``MakeIdentity`` (``coco-gateway init``): make (or open) a consortium node's identity
    key, sealed beside its ledger, and say who the node is. With the consortium's terms, and
    when this node is their genesis node, also make (or keep) the consortium secret, sealed
    beside the identity: the only place a consortium's secret is ever made."""
    data_dir = Path(msg.data_dir)
    sealer = LocalSealer.from_data_dir(data_dir)
    ledger = None
    if (data_dir / LEDGER_FILE).exists():  # a data directory from before: move its keys out
        ledger = Ledger(data_dir / LEDGER_FILE, seal_storage=msg.seal_storage)
    try:
        key = consortium_node_key(data_dir, sealer, ledger)
        address = bytes.fromhex(Account.from_key(key).address[2:])
        holds_secret = False
        if msg.consortium is not None:
            terms = consortium.parse_terms(msg.consortium)
            holds_secret = _init_secret(data_dir, sealer, terms, address, ledger)
    finally:
        if ledger is not None:
            ledger.close()
    digest, _ = measurement()
    return {
        "address": address,
        "measurement": digest,
        "platform": attestation.VIRTUAL,
        "consortiumSecret": holds_secret,
    }


def genesis_of(msg: m.GenesisOf) -> dict[str, Any]:
    """``GenesisOf``: the genesis block hash of these terms (an observer's, which then knows
    its consortium's genesis without trusting the first member it meets)."""
    terms = consortium.parse_terms(msg.consortium)
    return {
        "genesisHash": genesis_block_hash(consortium.genesis_spec(terms)),
        "chainId": terms.chain_id,
    }


def answer_first(msg: m.MakeIdentity | m.GenesisOf) -> dict[str, Any]:
    """A first message that opens nothing: MakeIdentity or GenesisOf."""
    if isinstance(msg, m.GenesisOf):
        return genesis_of(msg)
    return make_identity(msg)


def _init_secret(
    data_dir: Path,
    sealer: LocalSealer,
    terms: consortium.Terms,
    address: bytes,
    ledger: Ledger | None,
) -> bool:
    """At init: the genesis node makes the consortium secret (or keeps the one it made for
    this chain in an init that was interrupted); any other node holds one only if it joined."""
    try:
        secret = consortium_secret_of(data_dir, sealer, terms.chain_id, ledger)
    except InvalidParams:
        if terms.genesis_node != address:
            raise
        secret = None  # a secret of another chain, from an init of this directory before
        log.warning("replacing %s: it held the secret of another chain", SECRET_FILE)
    if secret is not None:
        return True
    if terms.genesis_node != address:
        return False
    write_consortium_secret(data_dir, sealer, terms.chain_id, secrets.token_bytes(32))
    log.info(
        "made the consortium secret of chain %d in the genesis node's enclave (sealed in %s)",
        terms.chain_id,
        SECRET_FILE,
    )
    return True


def _wants_private_balances(opened: m.Open) -> bool:
    """A strict node keeps balances private, so the chains it creates fix the rule."""
    return opened.privacy == "strict" and not opened.public_balances


def _topics(raw: list[list[bytes] | None]) -> tuple[tuple[bytes, ...] | None, ...]:
    return tuple(None if t is None else tuple(t) for t in raw)


def _reason(message: str) -> str:
    """The kind of a rejection, for the node's log, without the amounts, nonces or addresses
    that follow it (an account's balance and nonce are confidential: the log is outside)."""
    return message.split(":", 1)[0]
