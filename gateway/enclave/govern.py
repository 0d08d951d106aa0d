"""Governance inside the enclave: the pool of signed records waiting for a block, the
governance section a block carries, and the state after each committed block
(docs/GOVERNANCE.md, "In the node"; docs/PROTOCOL.md, "Governance section").

The rules, so that every node decides alike:

* A block's **governance section** is the list of signed records it carries, in order. Its
  canonical bytes are ``[`` + the records' canonical JSON joined by ``,`` + ``]`` (the
  canonical JSON of the list). The header's extraData commits to it: ``EMPTY_EXTRA``
  (``b"coco-gateway"``) for an empty section, else
  ``keccak256(SECTION_DOMAIN || section bytes)`` (32 bytes).
* The state after block ``h`` (timestamp ``t``) is: ``tick`` the state after ``h - 1`` at
  ``(h, t)``, then ``apply`` each record of the section in order at ``(h, t)``. A section
  holding a record the state refuses makes the block invalid (``bad-governance``): the
  proposer leaves such records out.
* The section travels inside the block's sealed body (key ``"gov"``) to validators and
  followers; the records are public and every node serves them in the clear
  (``coco_govProposals``...), and the ledger keeps each block's section and state digest in
  the clear (table ``governance``; the latest state in meta).

Nothing here does I/O: the enclave calls it with the lock held.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import BlockRefused, InvalidParams, ServerError
from gateway.governance import joins, recovered
from gateway.governance import section as gsec
from gateway.governance import state as gs
from gateway.governance.errors import GovernanceError
from gateway.governance.section import (  # noqa: F401 (the section's rules, named here too)
    EMPTY_EXTRA,
    MAX_SECTION,
    MAX_SECTION_BYTES,
    SECTION_DOMAIN,
    SECTION_VERSION,
    Record,
    apply_any,
    commitment,
    decode_any,
    hash_of,
    section_bytes,
)
from gateway.governance.typed import SignedRecord, decode_record

log = logging.getLogger("gateway.enclave.govern")

MAX_POOL = 256  # records waiting for a block
# a governance record forwarded in a `txs` frame: public, so not sealed ("G"; a sealed
# transaction's blob starts 0x01 or 0x02)
RECORD_BLOB = b"\x47"


def check_genesis_terms(raw: dict[str, Any]) -> None:
    """The governance fields of the terms, as block 0 will read them ("bad-terms")."""
    try:
        gs.genesis_from_terms(raw, bytes(32))
    except (ValueError, GovernanceError) as exc:
        raise InvalidParams(
            f"invalid consortium terms: governance: {exc}", reason="bad-terms"
        ) from None


@dataclass
class Outcome:
    """A block's governance: its records and the state after it (not yet committed)."""

    records: list[bytes]
    state: gs.GovernanceState
    events: list[Any]
    # a block that rotates the ledger secret: (the new generation, its secret as this
    # enclave made or opened it; None when the record has no share for this node)
    secret: tuple[int, bytes | None] | None = None

    @property
    def section(self) -> bytes:
        return section_bytes(self.records)

    def ledger_row(self) -> tuple[bytes, bytes, bytes]:
        """(section, state, state digest) as the ledger keeps them."""
        return self.section, gs.encode(self.state), gs.state_digest(self.state)


