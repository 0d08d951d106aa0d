"""The governance state machine: pure, deterministic, the same on every node.

``apply(state, record, height, block_time)`` takes one signed governance record (a proposal,
a ballot or a withdrawal) in the order the chain decided it, at the block ``height`` whose
timestamp is ``block_time``, and returns the new state and the events it caused; it never
changes ``state``. A record the rules refuse raises ``GovernanceError`` with a stable reason
and changes nothing. ``tick(state, height, block_time)`` closes the proposals whose time ran
out; ``apply`` ticks first, and a node ticks once per block whether or not it holds records.
Time comes only from the block, so every node reaches the same state from the same chain.

The rules (docs/GOVERNANCE.md):

* A record is bound to this chain and consortium by its EIP-712 domain; its signer must be an
  active member (``not-a-member``, ``removed-member``).
* A proposal's ``created`` must be within ``MAX_CREATED_AGE`` seconds before the block time
  and at most ``MAX_CREATED_SKEW`` after it; its id (the struct hash) may be used once, ever
  (``duplicate``). Its actions are checked against the state when it is recorded (a proposal
  that could not apply now is refused with that action's reason) and again when accepted.
* One ballot per member per proposal: a ballot with a higher ``revision`` replaces the
  member's earlier one; the same ballot again is a ``duplicate``, a lower or equal revision a
  ``stale-ballot``. Only ballots of active members count.
* The proposal is decided the moment the counted ballots make it so: accepted when the
  approvals reach what the constitution needs of the active members, rejected when the
  members who did not reject it are too few to reach it. Its actions then take effect, in
  order, all or none, at that height; if one of them is refused by the state of that moment,
  none is applied and the proposal is ``failed`` with that reason. After a proposal is
  accepted, every other open proposal is looked at again (membership may have changed).
* Validator changes take effect at ``height + VALIDATOR_DELAY``; a change that would leave no
  validator, or fewer validators on trusted nodes than a QBFT quorum of the new set, is
  refused. A validator's node cannot be retired (remove it as a validator first).
* ``set_constitution``, ``allow_measurement`` and ``disallow_measurement`` drop every other
  open proposal (they were made under other terms).
* Removing a member that holds a recovery share is refused when fewer active share holders
  than the recovery threshold would remain; when it is allowed, the ledger secret is rotated
  and the shares re-issued, so the removed member's share opens nothing new.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any

from eth_utils import keccak

from gateway.consensus.qbft.validation import quorum
from gateway.governance import constitution as const
from gateway.governance.actions import parse_args, usable_x25519
from gateway.governance.errors import GovernanceError
from gateway.governance.typed import (
    Action,
    Ballot,
    Domain,
    Proposal,
    SignedRecord,
    Withdraw,
    canonical_json,
    decode_record,
    proposal_id,
    verify,
)

STATE_VERSION = 1
MAX_CREATED_AGE = 600  # seconds a proposal's created time may lie behind the block time
MAX_CREATED_SKEW = 30  # ... and ahead of it
MAX_OPEN_PER_MEMBER = 8
MAX_PENDING_NODES = 64  # nodes waiting for a trust vote (a join record costs no vote)
VALIDATOR_DELAY = 2  # a validator change accepted at block h applies from block h + 2

NODE_STATES = ("pending", "trusted", "retired")
SERVICE_STATES = ("opening", "open")
OPEN = "open"
CLOSED_STATUSES = ("accepted", "rejected", "withdrawn", "expired", "dropped", "failed")
STATUSES = (OPEN, *CLOSED_STATUSES)


# ----------------------------------------------------------------------------- the state


@dataclass
class Member:
    encryption_key: bytes | None  # X25519 public key; None: holds no recovery share
    data: Any = None
    active: bool = True


@dataclass
class Node:
    state: str  # pending | trusted | retired
    measurement: bytes | None = None
    platform: str | None = None
    since: int = 0  # the height of the last change


@dataclass
class ProposalInfo:
    seq: int  # order of recording, for deterministic re-evaluation
    proposer: bytes
    created: int
    actions: tuple[Action, ...]
    height: int  # recorded at
    expires: int  # block time from which it is expired
    status: str = OPEN
    ballots: dict[bytes, tuple[bool, int]] = field(default_factory=dict)  # member -> (approve, rev)
    closed_height: int | None = None
    reason: str | None = None  # why a proposal failed


@dataclass
class GovernanceState:
    chain_id: int
    genesis_hash: bytes
    members: dict[bytes, Member]
    nodes: dict[bytes, Node]
    # the validator schedule: (first height, validators from that height on), ascending
    validators: list[tuple[int, tuple[bytes, ...]]]
    measurements: set[bytes]
    platforms: set[str]
    allow_virtual: bool
    policies: dict[str, Any]
    recovery_threshold: int
    constitution: const.Constitution
    service: str = "opening"
    ledger_generation: int = 0
    shares_generation: int = 0
    proposals: dict[bytes, ProposalInfo] = field(default_factory=dict)
    next_seq: int = 0

    @property
    def domain(self) -> Domain:
        return Domain(self.chain_id, self.genesis_hash)

    def active_members(self) -> list[bytes]:
        return sorted(a for a, m in self.members.items() if m.active)

    def share_holders(self) -> list[tuple[bytes, bytes]]:
        """(address, X25519 key) of every active member with an encryption key, by address."""
        return sorted(
            (a, m.encryption_key)
            for a, m in self.members.items()
            if m.active and m.encryption_key is not None
        )

    def validators_at(self, height: int) -> tuple[bytes, ...]:
        """The validator set that decides block ``height``."""
        current: tuple[bytes, ...] = ()
        for first, members in self.validators:
            if first > height:
                break
            current = members
        return current

    def latest_validators(self) -> tuple[bytes, ...]:
        """The set once every scheduled change has taken effect."""
        return self.validators[-1][1]

    def open_proposals(self) -> list[bytes]:
        return [
            pid
            for pid, p in sorted(self.proposals.items(), key=lambda kv: kv[1].seq)
            if p.status == OPEN
        ]


# ----------------------------------------------------------------------------- events


@dataclass(frozen=True)
class ProposalOpened:
    proposal: bytes
    proposer: bytes


@dataclass(frozen=True)
class BallotRecorded:
    proposal: bytes
    member: bytes
    approve: bool
    revision: int


@dataclass(frozen=True)
class ProposalClosed:
    proposal: bytes
    status: str  # accepted | rejected | withdrawn | expired | dropped | failed
    reason: str | None = None  # for failed: the action's refusal


@dataclass(frozen=True)
class NodePending:
    address: bytes


@dataclass(frozen=True)
class NodeTrusted:
    """The enclave may now admit this node's join (send it the consortium secret)."""

    address: bytes


