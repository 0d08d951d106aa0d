"""A block's governance section: its canonical bytes, the header's commitment to it, applying
it to the state before the block, and the read views every node serves (docs/GOVERNANCE.md,
"In the node"; docs/PROTOCOL.md, "Governance section").

Pure: used alike by the enclave (gateway/enclave/govern.py), which builds and verifies
sections, and by an observer (gateway/observer.py), which has no enclave and follows the
governance state from the sections that travel, in the clear, with public blocks.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from eth_utils import keccak

from gateway.governance import joins, ledger_secret, recovered
from gateway.governance import state as gs
from gateway.governance.errors import GovernanceError
from gateway.governance.typed import SignedRecord, decode_record, record_hash

SECTION_VERSION = 1
SECTION_DOMAIN = b"coco-gateway/governance-section/v1"
EMPTY_EXTRA = b"coco-gateway"  # extraData of a block without governance records
MAX_SECTION = 64  # records per block
MAX_SECTION_BYTES = 1024 * 1024


Record = SignedRecord | joins.JoinRecord | recovered.RecoveryRecord


def decode_any(raw: bytes) -> Record:
    """A section's record: a join record (``"type": "join"``), a recovery record
    (``"type": "recovered"``) or a member's signed record. A ledger secret record is not one
    of these: only ``apply_section`` takes it, as the last record of the block that rotates
    (gateway.governance.ledger_secret)."""
    if ledger_secret.is_ledger_secret(raw):
        raise GovernanceError(
            "bad-ledger-secret",
            "a ledger secret record is made by the proposer's enclave in the rotating block; "
            "it is never submitted or pooled",
        )
    if joins.is_join(raw):
        return joins.decode_join(raw)
    if recovered.is_recovery(raw):
        return recovered.decode_recovery(raw)
    return decode_record(raw)


def hash_of(raw: bytes, record: Record) -> bytes:
    if isinstance(record, joins.JoinRecord):
        return joins.join_hash(raw)
    if isinstance(record, recovered.RecoveryRecord):
        return recovered.recovery_hash(raw)
    return record_hash(record)


def apply_any(
    state: gs.GovernanceState, record: Record, height: int, timestamp: int
) -> tuple[gs.GovernanceState, list[Any]]:
    """Apply one record of a section at block ``height`` (time ``timestamp``): a join record
    records its node as pending; a recovery record takes the service back to ``opening``
    with a new share generation; a signed record goes through the core's ``apply``."""
    if isinstance(record, joins.JoinRecord):
        return joins.apply_join(state, record, height)
    if isinstance(record, recovered.RecoveryRecord):
        return recovered.apply_recovery(state, record, height)
    return gs.apply(state, record, height, timestamp)


class SectionRefused(ValueError):
    """A section that does not fit its header or does not apply: ``bad-governance``."""

    reason = "bad-governance"


def section_bytes(records: list[bytes]) -> bytes:
    """The canonical JSON list of the records' canonical JSON texts."""
    return b"[" + b",".join(records) + b"]"


def commitment(records: list[bytes]) -> bytes:
    """What the header's extraData must be for a block carrying ``records``."""
    if not records:
        return EMPTY_EXTRA
    return keccak(SECTION_DOMAIN + section_bytes(records))


def records_of(section: bytes) -> list[bytes]:
    """The records of a section's canonical bytes (as ``section_bytes`` made them); raises
    SectionRefused when they are not a canonical section."""
    if not isinstance(section, bytes) or len(section) > MAX_SECTION_BYTES:
        raise SectionRefused("the governance section is not bytes of at most 1 MiB")
    try:
        items = json.loads(section)
    except ValueError:
        raise SectionRefused("the governance section is not JSON") from None
    if not isinstance(items, list) or len(items) > MAX_SECTION:
        raise SectionRefused(f"the governance section is a list of at most {MAX_SECTION}")
    from gateway.governance.typed import canonical_json

    try:
        records = [canonical_json(item).encode() for item in items]
    except (TypeError, ValueError):
        raise SectionRefused("a governance record is not plain JSON") from None
    if section_bytes(records) != section:
        raise SectionRefused("the governance section is not in canonical form")
    return records


