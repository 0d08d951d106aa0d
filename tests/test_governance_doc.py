"""docs/GOVERNANCE.md's worked example, reason codes, actions and default rules match the
code byte for byte."""

from __future__ import annotations

import json
import re

from conftest import REPO
from eth_account import Account

from gateway.governance import typed as t
from gateway.governance.actions import KINDS
from gateway.governance.constitution import DEFAULT_JSON
from gateway.governance.errors import REASONS

DOC = (REPO / "docs" / "GOVERNANCE.md").read_text()
KEY = bytes.fromhex("ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80")
ME = bytes.fromhex(Account.from_key(KEY).address[2:])
DOMAIN = t.Domain(31337, bytes(range(32)))
NODE = "0x" + "a0" * 20
PROPOSAL = t.Proposal(
    ME,
    1795283149,
    (
        t.Action.make("trust_node", {"address": NODE}),
        t.Action.make("add_validator", {"address": NODE}),
    ),
)


def _hex_after(label: str, lines: int = 1) -> str:
    match = re.search(rf"^{label}\s+([0-9a-f]+)((?:\n\s+[0-9a-f]+){{0,{lines - 1}}})", DOC, re.M)
    assert match, f"{label} not found in GOVERNANCE.md"
    return (match.group(1) + match.group(2)).replace("\n", "").replace(" ", "")


def test_typed_data_block_is_what_the_code_builds() -> None:
    start = DOC.index("The typed data its wallet signs")
    begin = DOC.index("```json\n", start) + 8
    block = DOC[begin : DOC.index("\n```", begin)]
    documented = json.loads(block)
    built = t.typed_data(DOMAIN, PROPOSAL)
    assert documented == built
    assert t.canonical_json(documented) == t.canonical_json(built)


def test_proposal_hashes_signature_and_record() -> None:
    assert _hex_after("gov-domain") == t.domain_separator(DOMAIN).hex()
    assert _hex_after("proposal-id") == t.proposal_id(PROPOSAL).hex()
    assert _hex_after("gov-digest") == t.digest(DOMAIN, PROPOSAL).hex()
    record = t.sign(KEY, DOMAIN, PROPOSAL)
    assert _hex_after("gov-signature", 2) == record.signature.hex()
    # as a wallet signs it
    wallet = Account.sign_typed_data(KEY, full_message=t.typed_data(DOMAIN, PROPOSAL))
    assert bytes(wallet.signature) == record.signature
    line = t.encode_record(record).decode()
    assert f"```text\n{line}\n```" in DOC
    assert t.verify(t.decode_record(line.encode()), DOMAIN) == ME


def test_ballot_hashes_and_signature() -> None:
    ballot = t.Ballot(t.proposal_id(PROPOSAL), True, 0)
    assert _hex_after("ballot-struct") == t.struct_hash(ballot).hex()
    assert _hex_after("ballot-digest") == t.digest(DOMAIN, ballot).hex()
    assert _hex_after("ballot-signature", 2) == t.sign(KEY, DOMAIN, ballot).signature.hex()


def test_every_reason_code_and_action_is_documented() -> None:
    for reason, (code, _) in REASONS.items():
        assert re.search(rf"^\| `{reason}` \| {code} \|", DOC, re.M), reason
    for kind in KINDS:
        assert re.search(rf"^\| `{kind}` \|", DOC, re.M), kind
    default = DOC[DOC.index("The **default constitution**") :]
    default = default[: default.index("\n\n")]
    for kind, rule in DEFAULT_JSON["actions"].items():
        assert rule == {"threshold": "two-thirds"} and f"`{kind}`" in default