@dataclass(frozen=True)
class NodeRetired:
    address: bytes


@dataclass(frozen=True)
class ValidatorsScheduled:
    height: int  # first block decided by the new set
    validators: tuple[bytes, ...]


@dataclass(frozen=True)
class RotateLedgerSecret:
    """The enclave starts ledger-secret generation ``generation`` (old ones stay readable)."""

    generation: int


@dataclass(frozen=True)
class RefreshRecoveryShares:
    """The enclave wraps the newest ledger secret under a fresh key and splits it anew."""

    generation: int
    ledger_generation: int
    threshold: int
    holders: tuple[tuple[bytes, bytes], ...]  # (member address, X25519 public key)


@dataclass(frozen=True)
class PolicyChanged:
    name: str
    value: Any


@dataclass(frozen=True)
class NetworkOpened:
    pass


@dataclass(frozen=True)
class ServiceRecovered:
    """A recovery record was applied: the service is ``opening`` again."""

    node: bytes  # the node that recovered the secret
    members: tuple[bytes, ...]  # whose shares it combined
    generation: int  # the share generation the shares were of


Event = (
    ProposalOpened
    | BallotRecorded
    | ProposalClosed
    | NodePending
    | NodeTrusted
    | NodeRetired
    | ValidatorsScheduled
    | RotateLedgerSecret
    | RefreshRecoveryShares
    | PolicyChanged
    | NetworkOpened
    | ServiceRecovered
)


def describe(event: Event) -> str:
    """An event for a log line: its name and fields, bytes as 0x-hex (addresses, ids)."""

    def show(value: Any) -> str:
        if isinstance(value, bytes | bytearray):
            return "0x" + bytes(value).hex()
        if isinstance(value, tuple | list):
            return "[" + ", ".join(show(v) for v in value) + "]"
        return repr(value)

    parts = ", ".join(f"{f.name}={show(getattr(event, f.name))}" for f in fields(event))
    return f"{type(event).__name__}({parts})"


# ----------------------------------------------------------------------------- genesis


@dataclass(frozen=True)
class GenesisMember:
    address: bytes
    encryption_key: bytes | None
    data: Any = None


