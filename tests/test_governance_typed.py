"""Governance messages: EIP-712 typed data signed exactly as a wallet signs it, records
encoded canonically, and forged or replayed signatures refused by name."""

from __future__ import annotations

import json

import pytest
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from governance_support import ADDRS, CHAIN_ID, DOMAIN, GENESIS, KEYS, OTHER_GENESIS, T0, refused

from gateway.governance import typed as t
from gateway.governance.errors import GovernanceError


def _proposal() -> t.Proposal:
    return t.Proposal(
        ADDRS[0],
        T0,
        (
            t.Action.make("trust_node", {"address": "0x" + "a0" * 20}),
            t.Action.make("add_validator", {"address": "0x" + "a0" * 20}),
        ),
    )


def test_typed_data_is_what_a_wallet_gets() -> None:
    td = t.typed_data(DOMAIN, _proposal())
    assert td["primaryType"] == "Proposal"
    assert td["domain"] == {
        "name": "Coco Gateway Governance",
        "version": "1",
        "chainId": CHAIN_ID,
        "salt": "0x" + GENESIS.hex(),
    }
    assert set(td["types"]) == {"EIP712Domain", "Proposal", "Action"}
    assert td["message"]["actions"][0] == {
        "kind": "trust_node",
        "args": '{"address":"0x' + "a0" * 20 + '"}',
    }
    # it survives a JSON round trip (what eth_signTypedData_v4 receives is a JSON string)
    again = json.loads(json.dumps(td))
    assert encode_typed_data(full_message=again) == encode_typed_data(full_message=td)
    ballot = t.typed_data(DOMAIN, t.Ballot(b"\x01" * 32, True, 3))
    assert ballot["primaryType"] == "Ballot" and set(ballot["types"]) == {"EIP712Domain", "Ballot"}
    withdraw = t.typed_data(DOMAIN, t.Withdraw(b"\x01" * 32))
    assert withdraw["primaryType"] == "Withdraw"


@pytest.mark.parametrize(
    "message",
    [_proposal(), t.Ballot(b"\x07" * 32, False, 2), t.Withdraw(b"\x07" * 32)],
    ids=["proposal", "ballot", "withdraw"],
)
def test_wallet_signatures_verify(message: t.Message) -> None:
    td = t.typed_data(DOMAIN, message)
    # as eth-account's wallet API signs typed data, two ways
    by_typed = Account.sign_typed_data(KEYS[1], full_message=td)
    by_message = Account.sign_message(encode_typed_data(full_message=td), KEYS[1])
    assert by_typed.signature == by_message.signature
    assert keccak(
        b"\x19\x01"
        + encode_typed_data(full_message=td).header
        + encode_typed_data(full_message=td).body
    ) == t.digest(DOMAIN, message)
    assert by_typed.message_hash == t.digest(DOMAIN, message)
    record = t.SignedRecord(DOMAIN, ADDRS[1], message, bytes(by_typed.signature))
    if isinstance(message, t.Proposal):
        refused("not-proposer", t.verify, record, DOMAIN)  # proposer is ADDRS[0]
    else:
        assert t.verify(record, DOMAIN) == ADDRS[1]
    assert t.sign(KEYS[1], DOMAIN, message).signature == bytes(by_typed.signature)


def test_proposal_id_is_the_struct_hash_computed_by_hand() -> None:
    p = _proposal()
    action_type = keccak(b"Action(string kind,string args)")
    proposal_type = keccak(
        b"Proposal(address proposer,uint64 created,Action[] actions)Action(string kind,string args)"
    )
    actions = b"".join(
        keccak(action_type + keccak(a.kind.encode()) + keccak(a.args.encode())) for a in p.actions
    )
    expected = keccak(
        proposal_type
        + p.proposer.rjust(32, b"\0")
        + p.created.to_bytes(32, "big")
        + keccak(actions)
    )
    assert t.proposal_id(p) == expected
    # the id does not depend on the domain; the signature does
    other = t.Domain(CHAIN_ID, OTHER_GENESIS)
    assert t.digest(other, p) != t.digest(DOMAIN, p)