class Governance:
    """The governance state at the head, and the pool of records for the next blocks."""

    def __init__(self, state: gs.GovernanceState) -> None:
        self.state = state
        self.pool: OrderedDict[bytes, tuple[bytes, Record]] = OrderedDict()

    # ------------------------------------------------------------------ pool
    def submit(
        self, raw: bytes, height: int, now: int, *, joins_too: bool = False
    ) -> dict[str, Any]:
        """Check a record against the state at the head with the records already pooled
        applied (so a second identical ballot is a ``duplicate`` at once), as it would be
        applied at block ``height`` at time ``now``; then pool it. Join records only with
        ``joins_too`` (from an admitting enclave, or forwarded by another node; clients
        submit members' records), recovery records too. Raises the core's GovernanceError,
        or ServerError ``governance-pool-full``."""
        if not isinstance(raw, bytes):
            raise GovernanceError("bad-record", "a signed record is its canonical JSON bytes")
        record: Record = decode_any(raw) if joins_too else decode_record(raw)
        key = hash_of(raw, record)
        if key in self.pool:
            raise GovernanceError("duplicate", "this record is waiting for a block already")
        if len(self.pool) >= MAX_POOL:
            raise ServerError(
                f"the governance pool holds {MAX_POOL} records waiting for a block; try again "
                "after the next block",
                reason="governance-pool-full",
            )
        state = self._pooled_state(height, now)
        apply_any(state, record, height, now)  # raises the refusal, changes nothing
        self.pool[key] = (raw, record)
        if isinstance(record, joins.JoinRecord):
            return {"hash": key, "type": joins.JOIN_TYPE, "signer": record.address}
        if isinstance(record, recovered.RecoveryRecord):
            return {"hash": key, "type": recovered.RECOVERY_TYPE, "signer": record.node}
        return {"hash": key, "type": record.type, "signer": record.signer}

    def _pooled_state(self, height: int, now: int) -> gs.GovernanceState:
        state, _ = gs.tick(self.state, height, now)
        for _raw, record in self.pool.values():
            try:
                state, _ = apply_any(state, record, height, now)
            except GovernanceError:
                continue
        return state

    def export(self, hashes: list[bytes]) -> list[bytes]:
        return [self.pool[h][0] for h in hashes if h in self.pool]

    # ------------------------------------------------------------------ blocks
    def build(
        self,
        height: int,
        timestamp: int,
        rotate: Callable[[gs.GovernanceState], tuple[bytes, bytes]] | None = None,
    ) -> Outcome:
        """The proposer's section for block ``height``: the pooled records the state takes,
        in pool order; records it refuses leave the pool. When the section rotates the
        ledger secret, ``rotate(state after)`` makes the ledger secret record (and the new
        secret), appended last (gateway.governance.ledger_secret); if it cannot
        (``CannotRotate``, or no ``rotate``), the records that would rotate wait in the
        pool and the section is built without them. A block rotates at most once."""
        from gateway.enclave.rotation import CannotRotate

        generation = self.state.ledger_generation
        for allow_rotation in (rotate is not None, False):
            state, events = gs.tick(self.state, height, timestamp)
            records: list[bytes] = []
            size = 2
            for key, (raw, record) in list(self.pool.items()):
                # one slot and some room stay free for a ledger secret record
                if len(records) >= MAX_SECTION - 1 or size + len(raw) + 1 > MAX_SECTION_BYTES // 2:
                    break
                try:
                    after, more = apply_any(state, record, height, timestamp)
                except GovernanceError as exc:
                    log.info("governance record 0x%s left the pool: %s", key.hex()[:16], exc.reason)
                    del self.pool[key]
                    continue
                rotates = after.ledger_generation - generation
                if rotates > 1 or (rotates and not allow_rotation):
                    continue  # waits for a later block
                state = after
                records.append(raw)
                events.extend(more)
                size += len(raw) + 1
            if state.ledger_generation == generation:
                return Outcome(records, state, events)
            assert rotate is not None
            try:
                record_raw, secret = rotate(state)
            except CannotRotate as exc:
                log.warning("block %d: the ledger secret rotation waits: %s", height, exc)
                continue
            records.append(record_raw)
            return Outcome(records, state, events, (state.ledger_generation, secret))
        raise AssertionError("unreachable: a section without rotation always builds")

    def verify(self, records: Any, height: int, timestamp: int, extra_data: bytes) -> Outcome:
        """Another enclave's section for block ``height``: it must match the header's
        extraData and every record must apply ("bad-governance")."""
        if not isinstance(records, list) or not all(isinstance(r, bytes) for r in records):
            raise BlockRefused("bad-governance", "the governance section is not a list of records")
        try:
            state, events = gsec.apply_section(self.state, records, height, timestamp, extra_data)
        except gsec.SectionRefused as exc:
            raise BlockRefused("bad-governance", str(exc)) from None
        return Outcome(list(records), state, events)

    def committed(self, outcome: Outcome) -> None:
        """The block carrying ``outcome`` is committed: its state is the head's."""
        self.state = outcome.state
        for raw in outcome.records:
            try:
                self.pool.pop(hash_of(raw, decode_any(raw)), None)
            except GovernanceError:
                continue
        for event in outcome.events:
            log.info("governance: %s", gs.describe(event))

    # ------------------------------------------------------------------ reads
    def validators_at(self, height: int) -> tuple[bytes, ...]:
        return self.state.validators_at(height)


