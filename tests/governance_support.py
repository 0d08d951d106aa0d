"""A small consortium for the governance unit tests: members with real keys, a driver that
signs records as a wallet would and applies them block by block."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from eth_account import Account

from gateway.governance import state as st
from gateway.governance import typed as t
from gateway.governance.errors import GovernanceError

CHAIN_ID = 31337
GENESIS = bytes(range(32))
OTHER_GENESIS = bytes(range(1, 33))
T0 = 1_795_283_149  # a block time
# Anvil's well-known development keys 0..5
KEYS = [
    bytes.fromhex(k)
    for k in (
        "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
        "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
        "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
        "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
        "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    )
]
ADDRS = [bytes.fromhex(Account.from_key(k).address[2:]) for k in KEYS]
DOMAIN = t.Domain(CHAIN_ID, GENESIS)
# node addresses (not member accounts)
NODES = [bytes([0xA0 + i]) * 20 for i in range(6)]
MEASUREMENT = bytes([0x11]) * 32


def enc_key(i: int) -> X25519PrivateKey:
    return X25519PrivateKey.from_private_bytes(bytes([0x40 + i]) * 32)


def enc_pub(i: int) -> bytes:
    return enc_key(i).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def member_args(count: int = 3, threshold: int = 2) -> list[str]:
    """``coco-gateway init`` arguments making members 0..count-1 (``KEYS``, with their
    ``enc_pub`` encryption keys, so they hold recovery shares) and the recovery threshold."""
    out: list[str] = []
    for i in range(count):
        out += ["--member", f"0x{ADDRS[i].hex()}:0x{enc_pub(i).hex()}"]
    return [*out, "--recovery-threshold", str(threshold)]


def vote_through(node: Any, domain: t.Domain, *actions: t.Action) -> bytes:
    """Members 0 and 1 (a majority of three) propose ``actions`` at ``node`` over
    ``coco_govSubmit`` and both approve; returns the proposal id."""
    proposal = t.Proposal(ADDRS[0], int(time.time()), actions)
    pid = t.proposal_id(proposal)
    for record in (
        t.sign(KEYS[0], domain, proposal),
        t.sign(KEYS[0], domain, t.Ballot(pid, True, 0)),
        t.sign(KEYS[1], domain, t.Ballot(pid, True, 0)),
    ):
        node.rpc("coco_govSubmit", [t.encode_record(record).decode()])
    return pid


def hx(b: bytes) -> str:
    return "0x" + b.hex()


def make_state(members: int = 4, validators: int = 4, threshold: int = 2, **kw: Any) -> Any:
    return st.genesis(
        chain_id=CHAIN_ID,
        genesis_hash=GENESIS,
        members=[st.GenesisMember(ADDRS[i], enc_pub(i)) for i in range(members)],
        validators=NODES[:validators],
        measurements=[MEASUREMENT],
        platforms=["virtual"],
        allow_virtual=True,
        recovery_threshold=threshold,
        **kw,
    )


@dataclass
class Chain:
    """Applies records at increasing heights, one second apart; keeps every event."""

    state: Any
    height: int = 1
    now: int = T0
    events: list[Any] = field(default_factory=list)
    created: int = 0  # to make proposals with equal actions distinct

    def submit(self, record: t.SignedRecord | bytes) -> list[Any]:
        self.state, events = st.apply(self.state, record, self.height, self.now)
        self.events.extend(events)
        self.height += 1
        self.now += 1
        return events

    def advance(self, seconds: int) -> list[Any]:
        self.now += seconds
        self.state, events = st.tick(self.state, self.height, self.now)
        self.events.extend(events)
        self.height += 1
        return events

    def propose(self, who: int, *actions: tuple[str, dict[str, Any]]) -> bytes:
        self.created += 1
        proposal = t.Proposal(
            ADDRS[who],
            self.now - 60 + self.created % 30,
            tuple(t.Action.make(kind, args) for kind, args in actions),
        )
        self.submit(t.sign(KEYS[who], DOMAIN, proposal))
        return t.proposal_id(proposal)

    def vote(self, who: int, pid: bytes, approve: bool = True, revision: int = 0) -> list[Any]:
        return self.submit(t.sign(KEYS[who], DOMAIN, t.Ballot(pid, approve, revision)))

    def status(self, pid: bytes) -> str:
        return str(self.state.proposals[pid].status)


def refused(reason: str, fn: Any, *args: Any, **kwargs: Any) -> GovernanceError:
    """Call fn and assert it refuses with this reason; return the error."""
    try:
        fn(*args, **kwargs)
    except GovernanceError as exc:
        assert exc.reason == reason, f"refused with {exc.reason!r} ({exc.message}), not {reason!r}"
        return exc
    raise AssertionError(f"not refused (expected {reason!r})")