def test_record_round_trip_and_canonical_form() -> None:
    for message in (_proposal(), t.Ballot(b"\x09" * 32, True, 5), t.Withdraw(b"\x09" * 32)):
        record = t.sign(KEYS[0], DOMAIN, message)
        data = t.encode_record(record)
        assert t.decode_record(data) == record
        assert json.loads(data)["version"] == 1
        # any other byte form of the same content is refused
        spaced = json.dumps(json.loads(data), indent=1).encode()
        refused("bad-record", t.decode_record, spaced)
    data = t.encode_record(t.sign(KEYS[0], DOMAIN, t.Ballot(b"\x09" * 32, True, 5)))
    obj = json.loads(data)
    refused("bad-record", t.decode_record, data.replace(b'"0x0909', b'"0X0909'))
    upper = dict(obj, signer=obj["signer"].upper().replace("0X", "0x"))
    refused("bad-record", t.decode_record, t.canonical_json(upper).encode())
    refused("bad-record", t.decode_record, t.canonical_json(dict(obj, extra=1)).encode())
    refused("record-version", t.decode_record, t.canonical_json(dict(obj, version=2)).encode())
    refused("bad-record", t.decode_record, t.canonical_json(dict(obj, type="veto")).encode())
    refused("bad-record", t.decode_record, b"\xff\xfe")
    refused("bad-record", t.decode_record, b"[]")
    refused("bad-record", t.decode_record, b" " * (t.MAX_RECORD_BYTES + 1))
    bad_bool = dict(obj, message=dict(obj["message"], approve=1))
    refused("bad-record", t.decode_record, t.canonical_json(bad_bool).encode())


def test_actions_are_canonical_json_objects() -> None:
    a = t.Action.make("set_member_data", {"data": {"b": 1, "a": "é"}, "address": "0x" + "00" * 20})
    assert a.args == '{"address":"0x' + "00" * 20 + '","data":{"a":"\\u00e9","b":1}}'
    refused("bad-action", t.Action("set_member_data", '{"b":1, "a":2}').check)
    refused("bad-action", t.Action("set_member_data", "[1]").check)
    refused("bad-action", t.Action("set_member_data", "{").check)
    refused("bad-action", t.Action.make, "set_member_data", {"x": 1.5})
    refused("bad-action", t.Action("Set-Member", "{}").check)
    refused("bad-action", t.Action("x" * 65, "{}").check)
    too_many = [{"kind": "open_network", "args": "{}"}] * (t.MAX_ACTIONS + 1)
    message = {"proposer": "0x" + "00" * 20, "created": 1, "actions": too_many}
    refused("too-many-actions", t.parse_message, "proposal", message)
    refused("too-many-actions", t.parse_message, "proposal", dict(message, actions=[]))


def test_forged_and_replayed_signatures_are_refused_by_name() -> None:
    ballot = t.Ballot(b"\x05" * 32, True, 0)
    good = t.sign(KEYS[2], DOMAIN, ballot)
    assert t.verify(good, DOMAIN) == ADDRS[2]
    # signed by another key, claiming to be member 2
    forged = t.SignedRecord(DOMAIN, ADDRS[2], ballot, t.sign(KEYS[3], DOMAIN, ballot).signature)
    refused("bad-signature", t.verify, forged, DOMAIN)
    # a signature with a flipped byte, or of the wrong length
    flipped = bytearray(good.signature)
    flipped[10] ^= 1
    refused(
        "bad-signature", t.verify, t.SignedRecord(DOMAIN, ADDRS[2], ballot, bytes(flipped)), DOMAIN
    )
    refused(
        "bad-signature", t.verify, t.SignedRecord(DOMAIN, ADDRS[2], ballot, b"\x01" * 64), DOMAIN
    )
    # the same ballot moved onto another proposal
    moved = t.SignedRecord(DOMAIN, ADDRS[2], t.Ballot(b"\x06" * 32, True, 0), good.signature)
    refused("bad-signature", t.verify, moved, DOMAIN)
    # flipped from approve to reject
    flipped_vote = t.SignedRecord(
        DOMAIN, ADDRS[2], t.Ballot(b"\x05" * 32, False, 0), good.signature
    )
    refused("bad-signature", t.verify, flipped_vote, DOMAIN)
    # made for another chain, or another consortium with the same chain id
    other_chain = t.sign(KEYS[2], t.Domain(1, GENESIS), ballot)
    refused("wrong-chain", t.verify, other_chain, DOMAIN)
    other_consortium = t.sign(KEYS[2], t.Domain(CHAIN_ID, OTHER_GENESIS), ballot)
    refused("wrong-consortium", t.verify, other_consortium, DOMAIN)
    # ... and relabelled as ours: then the signature does not recover the signer
    relabelled = t.SignedRecord(DOMAIN, ADDRS[2], ballot, other_consortium.signature)
    refused("bad-signature", t.verify, relabelled, DOMAIN)