def read_state(data: bytes) -> gs.GovernanceState:
    return gs.decode(data)


def open_governance(
    ledger: Any, terms_raw: dict[str, Any] | None, genesis_hash: bytes, head: int
) -> Governance | None:
    """The governance at the ledger's head: the stored state, or block 0's from the terms;
    None when the terms name no members (no governance: static validators)."""
    from gateway.ledger.store import GOVERNANCE_STATE_META

    if terms_raw is None or "members" not in terms_raw:
        return None
    stored = ledger.get_meta(GOVERNANCE_STATE_META)
    if stored is not None:
        state = gs.decode(stored)
        row = ledger.governance_row(head)
        if row is not None and row[2] != gs.state_digest(state):
            raise RuntimeError(
                f"the stored governance state is not the one recorded at block {head}"
            )
        return Governance(state)
    if head != 0:
        # a ledger opened from a sealed snapshot does not carry the governance state yet
        raise RuntimeError(
            f"the ledger is at block {head} but holds no governance state (docs/GOVERNANCE.md)"
        )
    return Governance(gs.genesis_from_terms(terms_raw, genesis_hash))


def _no_governance() -> ServerError:
    return ServerError(
        "this consortium has no governance: its terms name no members (docs/GOVERNANCE.md)",
        reason="no-governance",
    )


