"""The node's side of governance, without a cluster: the terms' governance fields (strict,
named errors; old terms unchanged), the block's governance section (built by a proposer,
verified and applied alike by another node, committed by extraData), the sealed body's
``gov`` key, and ``init --member``'s parsing."""

from __future__ import annotations

import time
from typing import Any

import pytest
from test_config import terms_dict

from gateway.config import ConfigError, ConsortiumTerms
from gateway.devaccounts import derive
from gateway.enclave import consortium, govern
from gateway.enclave.blocks import open_body_full, seal_body
from gateway.errors import BlockRefused, RpcError
from gateway.govcli import parse_member
from gateway.governance import state as gs
from gateway.governance import typed
from gateway.governance.errors import GovernanceError

ACCOUNTS = derive()
MEMBERS = ACCOUNTS[:3]
GENESIS = bytes(range(32))


def governed() -> dict[str, Any]:
    data = terms_dict()
    data["members"] = [{"address": a.address.lower()} for a in MEMBERS]
    return data


# ----------------------------------------------------------------------------- terms


def test_terms_without_members_are_unchanged() -> None:
    terms = ConsortiumTerms.from_dict(terms_dict())
    assert "members" not in terms.to_dict() and "recoveryThreshold" not in terms.to_dict()
    assert terms.canonical_json() == ConsortiumTerms.from_dict(terms_dict()).canonical_json()


def test_terms_with_members_round_trip() -> None:
    data = governed()
    data["members"][0]["data"] = {"org": "A"}
    data["members"][1]["encryptionKey"] = "0x" + "09" * 32
    data["recoveryThreshold"] = 1
    data["constitution"] = {"version": 1, "default": {"threshold": "majority", "openFor": 60}}
    terms = ConsortiumTerms.from_dict(data)
    assert ConsortiumTerms.from_dict(terms.to_dict()) == terms
    assert terms.to_dict()["members"][0] == {
        "address": MEMBERS[0].address.lower(),
        "data": {"org": "A"},
    }
    consortium.parse_terms(terms.to_open_terms())  # the enclave reads them too


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        (lambda d: d.update(members=[]), "members", "invalid-field"),
        (lambda d: d.update(members=[{"address": "0x12"}]), "members[0].address", "invalid-field"),
        (lambda d: d["members"].append(dict(d["members"][0])), "members[3].address",
         "inconsistent"),
        (lambda d: d["members"][0].update(encryptionKey="0x1234"), "members[0].encryptionKey",
         "invalid-field"),
        (lambda d: d["members"][0].update(role="x"), "members[0].role", "unknown-field"),
        (lambda d: d.update(recoveryThreshold=True), "recoveryThreshold", "invalid-field"),
        (lambda d: d.update(recoveryThreshold=5), "recoveryThreshold", "inconsistent"),
        (lambda d: d.update(constitution={"version": 2}), "members", "inconsistent"),
        (lambda d: d.update(constitution=[]), "constitution", "invalid-field"),
        (lambda d: (d.pop("members"), d.update(recoveryThreshold=1)), "recoveryThreshold",
         "inconsistent"),
        (lambda d: d.update(service="closed"), "service", "invalid-field"),
        (lambda d: (d.pop("members"), d.update(service="open")), "service", "inconsistent"),
    ],
)  # fmt: skip
def test_bad_governance_terms_are_named(change: Any, field: str, code: str) -> None:
    data = governed()
    change(data)
    with pytest.raises(ConfigError) as info:
        ConsortiumTerms.from_dict(data)
    assert (info.value.field, info.value.code) == (field, code), str(info.value)


def test_the_enclave_refuses_bad_governance_terms() -> None:
    data = ConsortiumTerms.from_dict(governed()).to_open_terms()
    data["members"] = [{"address": MEMBERS[0].address.lower(), "encryptionKey": "0x" + "00" * 32}]
    with pytest.raises(RpcError) as info:
        consortium.parse_terms(data)
    assert info.value.reason_code == "bad-terms"


def test_the_terms_say_how_the_service_starts(tmp_path: Any) -> None:
    from gateway.scaffold import InitError, InitOptions, init_consortium

    # without the field (terms written by hand): "opening", as CCF starts a service
    assert genesis_state().service == "opening"
    for service in ("open", "opening"):
        data = governed()
        data["service"] = service
        terms = ConsortiumTerms.from_dict(data)
        assert terms.service == service and terms.to_dict()["service"] == service
        open_terms = terms.to_open_terms()
        consortium.parse_terms(open_terms)  # the enclave reads them too
        assert gs.genesis_from_terms(open_terms, GENESIS).service == service
    with pytest.raises(ValueError, match="service"):
        gs.genesis_from_terms({**governed(), "service": "closed"}, GENESIS)
    # init --opening needs members (refused before any identity is made)
    with pytest.raises(InitError, match="--opening needs members"):
        init_consortium(InitOptions(tmp_path / "c", validators=1, opening=True))
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").iterdir())


def test_parse_member() -> None:
    key = "0x" + "ab" * 32
    assert parse_member("0x" + "AA" * 20 + ":" + key) == {
        "address": "0x" + "aa" * 20,
        "encryptionKey": key,
    }
    for bad in ("0x12", "0x" + "aa" * 20 + ":0x12", "nope"):
        with pytest.raises(ValueError):
            parse_member(bad)