def genesis(
    *,
    chain_id: int,
    genesis_hash: bytes,
    members: Iterable[GenesisMember],
    validators: Iterable[bytes],
    nodes: Iterable[bytes] = (),
    measurements: Iterable[bytes] = (),
    platforms: Iterable[str] = ("virtual",),
    allow_virtual: bool = False,
    recovery_threshold: int = 1,
    constitution: const.Constitution = const.DEFAULT,
    policies: dict[str, Any] | None = None,
    service: str = "opening",
) -> GovernanceState:
    """The state the consortium's terms fix at block 0: every genesis node (validators
    included) is trusted, every genesis member active."""
    Domain(chain_id, genesis_hash)  # checks both
    member_map: dict[bytes, Member] = {}
    for m in members:
        if len(m.address) != 20 or m.address in member_map:
            raise ValueError("members must be distinct 20-byte addresses")
        if m.encryption_key is not None and (
            len(m.encryption_key) != 32 or not usable_x25519(m.encryption_key)
        ):
            raise ValueError("an encryption key is a usable 32-byte X25519 public key")
        member_map[m.address] = Member(m.encryption_key, m.data)
    if not member_map:
        raise ValueError("a consortium needs at least one member")
    vals = tuple(validators)
    if not vals or len(set(vals)) != len(vals):
        raise ValueError("validators must be a non-empty list of distinct addresses")
    node_map = {a: Node("trusted") for a in (*vals, *nodes)}
    state = GovernanceState(
        chain_id=chain_id,
        genesis_hash=genesis_hash,
        members=member_map,
        nodes=node_map,
        validators=[(0, vals)],
        measurements=set(measurements),
        platforms=set(platforms),
        allow_virtual=allow_virtual,
        policies=dict(policies or {}),
        recovery_threshold=recovery_threshold,
        constitution=constitution,
        service=service,
    )
    holders = len(state.share_holders())
    if holders and not 1 <= recovery_threshold <= holders:
        raise ValueError(f"recovery threshold must be in [1, {holders}] share holders")
    return state


