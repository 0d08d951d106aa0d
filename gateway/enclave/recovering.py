"""Recovery shares inside the enclave (docs/GOVERNANCE.md, "Recovery").

**Issuing.** Whenever the governance state's share generation has no share set recorded
here (block 0 on a chain whose members have encryption keys; after a block whose events
include ``RefreshRecoveryShares``), an enclave that holds the consortium secret makes the
generation's share set with ``recovery.issue_from_secret``: deterministic from the secret
and the state, so every node records the same bytes and no set travels between nodes. The
set and the wrapped secret are public: the ledger's meta ``recovery.shares`` keeps the
newest generation's in the clear, served by ``coco_govRecoveryShare``.

**Recovering.** A consortium node started with ``--recover`` whose data directory holds no
consortium secret enters the state ``recovering``: it reads the newest share set from its
ledger, derives its recovery key for that generation from its node key
(``recovery.enclave_key``), publishes it in an attestation, and takes members' signed share
submissions (``share_record``). Each is checked (form, domain, signer, generation, holder,
node, then the share against its commitment) and kept in meta ``recovery.submitted``, still
sealed to the recovery key, before it is acknowledged: a node killed meanwhile reads them
back on its next start in recovery mode. At the threshold the enclave combines the shares,
unwraps the secret, checks it against the chain (the head block's sealed body must open
under it), seals it beside the ledger and opens as usual.

**After a recovery.** The recovered enclave keeps a recovery record (``recovered.py``: the
members' signed submissions it combined) in meta ``recovery.record`` and in its governance
pool until a block carries it; every node that applies it takes the service back to
``opening`` and issues the next share generation. Until then this node refuses users'
transactions too (``network-not-open``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from gateway import clock
from gateway.enclave import govern
from gateway.enclave import messages as m
from gateway.enclave.blocks import open_body
from gateway.enclave.consortium import split_generations
from gateway.enclave.keys import (
    SECRET_FILE,
    KeyRing,
    LocalSealer,
    write_consortium_secret,
    write_generations,
)
from gateway.errors import BlockRefused, InvalidParams, ServerError
from gateway.governance import recovered, recovery, share_record
from gateway.governance import state as gs
from gateway.governance.errors import GovernanceError
from gateway.governance.typed import Domain, canonical_json
from gateway.protocol import attestation

log = logging.getLogger("gateway.enclave.recovery")

SHARES_META = "recovery.shares"  # the newest share set and wrapped secret (public JSON)
SUBMITTED_META = "recovery.submitted"  # accepted submissions (sealed to the recovery key)
RECORD_META = "recovery.record"  # the recovery record, until a block carries it
MAX_SUBMISSIONS = recovery.MAX_HOLDERS


@dataclass
class Recovering:
    issued: recovery.Issued
    key: X25519PrivateKey
    terms: dict[str, Any]  # the governance state's measurements, platforms, trusted nodes
    shares: dict[bytes, recovery.Share] = field(default_factory=dict)
    records: dict[bytes, str] = field(default_factory=dict)  # member -> record text

    @property
    def context(self) -> recovery.ShareContext:
        return self.issued.share_set.context


def _h(b: bytes) -> str:
    return "0x" + b.hex()


class RecoveryMethods:
    """Mixed into ``gateway.enclave.core.Enclave``."""

    governance: Any
    ledger: Any
    keys: KeyRing
    state: str
    chain_id: int
    genesis_hash: bytes
    validator: bytes
    measurement: bytes
    measured_code: str
    epoch_period: int
    _attested_report: Any  # Enclave._attested_report(key): this enclave's report binding key
    terms: Any
    _node_key: bytes
    _data_dir: Path
    _sealer: LocalSealer
    _opened: m.Open
    _recovery: Recovering | None = None
    _shares_generation: int | None = None
    _recovery_pending: bool = False  # a recovery record waits for its block

    def _finish_open(self, secret: bytes) -> None:
        raise NotImplementedError  # the enclave's

    # ------------------------------------------------------------------ issuing
    def _stored_shares(self) -> recovery.Issued | None:
        raw = self.ledger.get_meta(SHARES_META)
        return None if raw is None else recovery.Issued.from_json(json.loads(raw))

    def _issue_recovery_shares(self) -> None:
        """Record the share set of the state's share generation if it is not recorded yet."""
        self._recovery = None  # the secret is here (recovered, or joined): no recovery mode
        gov = self.governance
        if gov is None:
            return
        self._pool_recovery_record()
        s = gov.state
        holders = s.share_holders()
        if not holders or self._shares_generation == s.shares_generation:
            return
        stored = self._stored_shares()
        if stored is not None and stored.share_set.context.generation == s.shares_generation:
            self._shares_generation = s.shares_generation
            return
        context = recovery.ShareContext(
            self.chain_id, bytes(self.genesis_hash), s.shares_generation
        )
        issued = recovery.issue_from_secret(
            # ledger secret rotation: generations 0..the state's, 0 first, so that recovery
            # restores the whole history (gateway.enclave.rotation; 32 bytes before any
            # rotation); the state's, not all held: a node that joined ahead of its head
            # issues the same bytes as the others
            b"".join(self.keys.all_generations()[: s.ledger_generation + 1]),
            context=context,
            threshold=s.recovery_threshold,
            holders=holders,
            ledger_generation=s.ledger_generation,
        )
        self.ledger.put_meta(SHARES_META, canonical_json(issued.to_json()).encode())
        if self.ledger.get_meta(SUBMITTED_META) is not None:
            self.ledger.delete_meta(SUBMITTED_META)
        self._shares_generation = s.shares_generation
        log.info(
            "recovery shares of generation %d recorded: the consortium secret wrapped under a "
            "fresh key, split %d-of-%d among members %s",
            s.shares_generation,
            s.recovery_threshold,
            len(holders),
            ", ".join(_h(a)[:10] for a, _ in holders),
        )

    # ------------------------------------------------------------------ after a recovery
    def _pool_recovery_record(self) -> None:
        """Keep this node's recovery record in the governance pool until a block applies it
        (then the state's share generation has moved past the record's, and it is
        forgotten); a record the state refuses is dropped, with a log line."""
        raw = self.ledger.get_meta(RECORD_META)
        self._recovery_pending = False
        if raw is None:
            return
        gov = self.governance
        try:
            record = recovered.decode_recovery(raw)
            if record.generation != gov.state.shares_generation:
                self.ledger.delete_meta(RECORD_META)  # applied (or overtaken)
                return
            if recovered.recovery_hash(raw) not in gov.pool:
                head = self.engine.head  # type: ignore[attr-defined]
                gov.submit(
                    raw,
                    int(head.block_number) + 1,
                    max(int(clock.now()), int(head.timestamp) + 1),
                    joins_too=True,
                )
        except (GovernanceError, ServerError) as exc:
            log.warning(
                "recovery: the recovery record is refused (%s), dropped: %s",
                exc.reason_code,
                exc.message,
            )
            self.ledger.delete_meta(RECORD_META)
            return
        self._recovery_pending = True

    def _recovery_unrecorded(self) -> bool:
        """Whether this node recovered the secret and its record waits for a block."""
        return self._recovery_pending

    def _recovery_record_hash(self) -> bytes | None:
        raw = self.ledger.get_meta(RECORD_META)
        return None if raw is None else recovered.recovery_hash(raw)

    # ------------------------------------------------------------------ recovery mode
    def _start_recovery(self) -> None:
        """Enter recovery mode (``--recover``, no consortium secret here)."""
        if self.terms is None:
            raise InvalidParams("recovery mode is for consortium nodes", reason="not-a-consortium")
        try:
            issued = self._stored_shares()
        except GovernanceError as exc:
            log.error("recovery mode: the recorded share set does not read: %s", exc.message)
            return
        if issued is None:
            log.error(
                "recovery mode: this ledger records no recovery share set (its consortium has "
                "no members with encryption keys, or the ledger is from before shares were "
                "issued): it cannot recover the consortium secret; it can only join through "
                "a node that holds it"
            )
            return
        context = issued.share_set.context
        if context.chain_id != self.chain_id or context.genesis_hash != bytes(self.genesis_hash):
            log.error("recovery mode: the recorded share set is of another consortium")
            return
        rec = Recovering(issued, recovery.enclave_key(self._node_key, context), self._gov_terms())
        self._recovery = rec
        self.state = "recovering"
        kept = self.ledger.get_meta(SUBMITTED_META)
        for text in json.loads(kept) if kept is not None else []:
            try:
                self._accept_share(text.encode(), persist=False)
            except GovernanceError as exc:
                log.warning("recovery mode: dropped a kept submission: %s", exc.message)
        holders = [_h(s.member) for s in issued.share_set.shares]
        log.info(
            "recovery mode: node 0x%s waits for %d of the %d members' recovery shares of "
            "generation %d (holders %s); %d share(s) so far%s; recovery key 0x%s",
            self.validator.hex(),
            issued.share_set.threshold,
            len(holders),
            context.generation,
            ", ".join(holders),
            len(rec.shares),
            f" (from {', '.join(_h(a) for a in rec.shares)})" if rec.shares else "",
            recovery.public_bytes(rec.key).hex(),
        )
        if len(rec.shares) >= issued.share_set.threshold:
            self._complete_recovery()

    def _gov_terms(self) -> dict[str, Any]:
        """What a member checks the recovering node against, from the governance state at the
        ledger's head (public, in the clear): allowed measurements and platforms, whether
        virtual enclaves are allowed, the trusted nodes."""
        head = self.ledger.head()
        gov = govern.open_governance(
            self.ledger,
            self.terms.raw,
            bytes(self.genesis_hash),
            0 if head is None else head.number,
        )
        if gov is None:
            return {}
        full = gs.to_json(gov.state)
        return {
            "measurements": full["measurements"],
            "platforms": full["platforms"],
            "allowVirtual": full["allowVirtual"],
            "trustedNodes": sorted(a for a, n in full["nodes"].items() if n["state"] == "trusted"),
        }

    def _accept_share(self, raw: bytes, *, persist: bool) -> dict[str, Any]:
        rec = self._recovery
        if rec is None:
            raise GovernanceError(
                "not-recovering",
                "this node is not in recovery mode (it holds the consortium secret, or was "
                "not started with --recover)",
            )
        record = share_record.decode(raw)
        member = share_record.verify(record, Domain(self.chain_id, bytes(self.genesis_hash)))
        msg = record.message
        share_set = rec.issued.share_set
        if msg.generation != rec.context.generation:
            raise GovernanceError(
                "wrong-generation",
                f"the share is of generation {msg.generation}; this node recovers generation "
                f"{rec.context.generation}",
                generation=rec.context.generation,
            )
        share_set.for_member(member)  # unknown-holder
        if msg.node != self.validator:
            raise GovernanceError(
                "wrong-node",
                f"the share is sealed to node 0x{msg.node.hex()}; this is node "
                f"0x{self.validator.hex()}",
            )
        share = recovery.open_submission(msg.share, rec.key, rec.context, member, self.validator)
        recovery.check_share(share_set, member, share)  # wrong-share, naming the member
        if member in rec.shares:
            raise GovernanceError(
                "duplicate", f"the share of 0x{member.hex()} was submitted already"
            )
        if len(rec.shares) >= MAX_SUBMISSIONS:
            raise GovernanceError("bad-share", "too many submissions")
        rec.shares[member] = share
        rec.records[member] = raw.decode()
        if persist:  # kept before acknowledged: a kill -9 after this loses nothing
            self.ledger.put_meta(SUBMITTED_META, json.dumps(list(rec.records.values())).encode())
        log.info(
            "recovery: accepted the share of member 0x%s: %d of %d shares",
            member.hex(),
            len(rec.shares),
            share_set.threshold,
        )
        return self._recovery_progress(member)

    def _recovery_progress(self, member: bytes | None = None) -> dict[str, Any]:
        rec = self._recovery
        answer: dict[str, Any] = {"state": self.state, "recovered": rec is None}
        if member is not None:
            answer["member"] = _h(member)
        if rec is not None:
            answer["submitted"] = len(rec.shares)
            answer["threshold"] = rec.issued.share_set.threshold
        return answer

    def _complete_recovery(self) -> None:
        rec = self._recovery
        assert rec is not None
        key = recovery.recover(rec.issued.share_set, rec.shares)
        # the wrapped secret is every generation, 0 first (ledger secret rotation)
        secret, rotated = split_generations(
            recovery.unwrap_secret(key, rec.issued.wrapped, rec.context)
        )
        self._check_recovered(secret, rotated)
        # the members' submissions, for every node: back to "opening", new shares (kept
        # before the secret is sealed: a node that has the secret has its record)
        self.ledger.put_meta(
            RECORD_META,
            recovered.encode_recovery(
                self.validator, rec.context.generation, [t.encode() for t in rec.records.values()]
            ),
        )
        if rotated:
            write_generations(self._data_dir, self._sealer, self.chain_id, rotated)
        write_consortium_secret(self._data_dir, self._sealer, self.chain_id, secret)
        count = len(rec.shares)
        self._recovery = None
        log.info(
            "recovery: combined %d members' shares and unwrapped the consortium secret; it "
            "opens the chain's sealed blocks; sealed in %s: the ledger's history is readable "
            "again",
            count,
            SECRET_FILE,
        )
        self._finish_open(secret)
        if self.ledger.get_meta(SUBMITTED_META) is not None:
            self.ledger.delete_meta(SUBMITTED_META)

    def _check_recovered(self, secret: bytes, rotated: dict[int, bytes] | None = None) -> None:
        """The secret must open the head block's sealed body (if there is a block); after
        a rotation, with the generation that sealed it (``rotated``: generations 1..n)."""
        head = self.ledger.head()
        if head is None or head.number == 0:
            return
        block = self.ledger.block_by_number(head.number)
        ring = KeyRing(
            node_key=self._node_key,
            secret=secret,
            epoch_period=self.epoch_period,
            grace=0,
            rotated=tuple(v for _, v in sorted((rotated or {}).items())),
        )
        try:
            open_body(ring.body_key_of, self.chain_id, block.hash, block.body)
        except BlockRefused:
            raise GovernanceError(
                "wrong-share",
                f"the recovered secret does not open block {head.number}'s sealed body",
            ) from None

    # ------------------------------------------------------------------ messages
    def _on_RecoverySubmit(self, msg: m.RecoverySubmit) -> dict[str, Any]:
        answer = self._accept_share(bytes(msg.record), persist=True)
        rec = self._recovery
        if rec is not None and len(rec.shares) >= rec.issued.share_set.threshold:
            self._complete_recovery()
            answer = {**answer, **self._recovery_progress(), "submitted": len(rec.shares)}
            answer["threshold"] = rec.issued.share_set.threshold
            answer["record"] = self._recovery_record_hash()  # for the host to forward
        return answer

    def _on_RecoveryInfo(self, msg: m.RecoveryInfo) -> dict[str, Any]:
        """The recovery status and, with ``member``, that member's issued share."""
        rec = self._recovery
        issued = rec.issued if rec is not None else self._stored_shares()
        if issued is None:
            raise GovernanceError(
                "no-recovery-shares",
                "no recovery share set is recorded on this node (no member has an encryption key)",
            )
        share_set = issued.share_set
        answer: dict[str, Any] = {
            "state": self.state,
            "recovering": rec is not None,
            "chainId": share_set.context.chain_id,
            "genesis": _h(share_set.context.genesis_hash),
            "generation": share_set.context.generation,
            "ledgerGeneration": issued.ledger_generation,
            "threshold": share_set.threshold,
            "holders": [_h(s.member) for s in share_set.shares],
            "node": _h(self.validator),
        }
        if rec is not None:
            public = recovery.public_bytes(rec.key)
            report = self._attested_report(public)
            answer["submitted"] = [_h(a) for a in rec.shares]
            answer.update(rec.terms)
            answer["recoveryKey"] = _h(public)
            answer["attestation"] = {
                "report": report.to_json(),
                "signature": _h(attestation.sign(report, self._node_key)),
            }
        if msg.member is not None:
            issued_share = share_set.for_member(bytes(msg.member))
            answer["share"] = {
                "member": _h(issued_share.member),
                "index": issued_share.index,
                "commitment": _h(issued_share.commitment),
                "ciphertext": _h(issued_share.ciphertext),
            }
        return answer