def apply_section(
    before: gs.GovernanceState, records: list[bytes], height: int, timestamp: int, extra: bytes
) -> tuple[gs.GovernanceState, list[Any]]:
    """The state after block ``height`` (timestamp ``timestamp``, header extraData
    ``extra``) carrying ``records``: tick, then each record in order. SectionRefused when
    the section is too large, the header does not commit to it, or a record is refused."""
    if len(records) > MAX_SECTION or len(section_bytes(records)) > MAX_SECTION_BYTES:
        raise SectionRefused("the governance section is too large")
    if commitment(records) != extra:
        raise SectionRefused(
            "the header's extraData does not commit to the block's governance section"
        )
    state, events = gs.tick(before, height, timestamp)
    for i, raw in enumerate(records):
        try:
            if ledger_secret.is_ledger_secret(raw):
                if i != len(records) - 1:
                    raise GovernanceError(
                        "bad-ledger-secret", "a ledger secret record is the section's last"
                    )
                if state.ledger_generation != before.ledger_generation + 1:
                    raise GovernanceError(
                        "bad-ledger-secret",
                        "a ledger secret record in a block that does not rotate",
                    )
                ledger_secret.check(ledger_secret.decode(raw), state, height)
                continue
            state, more = apply_any(state, decode_any(raw), height, timestamp)
            if state.ledger_generation > before.ledger_generation + 1:
                raise GovernanceError(
                    "bad-ledger-secret", "a block rotates the ledger secret at most once"
                )
        except GovernanceError as exc:
            raise SectionRefused(
                f"governance record {i} of block {height} is refused: {exc.reason}"
            ) from None
        events.extend(more)
    if state.ledger_generation != before.ledger_generation and not (
        records and ledger_secret.is_ledger_secret(records[-1])
    ):
        raise SectionRefused(
            f"block {height} rotates the ledger secret but carries no ledger secret record"
        )
    return state, events


# ----------------------------------------------------------------------------- read views

QUERIES = (
    "state",
    "members",
    "nodes",
    "constitution",
    "validators",
    "proposals",
    "proposal",
    "block",
)


class BadQuery(ValueError):
    """A read with a bad argument (``bad-params``)."""


def _hexid(arg: Any, what: str) -> bytes:
    if not isinstance(arg, str) or not arg.startswith("0x") or len(arg) != 66:
        raise BadQuery(f"{what} is a 0x-prefixed 32-byte hex id")
    try:
        return bytes.fromhex(arg[2:])
    except ValueError:
        raise BadQuery(f"{what} is not hex") from None


def query(
    s: gs.GovernanceState,
    head: int,
    what: str,
    arg: Any,
    block_row: Callable[[int], tuple[bytes, bytes, bytes] | None],
    pooled: int = 0,
) -> Any:
    """The answer to one coco_gov* read at a node whose head is ``head``; ``block_row(n)``
    gives block n's (hash, section, state digest) or None."""
    full = gs.to_json(s)
    if what == "state":
        return {
            "height": head,
            "stateDigest": "0x" + gs.state_digest(s).hex(),
            "service": full["service"],
            "members": full["members"],
            "nodes": full["nodes"],
            "validators": full["validators"],
            "validatorsNext": ["0x" + v.hex() for v in s.validators_at(head + 1)],
            "recoveryThreshold": full["recoveryThreshold"],
            "policies": full["policies"],
            "measurements": full["measurements"],
            "platforms": full["platforms"],
            "allowVirtual": full["allowVirtual"],
            "ledgerGeneration": full["ledgerGeneration"],
            "sharesGeneration": full["sharesGeneration"],
            "openProposals": ["0x" + p.hex() for p in s.open_proposals()],
            "pooled": pooled,
        }
    if what in ("members", "nodes", "constitution", "validators"):
        return full[what]
    if what == "proposals":
        if arg is not None and arg not in gs.STATUSES:
            raise BadQuery(f"status is one of {', '.join(gs.STATUSES)}")
        ordered = sorted(s.proposals.items(), key=lambda kv: kv[1].seq)
        return [gs.proposal_view(s, pid) for pid, p in ordered if arg is None or p.status == arg]
    if what == "proposal":
        return gs.proposal_view(s, _hexid(arg, "the proposal"))
    if what == "block":
        if isinstance(arg, bool) or not isinstance(arg, int) or arg < 0:
            raise BadQuery("a block number")
        row = block_row(arg)
        if row is None:
            return None
        block_hash, section, digest = row
        return {
            "number": arg,
            "hash": "0x" + block_hash.hex(),
            "records": json.loads(section),
            "stateDigest": "0x" + digest.hex(),
        }
    raise BadQuery(f"unknown governance query {what!r}")