def genesis_from_terms(terms: dict[str, Any], genesis_hash: bytes) -> GovernanceState:
    """The genesis state from ``consortium.json``'s object, as the terms are already checked
    for their present fields (``chainId``, ``validators``, ``nodes``, ``measurements``,
    ``platforms``, ``allowVirtual``, ``privacy``, ``publicBalances``), reading the governance
    fields strictly:

    * ``members``: a non-empty list of ``{"address", "encryptionKey" (optional), "data"
      (optional)}``;
    * ``recoveryThreshold`` (optional): default a majority of the share holders;
    * ``constitution`` (optional): default ``constitution.DEFAULT``;
    * ``service`` (optional): ``"open"`` or ``"opening"`` (users may not transact until the
      members vote ``open_network``); default ``"opening"``. ``coco-gateway init`` writes
      ``"open"`` unless given ``--opening``.

    Raises ``ValueError`` naming the field."""

    def hex_bytes(value: Any, size: int, what: str) -> bytes:
        if not isinstance(value, str) or not value.startswith("0x") or len(value) != 2 + 2 * size:
            raise ValueError(f"{what} must be 0x and {size} bytes of hex, not {value!r}")
        try:
            return bytes.fromhex(value[2:])
        except ValueError:
            raise ValueError(f"{what} is not hex: {value!r}") from None

    raw_members = terms.get("members")
    if not isinstance(raw_members, list) or not raw_members:
        raise ValueError('"members" must be a non-empty list')
    members = []
    for i, m in enumerate(raw_members):
        if not isinstance(m, dict) or not set(m) <= {"address", "encryptionKey", "data"}:
            raise ValueError(f"members[{i}] must be {{address, encryptionKey?, data?}}")
        key = m.get("encryptionKey")
        members.append(
            GenesisMember(
                hex_bytes(m.get("address"), 20, f"members[{i}].address"),
                None if key is None else hex_bytes(key, 32, f"members[{i}].encryptionKey"),
                m.get("data"),
            )
        )
    holders = sum(1 for m in members if m.encryption_key is not None)
    threshold = terms.get("recoveryThreshold", holders // 2 + 1)
    if isinstance(threshold, bool) or not isinstance(threshold, int):
        raise ValueError('"recoveryThreshold" must be an integer')
    try:
        rules = const.parse(terms["constitution"]) if "constitution" in terms else const.DEFAULT
    except GovernanceError as exc:
        raise ValueError(f'"constitution": {exc.message}') from None
    service = terms.get("service", "opening")
    if service not in SERVICE_STATES:
        raise ValueError(f'"service" must be one of {", ".join(SERVICE_STATES)}, not {service!r}')
    validators = [hex_bytes(v, 20, "a validator") for v in terms.get("validators", [])]
    nodes = [
        hex_bytes(n.get("address"), 20, "a node address")
        for n in terms.get("nodes", [])
        if isinstance(n, dict)
    ]
    policies: dict[str, Any] = {
        "privacy": terms.get("privacy", "open"),
        "publicBalances": bool(terms.get("publicBalances", False)),
        "requireEncryption": False,
    }
    return genesis(
        chain_id=int(terms["chainId"]),
        genesis_hash=genesis_hash,
        members=members,
        validators=validators,
        nodes=[n for n in nodes if n not in validators],
        measurements=[
            hex_bytes(x.lower(), 32, "a measurement") for x in terms.get("measurements", [])
        ],
        platforms=[str(p) for p in terms.get("platforms", ["virtual"])],
        allow_virtual=bool(terms.get("allowVirtual", False)),
        recovery_threshold=threshold if holders else 1,
        constitution=rules,
        policies=policies,
        service=service,
    )


def genesis_shares_event(state: GovernanceState) -> RefreshRecoveryShares:
    """What the genesis enclave must do at block 0: issue the first recovery shares."""
    return RefreshRecoveryShares(
        state.shares_generation,
        state.ledger_generation,
        state.recovery_threshold,
        tuple(state.share_holders()),
    )


# ----------------------------------------------------------------------------- transitions


def tick(
    state: GovernanceState, height: int, block_time: int
) -> tuple[GovernanceState, list[Event]]:
    """Expire the open proposals whose time ran out at this block."""
    if not any(p.status == OPEN and block_time >= p.expires for p in state.proposals.values()):
        return state, []
    s = copy.deepcopy(state)
    events: list[Event] = []
    _expire(s, height, block_time, events)
    return s, events


def apply(
    state: GovernanceState, record: SignedRecord | bytes, height: int, block_time: int
) -> tuple[GovernanceState, list[Event]]:
    """Apply one signed record at block ``height`` (timestamp ``block_time``)."""
    if isinstance(record, bytes | bytearray):
        record = decode_record(bytes(record))
    s = copy.deepcopy(state)
    events: list[Event] = []
    _expire(s, height, block_time, events)
    signer = verify(record, s.domain)
    member = s.members.get(signer)
    if member is None:
        raise GovernanceError(
            "not-a-member", f"0x{signer.hex()} is not a member", signer="0x" + signer.hex()
        )
    if not member.active:
        raise GovernanceError(
            "removed-member",
            f"0x{signer.hex()} was removed from the consortium",
            signer="0x" + signer.hex(),
        )
    message = record.message
    if isinstance(message, Proposal):
        _propose(s, signer, message, height, block_time, events)
    elif isinstance(message, Ballot):
        _vote(s, signer, message, height, events)
    else:
        _withdraw(s, signer, message, height, events)
    return s, events


def add_pending_node(
    state: GovernanceState,
    address: bytes,
    *,
    measurement: bytes,
    platform: str,
    virtual: bool,
    height: int,
) -> tuple[GovernanceState, list[Event]]:
    """A joining node whose attestation checked out waits here, counted nowhere, until the
    members trust it. The enclave calls this after it has verified the attestation; the
    state refuses what the terms do not allow."""
    if len(address) != 20 or len(measurement) != 32:
        raise ValueError("a node address is 20 bytes and a measurement 32")
    check_node_terms(state, measurement, platform, virtual)
    node = state.nodes.get(address)
    if node is not None:
        if node.state == "retired":
            raise GovernanceError("node-retired", f"node 0x{address.hex()} was retired")
        raise GovernanceError("node-exists", f"node 0x{address.hex()} is {node.state} already")
    if sum(1 for n in state.nodes.values() if n.state == "pending") >= MAX_PENDING_NODES:
        raise GovernanceError(
            "too-many-pending",
            f"{MAX_PENDING_NODES} nodes wait for a trust vote already: the members trust or "
            "retire some first",
        )
    s = copy.deepcopy(state)
    s.nodes[address] = Node("pending", measurement, platform, height)
    return s, [NodePending(address)]


def recovered(
    state: GovernanceState, node: bytes, members: tuple[bytes, ...], height: int
) -> tuple[GovernanceState, list[Event]]:
    """A recovery (``recovered.py`` checked its record): the service goes back to
    ``opening`` until the members vote ``open_network``, and the members whose shares were
    used get new ones: the next share generation, issued by every node that holds the
    secret (``RefreshRecoveryShares``)."""
    s = copy.deepcopy(state)
    events: list[Event] = [ServiceRecovered(node, members, s.shares_generation)]
    s.service = "opening"
    _next_share_generation(s, events)
    return s, events


def _next_share_generation(s: GovernanceState, events: list[Event]) -> None:
    """When members hold shares: the next share generation, for every node that holds the
    secret to issue (``RefreshRecoveryShares``)."""
    if s.share_holders():
        s.shares_generation += 1
        events.append(
            RefreshRecoveryShares(
                s.shares_generation,
                s.ledger_generation,
                s.recovery_threshold,
                tuple(s.share_holders()),
            )
        )


def check_node_terms(
    state: GovernanceState, measurement: bytes | None, platform: str | None, virtual: bool
) -> None:
    """Whether the state allows a node of this measurement, platform and virtualness
    (``measurement-not-allowed``, ``platform-not-allowed``, ``virtual-not-allowed``)."""
    if measurement is not None and measurement not in state.measurements:
        raise GovernanceError(
            "measurement-not-allowed", f"measurement 0x{measurement.hex()} is not allowed"
        )
    if platform is not None and platform not in state.platforms:
        raise GovernanceError("platform-not-allowed", f"platform {platform!r} is not allowed")
    if virtual and not state.allow_virtual:
        raise GovernanceError("virtual-not-allowed", "the terms do not allow virtual enclaves")


# ----------------------------------------------------------------------------- records


def _expire(s: GovernanceState, height: int, block_time: int, events: list[Event]) -> None:
    for pid in s.open_proposals():
        p = s.proposals[pid]
        if block_time >= p.expires:
            _close(s, pid, "expired", height, events)


def _close(
    s: GovernanceState,
    pid: bytes,
    status: str,
    height: int,
    events: list[Event],
    reason: str | None = None,
) -> None:
    p = s.proposals[pid]
    p.status = status
    p.closed_height = height
    p.reason = reason
    events.append(ProposalClosed(pid, status, reason))


def _propose(
    s: GovernanceState,
    signer: bytes,
    message: Proposal,
    height: int,
    block_time: int,
    events: list[Event],
) -> None:
    pid = proposal_id(message)
    if pid in s.proposals:
        raise GovernanceError(
            "duplicate", f"proposal 0x{pid.hex()} exists already", proposal="0x" + pid.hex()
        )
    if message.created > block_time + MAX_CREATED_SKEW:
        raise GovernanceError(
            "created-in-future",
            f"the proposal was created at {message.created}, {message.created - block_time} s "
            f"after the block time (at most {MAX_CREATED_SKEW} s)",
        )
    if message.created < block_time - MAX_CREATED_AGE:
        raise GovernanceError(
            "created-too-old",
            f"the proposal was created {block_time - message.created} s before the block "
            f"(at most {MAX_CREATED_AGE} s): sign it again",
        )
    mine = sum(1 for q in s.open_proposals() if s.proposals[q].proposer == signer)
    if mine >= MAX_OPEN_PER_MEMBER:
        raise GovernanceError(
            "too-many-open", f"a member may have {MAX_OPEN_PER_MEMBER} proposals open"
        )
    typed = [(a.kind, parse_args(a.kind, a.params())) for a in message.actions]
    # would it apply now? (dry run on a copy; raises the refusing action's reason)
    _run_actions(copy.deepcopy(s), typed, height, pid, [])
    kinds = [k for k, _ in typed]
    s.proposals[pid] = ProposalInfo(
        seq=s.next_seq,
        proposer=signer,
        created=message.created,
        actions=message.actions,
        height=height,
        expires=block_time + s.constitution.open_for(kinds),
    )
    s.next_seq += 1
    events.append(ProposalOpened(pid, signer))
    _settle(s, [pid], height, events)


def _open_proposal(s: GovernanceState, pid: bytes) -> ProposalInfo:
    p = s.proposals.get(pid)
    if p is None:
        raise GovernanceError(
            "unknown-proposal", f"no proposal 0x{pid.hex()}", proposal="0x" + pid.hex()
        )
    if p.status != OPEN:
        raise GovernanceError(
            "proposal-not-open",
            f"proposal 0x{pid.hex()} is {p.status}",
            proposal="0x" + pid.hex(),
            status=p.status,
        )
    return p


def _vote(
    s: GovernanceState, signer: bytes, ballot: Ballot, height: int, events: list[Event]
) -> None:
    p = _open_proposal(s, ballot.proposal)
    earlier = p.ballots.get(signer)
    if earlier is not None:
        if earlier == (ballot.approve, ballot.revision):
            raise GovernanceError("duplicate", "this ballot was recorded already")
        if ballot.revision <= earlier[1]:
            raise GovernanceError(
                "stale-ballot",
                f"a ballot of revision {earlier[1]} was recorded; a new one needs a higher "
                "revision",
                recorded=earlier[1],
            )
    p.ballots[signer] = (ballot.approve, ballot.revision)
    events.append(BallotRecorded(ballot.proposal, signer, ballot.approve, ballot.revision))
    _settle(s, [ballot.proposal], height, events)


def _withdraw(
    s: GovernanceState, signer: bytes, message: Withdraw, height: int, events: list[Event]
) -> None:
    p = _open_proposal(s, message.proposal)
    if p.proposer != signer:
        raise GovernanceError("not-proposer", "only the proposer may withdraw a proposal")
    _close(s, message.proposal, "withdrawn", height, events)


def tally(s: GovernanceState, pid: bytes) -> tuple[int, int, int, int]:
    """(approvals, rejections, active members, approvals needed) counting active members."""
    p = s.proposals[pid]
    active = {a for a, m in s.members.items() if m.active}
    yes = sum(1 for a, (ok, _) in p.ballots.items() if ok and a in active)
    no = sum(1 for a, (ok, _) in p.ballots.items() if not ok and a in active)
    need = s.constitution.needed((a.kind for a in p.actions), len(active))
    return yes, no, len(active), need


def _settle(s: GovernanceState, first: list[bytes], height: int, events: list[Event]) -> None:
    """Decide the proposals whose outcome is certain; after an acceptance, look again at
    every open proposal (in the order they were recorded) until nothing changes."""
    queue = list(first)
    while queue:
        changed = False
        for pid in queue:
            p = s.proposals[pid]
            if p.status != OPEN:
                continue
            yes, no, members, need = tally(s, pid)
            if yes >= need:
                changed = _accept(s, pid, height, events) or changed
            elif members - no < need:
                _close(s, pid, "rejected", height, events)
        queue = s.open_proposals() if changed else []


def _accept(s: GovernanceState, pid: bytes, height: int, events: list[Event]) -> bool:
    """Run the proposal's actions all or none; True when they took effect."""
    p = s.proposals[pid]
    scratch = copy.deepcopy(s)
    effects: list[Event] = []
    try:
        typed = [(a.kind, parse_args(a.kind, a.params())) for a in p.actions]
        _close(scratch, pid, "accepted", height, effects)
        _run_actions(scratch, typed, height, pid, effects)
    except GovernanceError as refusal:
        _close(s, pid, "failed", height, events, refusal.reason)
        return False
    s.__dict__.update(scratch.__dict__)
    events.extend(effects)
    return True


def proposal_view(s: GovernanceState, pid: bytes) -> dict[str, Any]:
    """A proposal as JSON values, with its tally: what ``gov show`` and the page display."""
    p = s.proposals.get(pid)
    if p is None:
        raise GovernanceError(
            "unknown-proposal", f"no proposal 0x{pid.hex()}", proposal="0x" + pid.hex()
        )
    yes, no, members, need = tally(s, pid)
    return {
        "id": _h(pid),
        "proposer": _h(p.proposer),
        "created": p.created,
        "actions": [{"kind": a.kind, "args": a.params()} for a in p.actions],
        "height": p.height,
        "expires": p.expires,
        "status": p.status,
        "ballots": {
            _h(m): {"approve": ok, "revision": rev} for m, (ok, rev) in sorted(p.ballots.items())
        },
        "tally": {"approve": yes, "reject": no, "members": members, "needed": need},
        "closedHeight": p.closed_height,
        "reason": p.reason,
    }


# ----------------------------------------------------------------------------- actions


def _run_actions(
    s: GovernanceState,
    actions: list[tuple[str, dict[str, Any]]],
    height: int,
    pid: bytes,
    events: list[Event],
) -> None:
    flags = {"rotate": False, "refresh": False}
    for kind, args in actions:
        _ACTIONS[kind](s, args, height, pid, events, flags)
    if flags["rotate"]:
        s.ledger_generation += 1
        events.append(RotateLedgerSecret(s.ledger_generation))
        flags["refresh"] = True  # the shares wrap the newest secret
    if flags["refresh"]:
        _next_share_generation(s, events)


Flags = dict[str, bool]


def _member(s: GovernanceState, address: bytes) -> Member:
    m = s.members.get(address)
    if m is None or not m.active:
        raise GovernanceError("unknown-member", f"0x{address.hex()} is not an active member")
    return m


def _add_member(s, args, height, pid, events, flags) -> None:
    address = args["address"]
    if address in s.members and s.members[address].active:
        raise GovernanceError("member-exists", f"0x{address.hex()} is a member already")
    s.members[address] = Member(args["encryptionKey"], args["data"], True)
    if args["encryptionKey"] is not None:
        flags["refresh"] = True


def _remove_member(s, args, height, pid, events, flags) -> None:
    address = args["address"]
    m = _member(s, address)
    if len(s.active_members()) <= 1:
        raise GovernanceError("last-member", "the consortium cannot lose its last member")
    if m.encryption_key is not None:
        left = len(s.share_holders()) - 1
        if left < s.recovery_threshold:
            raise GovernanceError(
                "below-recovery-threshold",
                f"{left} share holders would remain, fewer than the recovery threshold "
                f"{s.recovery_threshold}: lower the threshold or add a member first",
                holders=left,
                threshold=s.recovery_threshold,
            )
        flags["rotate"] = True  # its share must open nothing written from now on
    m.active = False


def _set_member_data(s, args, height, pid, events, flags) -> None:
    _member(s, args["address"]).data = args["data"]


def _node(s: GovernanceState, address: bytes) -> Node:
    node = s.nodes.get(address)
    if node is None:
        raise GovernanceError("unknown-node", f"no node 0x{address.hex()}")
    return node


def _trust_node(s, args, height, pid, events, flags) -> None:
    address = args["address"]
    node = _node(s, address)
    if node.state == "retired":
        raise GovernanceError("node-retired", f"node 0x{address.hex()} was retired")
    if node.state != "pending":
        raise GovernanceError("node-not-pending", f"node 0x{address.hex()} is {node.state}")
    # the terms may have changed since it attested
    check_node_terms(s, node.measurement, node.platform, node.platform == "virtual")
    node.state, node.since = "trusted", height
    events.append(NodeTrusted(address))


def _retire_node(s, args, height, pid, events, flags) -> None:
    address = args["address"]
    node = _node(s, address)
    if node.state == "retired":
        raise GovernanceError("node-retired", f"node 0x{address.hex()} is retired already")
    if address in s.latest_validators():
        raise GovernanceError(
            "node-is-validator",
            f"node 0x{address.hex()} is a validator: remove it as a validator first",
        )
    node.state, node.since = "retired", height
    events.append(NodeRetired(address))


def _schedule(s: GovernanceState, new: tuple[bytes, ...], height: int, events: list) -> None:
    if not new:
        raise GovernanceError("no-validator", "the consortium would have no validator")
    able = sum(1 for v in new if s.nodes.get(v) is not None and s.nodes[v].state == "trusted")
    if able < quorum(len(new)):
        raise GovernanceError(
            "no-quorum",
            f"{able} of {len(new)} validators would be on trusted nodes, fewer than the "
            f"quorum {quorum(len(new))}",
        )
    at = height + VALIDATOR_DELAY
    new = tuple(sorted(new))
    while s.validators and s.validators[-1][0] >= at:
        s.validators.pop()  # a later change in the same window replaces the earlier one
    s.validators.append((at, new))
    events.append(ValidatorsScheduled(at, new))


def _add_validator(s, args, height, pid, events, flags) -> None:
    address = args["address"]
    node = s.nodes.get(address)
    if node is None or node.state != "trusted":
        raise GovernanceError(
            "node-not-trusted", f"node 0x{address.hex()} is not trusted: trust it first"
        )
    latest = s.latest_validators()
    if address in latest:
        raise GovernanceError("already-validator", f"0x{address.hex()} is a validator")
    _schedule(s, (*latest, address), height, events)


def _remove_validator(s, args, height, pid, events, flags) -> None:
    address = args["address"]
    latest = s.latest_validators()
    if address not in latest:
        raise GovernanceError("not-validator", f"0x{address.hex()} is not a validator")
    _schedule(s, tuple(v for v in latest if v != address), height, events)


def _drop_others(s: GovernanceState, pid: bytes, height: int, events: list) -> None:
    for other in s.open_proposals():
        if other != pid:
            _close(s, other, "dropped", height, events)


def _allow_measurement(s, args, height, pid, events, flags) -> None:
    m = args["measurement"]
    if m in s.measurements:
        raise GovernanceError("already-allowed", f"measurement 0x{m.hex()} is allowed already")
    s.measurements.add(m)
    _drop_others(s, pid, height, events)


def _disallow_measurement(s, args, height, pid, events, flags) -> None:
    m = args["measurement"]
    if m not in s.measurements:
        raise GovernanceError("not-allowed", f"measurement 0x{m.hex()} is not allowed")
    s.measurements.discard(m)
    _drop_others(s, pid, height, events)


def _allow_platform(s, args, height, pid, events, flags) -> None:
    if args["platform"] in s.platforms:
        raise GovernanceError("already-allowed", f"platform {args['platform']} is allowed")
    s.platforms.add(args["platform"])


def _disallow_platform(s, args, height, pid, events, flags) -> None:
    if args["platform"] not in s.platforms:
        raise GovernanceError("not-allowed", f"platform {args['platform']} is not allowed")
    s.platforms.discard(args["platform"])


def _set_allow_virtual(s, args, height, pid, events, flags) -> None:
    s.allow_virtual = args["allow"]


def _set_node_policy(s, args, height, pid, events, flags) -> None:
    s.policies[args["name"]] = args["value"]
    events.append(PolicyChanged(args["name"], args["value"]))


def _rotate(s, args, height, pid, events, flags) -> None:
    flags["rotate"] = True


def _refresh(s, args, height, pid, events, flags) -> None:
    flags["refresh"] = True


def _set_recovery_threshold(s, args, height, pid, events, flags) -> None:
    holders = len(s.share_holders())
    t = args["threshold"]
    if not 1 <= t <= holders:
        raise GovernanceError(
            "bad-threshold",
            f"the recovery threshold must be in [1, {holders}] (the active share holders)",
        )
    s.recovery_threshold = t
    flags["refresh"] = True


def _open_network(s, args, height, pid, events, flags) -> None:
    if s.service == "open":
        raise GovernanceError("already-open", "the network is open already")
    s.service = "open"
    events.append(NetworkOpened())


def _set_constitution(s, args, height, pid, events, flags) -> None:
    s.constitution = const.parse(args["constitution"])
    _drop_others(s, pid, height, events)


_ACTIONS = {
    "add_member": _add_member,
    "remove_member": _remove_member,
    "set_member_data": _set_member_data,
    "trust_node": _trust_node,
    "retire_node": _retire_node,
    "add_validator": _add_validator,
    "remove_validator": _remove_validator,
    "allow_measurement": _allow_measurement,
    "disallow_measurement": _disallow_measurement,
    "allow_platform": _allow_platform,
    "disallow_platform": _disallow_platform,
    "set_allow_virtual": _set_allow_virtual,
    "set_node_policy": _set_node_policy,
    "rotate_ledger_secret": _rotate,
    "refresh_recovery_shares": _refresh,
    "set_recovery_threshold": _set_recovery_threshold,
    "open_network": _open_network,
    "set_constitution": _set_constitution,
}


# ----------------------------------------------------------------------------- serialisation


def _h(b: bytes) -> str:
    return "0x" + b.hex()


def to_json(s: GovernanceState) -> dict[str, Any]:
    """The state as JSON values, in a canonical arrangement (``encode`` sorts the keys)."""
    return {
        "version": STATE_VERSION,
        "chainId": s.chain_id,
        "genesis": _h(s.genesis_hash),
        "members": {
            _h(a): {
                "encryptionKey": None if m.encryption_key is None else _h(m.encryption_key),
                "data": m.data,
                "active": m.active,
            }
            for a, m in s.members.items()
        },
        "nodes": {
            _h(a): {
                "state": n.state,
                "measurement": None if n.measurement is None else _h(n.measurement),
                "platform": n.platform,
                "since": n.since,
            }
            for a, n in s.nodes.items()
        },
        "validators": [[first, [_h(v) for v in vs]] for first, vs in s.validators],
        "measurements": sorted(_h(m) for m in s.measurements),
        "platforms": sorted(s.platforms),
        "allowVirtual": s.allow_virtual,
        "policies": dict(s.policies),
        "recoveryThreshold": s.recovery_threshold,
        "constitution": s.constitution.to_json(),
        "service": s.service,
        "ledgerGeneration": s.ledger_generation,
        "sharesGeneration": s.shares_generation,
        "nextSeq": s.next_seq,
        "proposals": {
            _h(pid): {
                "seq": p.seq,
                "proposer": _h(p.proposer),
                "created": p.created,
                "actions": [{"kind": a.kind, "args": a.args} for a in p.actions],
                "height": p.height,
                "expires": p.expires,
                "status": p.status,
                "ballots": {
                    _h(m): {"approve": ok, "revision": rev} for m, (ok, rev) in p.ballots.items()
                },
                "closedHeight": p.closed_height,
                "reason": p.reason,
            }
            for pid, p in s.proposals.items()
        },
    }


def encode(s: GovernanceState) -> bytes:
    """Canonical JSON bytes of the state: equal states, equal bytes, on every node."""
    return canonical_json(to_json(s)).encode()


def state_digest(s: GovernanceState) -> bytes:
    return keccak(encode(s))


class StateFormatError(ValueError):
    pass


def _b(value: Any, size: int) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x") or len(value) != 2 + 2 * size:
        raise StateFormatError(f"expected {size} bytes of 0x-hex, got {value!r}")
    return bytes.fromhex(value[2:])


def _ob(value: Any, size: int) -> bytes | None:
    return None if value is None else _b(value, size)


def decode(data: bytes) -> GovernanceState:
    """The state back from ``encode``'s bytes; refuses another version or a non-canonical
    form (so a stored state that decodes is byte for byte what was stored)."""
    try:
        raw = json.loads(data)
        if raw.get("version") != STATE_VERSION:
            raise StateFormatError(f"governance state version {raw.get('version')!r}")
        s = GovernanceState(
            chain_id=int(raw["chainId"]),
            genesis_hash=_b(raw["genesis"], 32),
            members={
                _b(a, 20): Member(_ob(m["encryptionKey"], 32), m["data"], bool(m["active"]))
                for a, m in raw["members"].items()
            },
            nodes={
                _b(a, 20): Node(
                    n["state"], _ob(n["measurement"], 32), n["platform"], int(n["since"])
                )
                for a, n in raw["nodes"].items()
            },
            validators=[
                (int(first), tuple(_b(v, 20) for v in vs)) for first, vs in raw["validators"]
            ],
            measurements={_b(m, 32) for m in raw["measurements"]},
            platforms=set(raw["platforms"]),
            allow_virtual=bool(raw["allowVirtual"]),
            policies=dict(raw["policies"]),
            recovery_threshold=int(raw["recoveryThreshold"]),
            constitution=const.parse(raw["constitution"]),
            service=raw["service"],
            ledger_generation=int(raw["ledgerGeneration"]),
            shares_generation=int(raw["sharesGeneration"]),
            next_seq=int(raw["nextSeq"]),
            proposals={
                _b(pid, 32): ProposalInfo(
                    seq=int(p["seq"]),
                    proposer=_b(p["proposer"], 20),
                    created=int(p["created"]),
                    actions=tuple(Action(a["kind"], a["args"]) for a in p["actions"]),
                    height=int(p["height"]),
                    expires=int(p["expires"]),
                    status=p["status"],
                    ballots={
                        _b(m, 20): (bool(b["approve"]), int(b["revision"]))
                        for m, b in p["ballots"].items()
                    },
                    closed_height=p["closedHeight"],
                    reason=p["reason"],
                )
                for pid, p in raw["proposals"].items()
            },
        )
    except StateFormatError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError, GovernanceError) as exc:
        raise StateFormatError(f"malformed governance state: {exc}") from None
    if encode(s) != data:
        raise StateFormatError("the governance state is not in canonical form")
    return s