# ----------------------------------------------------------------------------- sections


def genesis_state() -> gs.GovernanceState:
    data = ConsortiumTerms.from_dict(governed()).to_open_terms()
    return gs.genesis_from_terms(data, GENESIS)


def signed(key: bytes, message: typed.Message) -> bytes:
    return typed.encode_record(typed.sign(key, typed.Domain(1337, GENESIS), message))


def test_a_block_applies_alike_on_two_nodes() -> None:
    now = int(time.time())
    a, b = MEMBERS[0], MEMBERS[1]
    target = MEMBERS[2].address.lower()
    proposal = typed.Proposal(
        bytes.fromhex(a.address[2:]),
        now,
        (typed.Action.make("set_member_data", {"address": target, "data": {"x": 1}}),),
    )
    pid = typed.proposal_id(proposal)
    proposer, follower = govern.Governance(genesis_state()), govern.Governance(genesis_state())
    proposer.submit(signed(a.private_key, proposal), 1, now)
    ballot_a = signed(a.private_key, typed.Ballot(pid, True, 0))
    proposer.submit(ballot_a, 1, now)
    with pytest.raises(GovernanceError) as info:
        proposer.submit(ballot_a, 1, now)
    assert info.value.reason == "duplicate"
    ballot_b = signed(b.private_key, typed.Ballot(pid, True, 0))
    with pytest.raises(GovernanceError) as info:  # the proposal is not recorded there yet
        follower.submit(ballot_b, 1, now)
    assert info.value.reason == "unknown-proposal"
    built = proposer.build(1, now)
    assert len(built.records) == 2
    extra = govern.commitment(built.records)
    assert len(extra) == 32 and extra != govern.EMPTY_EXTRA
    checked = follower.verify(list(built.records), 1, now, extra)
    assert gs.encode(checked.state) == gs.encode(built.state)
    proposer.committed(built)
    follower.committed(checked)
    assert not proposer.pool
    follower.submit(ballot_b, 2, now + 1)  # now it is
    nxt = follower.build(2, now + 1)
    again = proposer.verify(list(nxt.records), 2, now + 1, govern.commitment(nxt.records))
    assert again.state.proposals[pid].status == "accepted"
    assert gs.state_digest(again.state) == gs.state_digest(nxt.state)
    assert again.state.members[bytes.fromhex(target[2:])].data == {"x": 1}


def test_a_section_must_match_the_header_and_apply() -> None:
    now = int(time.time())
    a = MEMBERS[0]
    node = govern.Governance(genesis_state())
    proposal = typed.Proposal(
        bytes.fromhex(a.address[2:]), now, (typed.Action.make("rotate_ledger_secret", {}),)
    )
    record = signed(a.private_key, proposal)
    assert node.verify([], 1, now, govern.EMPTY_EXTRA).records == []
    with pytest.raises(BlockRefused) as info:
        node.verify([record], 1, now, govern.EMPTY_EXTRA)  # not committed by extraData
    assert info.value.reason_code == "bad-governance"
    with pytest.raises(BlockRefused) as info:
        node.verify([], 1, now, govern.commitment([record]))
    assert info.value.reason_code == "bad-governance"
    stranger = ACCOUNTS[6]
    outsider = signed(
        stranger.private_key,
        typed.Proposal(bytes.fromhex(stranger.address[2:]), now, proposal.actions),
    )
    with pytest.raises(BlockRefused) as info:
        node.verify([outsider], 1, now, govern.commitment([outsider]))
    assert "not-a-member" in str(info.value)
    # the proposer leaves a refused record out, and drops it from its pool
    node.pool[b"\x01" * 32] = (outsider, typed.decode_record(outsider))
    assert node.build(1, now).records == [] and not node.pool


def test_sealed_body_carries_the_section() -> None:
    key, block_hash = b"\x05" * 32, b"\x09" * 32
    blob = seal_body(key, 1337, block_hash, [b"tx"], {b"k": b"v"}, [b'{"r":1}'])
    assert open_body_full(key, 1337, block_hash, blob) == ([b"tx"], {b"k": b"v"}, [b'{"r":1}'])
    plain = seal_body(key, 1337, block_hash, [b"tx"], {b"k": b"v"}, [])
    assert open_body_full(key, 1337, block_hash, plain)[2] == []


# -------------------------------------------------------------- coco_govSubmit's form


@pytest.mark.parametrize(
    "params",
    [
        ['{"version":1,"x":"\ud83d"}'],  # a lone surrogate, as the JSON escape "\ud83d" decodes
        [{"version": 1, "x": "\ud83d"}],
        [{"types": {}, "message": {"x": "\ud83d"}}, "0x" + "11" * 65],
    ],
)
def test_submit_refuses_text_that_is_not_utf8(params: list[Any]) -> None:
    """A record or typed data holding a lone surrogate (valid JSON, not valid UTF-8) is a
    named refusal, never an internal error (found by the fuzz, seed 3729758603)."""
    from gateway.api.gov import record_from_params

    with pytest.raises((GovernanceError, RpcError)) as caught:
        typed.decode_record(record_from_params(params))  # what coco_govSubmit does first
    assert not isinstance(caught.value, UnicodeError)