class GovernanceMethods:
    """The enclave's governance messages (mixed into ``gateway.enclave.core.Enclave``)."""

    governance: Governance | None
    chain_id: int
    engine: Any
    ledger: Any
    strict: bool
    public_balances: bool

    # ------------------------------------------------------------------ decisions in force
    def _service_open(self) -> bool:
        """Whether users may transact: always without governance; on a governed chain when
        the state at the head says ``open`` and no recovery of this node waits for its
        record to be committed (recovering.py)."""
        gov = self.governance
        if gov is None:
            return True
        return gov.state.service == gs.OPEN and not self._recovery_unrecorded()

    def _recovery_unrecorded(self) -> bool:
        return False  # recovering.RecoveryMethods tells

    def _check_service_open(self) -> None:
        """Refuse a user's transaction while the service is ``opening`` (docs/GOVERNANCE.md,
        "The service"): ``network-not-open``."""
        if self._service_open():
            return
        raise ServerError(
            "network not open: the consortium's service is opening (after its genesis or a "
            "recovery), so no transaction is accepted until the members vote open_network "
            "(coco-gateway gov propose --action open_network); reads and governance go on",
            reason="network-not-open",
            service="opening",
        )

    def _apply_policies(self) -> None:
        """On a governed chain the node policies of the governance state at the head are in
        force, whatever this node's own configuration says (docs/GOVERNANCE.md, "Node
        policies"): ``privacy``, ``publicBalances``, ``requireEncryption``. Called when the
        governance opens and after every committed block, so every node switches at the
        same height."""
        gov = self.governance
        if gov is None:
            return
        policies = gov.state.policies
        strict = policies.get("privacy", "open") == "strict"
        public = bool(policies.get("publicBalances", False))
        require = bool(policies.get("requireEncryption", False))
        engine = getattr(self, "engine", None)
        before = (
            getattr(self, "strict", None),
            getattr(self, "public_balances", None),
            None if engine is None else engine.admission.require_encryption,
        )
        if before != (strict, public, require if engine is not None else None):
            log.info(
                "node policies in force: privacy %s, publicBalances %s, requireEncryption %s",
                "strict" if strict else "open",
                public,
                require,
            )
        self.strict, self.public_balances = strict, public
        if engine is not None:
            engine.set_require_encryption(require)

    def _on_GovSubmit(self, msg: Any) -> dict[str, Any]:
        gov = self.governance
        if gov is None:
            raise _no_governance()
        head = self.engine.head
        now = max(int(msg.now), int(head.timestamp) + 1)
        answer = gov.submit(msg.record, int(head.block_number) + 1, now)
        record = gov.pool[answer["hash"]][1]
        assert isinstance(record, SignedRecord)  # clients submit members' records only
        message = record.message
        from gateway.governance.typed import Proposal, proposal_id

        answer["proposal"] = (
            proposal_id(message) if isinstance(message, Proposal) else message.proposal
        )
        return answer

    def _on_GovQuery(self, msg: Any) -> Any:
        gov = self.governance
        if gov is None:
            raise _no_governance()
        try:
            return gsec.query(
                gov.state,
                int(self.engine.head.block_number),
                msg.what,
                msg.arg,
                self.ledger.governance_row,
                pooled=len(gov.pool),
            )
        except gsec.BadQuery as exc:
            raise InvalidParams(str(exc), reason="bad-params") from None

    def _admit_by_governance(self, request: Any, now: int) -> Any:
        """A join on a governed chain (docs/GOVERNANCE.md, "Joins"): the joiner's attested
        report if the governance state trusts it and allows its measurement, platform and
        virtualness; else a refusal naming why (``node-retired``, ``measurement-not-allowed``,
        ``platform-not-allowed``, ``virtual-not-allowed``, ``wrong-chain``,
        ``bad-attestation``, or ``node-pending``: it waits for a ``trust_node`` vote). A node
        the state does not know is recorded as pending: its join record is pooled here (the
        refusal's ``record`` names it, for the host to forward) and the next block carries
        it."""
        from gateway.enclave import consortium

        gov = self.governance
        assert gov is not None
        report, signature = consortium.check_join_attestation(request, self.chain_id)
        record = joins.JoinRecord(report, signature)
        node = "0x" + report.node_address.hex()
        facts = {
            "address": node,
            "measurement": "0x" + report.measurement.hex(),
            "platform": report.platform,
        }
        try:
            joins.check_join(gov.state, record)
        except GovernanceError as exc:
            raise consortium.refuse_join(exc.reason, exc.message, **facts) from None
        known = gov.state.nodes.get(report.node_address)
        if known is not None and known.state == "trusted":
            return report
        waits = (
            f"node {node} is pending: it attested fine and waits for the members' trust_node "
            'vote (coco-gateway gov propose --action \'trust_node={"address":"' + node + "\"}')"
        )
        if known is not None:
            raise consortium.refuse_join("node-pending", waits, **facts)
        raw = joins.encode_join(report, signature)
        head = self.engine.head  # type: ignore[attr-defined]
        try:
            gov.submit(
                raw, int(head.block_number) + 1, max(now, int(head.timestamp) + 1), joins_too=True
            )
            log.info("join of node %s recorded in the pool: pending until trusted", node)
        except GovernanceError as exc:
            if exc.reason not in ("duplicate", "node-exists"):
                raise consortium.refuse_join(exc.reason, exc.message, **facts) from None
        except ServerError as exc:
            raise consortium.refuse_join(
                exc.reason_code or "governance-pool-full", exc.message, **facts
            ) from None
        raise consortium.refuse_join(
            "node-pending", waits, record="0x" + joins.join_hash(raw).hex(), **facts
        )

    def _export_governance(self, hashes: list[bytes]) -> list[bytes]:
        """Pooled records to forward: public, so not sealed (prefix 0x47, "G")."""
        if self.governance is None:
            return []
        return [RECORD_BLOB + raw for raw in self.governance.export(hashes)]

    def _import_governance(self, blob: bytes, now: int) -> bytes | None:
        """A record forwarded by another node: pooled when the state takes it."""
        if self.governance is None:
            return None
        head = self.engine.head
        try:
            answer = self.governance.submit(
                blob[1:],
                int(head.block_number) + 1,
                max(now, int(head.timestamp) + 1),
                joins_too=True,
            )
        except (GovernanceError, ServerError) as exc:
            log.debug("refused a forwarded governance record: %s", exc.message)
            return None
        return bytes(answer["hash"])