def test_governance_error_is_an_rpc_error_with_a_reason() -> None:
    err = GovernanceError("stale-ballot", "x", recorded=3)
    assert err.to_json() == {
        "code": -32000,
        "message": "x",
        "data": {"reason": "stale-ballot", "recorded": 3},
    }
    assert GovernanceError("bad-record", "y").code == -32602
    with pytest.raises(AssertionError):
        GovernanceError("no-such-reason", "z")


def test_a_record_from_what_the_wallet_signed() -> None:
    for message in (_proposal(), t.Ballot(b"\x05" * 32, True, 1), t.Withdraw(b"\x05" * 32)):
        td = json.loads(json.dumps(t.typed_data(DOMAIN, message)))  # as a page sends it
        signed = Account.sign_typed_data(KEYS[0], full_message=td)
        record = t.from_typed_data(td, bytes(signed.signature), ADDRS[0])
        assert record == t.sign(KEYS[0], DOMAIN, message)
        assert t.verify(record, DOMAIN) == ADDRS[0]
    td = t.typed_data(DOMAIN, t.Ballot(b"\x05" * 32, True, 1))
    sig = b"\x00" * 65
    refused("bad-record", t.from_typed_data, dict(td, primaryType="Mail"), sig, ADDRS[0])
    other_name = dict(td, domain=dict(td["domain"], name="Coco Gateway"))
    refused("bad-record", t.from_typed_data, other_name, sig, ADDRS[0])
    extra_type = dict(td, types=dict(td["types"], Extra=[{"name": "x", "type": "uint8"}]))
    refused("bad-record", t.from_typed_data, extra_type, sig, ADDRS[0])
    renamed = dict(
        td,
        types=dict(
            td["types"],
            Ballot=[
                {"name": "proposal", "type": "bytes32"},
                {"name": "approve", "type": "bool"},
                {"name": "revision", "type": "uint256"},
            ],
        ),
    )
    refused("bad-record", t.from_typed_data, renamed, sig, ADDRS[0])
    refused("bad-record", t.from_typed_data, dict(td, message={"proposal": "0x05"}), sig, ADDRS[0])


def test_messages_built_in_code_are_checked_before_use() -> None:
    bad = [
        t.Proposal(ADDRS[0], T0, ()),  # no action
        t.Proposal(ADDRS[0], T0, (t.Action("open_network", "{ }"),)),  # args not canonical
        t.Proposal(ADDRS[0][:19], T0, (t.Action.make("open_network"),)),  # short address
        t.Proposal(ADDRS[0], -1, (t.Action.make("open_network"),)),
        t.Ballot(b"\x01" * 32, True, 2**64),  # revision beyond uint64
        t.Ballot(b"\x01" * 31, True, 0),
        t.Ballot(b"\x01" * 32, 1, 0),  # type: ignore[arg-type]
        t.Withdraw("0x01"),  # type: ignore[arg-type]
    ]
    for message in bad:
        record = t.SignedRecord(DOMAIN, ADDRS[0], message, b"\x00" * 65)
        with pytest.raises(GovernanceError) as info:
            t.verify(record, DOMAIN)
        assert info.value.reason in {"bad-record", "bad-action", "too-many-actions"}, message


def test_mangled_records_only_ever_raise_governance_errors() -> None:
    import random

    from governance_support import make_state

    from gateway.governance import state as st

    rng = random.Random(9)
    good = [
        t.encode_record(t.sign(KEYS[0], DOMAIN, m))
        for m in (_proposal(), t.Ballot(b"\x05" * 32, True, 1), t.Withdraw(b"\x05" * 32))
    ]
    s = make_state()
    outcomes = set()
    for _ in range(600):
        data = bytearray(rng.choice(good))
        for _step in range(rng.randint(1, 4)):
            op = rng.randrange(3)
            at = rng.randrange(len(data))
            if op == 0:
                data[at] = rng.randrange(256)
            elif op == 1:
                del data[at : at + rng.randint(1, 8)]
            else:
                data[at:at] = bytes(rng.choice(b'{}[]":,0x1aeftrn\\') for _ in range(3))
        try:
            st.apply(s, bytes(data), 1, T0)
            outcomes.add("applied")
        except GovernanceError as exc:
            outcomes.add(exc.reason)
    assert "bad-record" in outcomes and len(outcomes) >= 2, outcomes
