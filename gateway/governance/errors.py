"""Governance refusals: one exception with a stable reason code.

Every refusal of the governance core is a ``GovernanceError`` whose ``reason`` is one of
``REASONS`` (listed in docs/GOVERNANCE.md). Programs decide on the reason, never on the text.
It is an ``RpcError``, so the node can hand it to a JSON-RPC caller unchanged: malformed input
is -32602 (invalid params), a well-formed record that the rules refuse is -32000.
"""

from __future__ import annotations

from typing import Any

from gateway.errors import INVALID_PARAMS, SERVER_ERROR, RpcError

# reason -> (JSON-RPC code, what it means)
REASONS: dict[str, tuple[int, str]] = {
    # the record itself
    "bad-record": (INVALID_PARAMS, "the signed record does not decode, or is not canonical"),
    "bad-ledger-secret": (
        INVALID_PARAMS,
        "a ledger secret record is malformed, misplaced, or not for the trusted nodes",
    ),
    "record-version": (INVALID_PARAMS, "the signed record is of a version this node does not read"),
    "bad-action": (INVALID_PARAMS, "an action is malformed (kind, or args not canonical JSON)"),
    "unknown-action": (INVALID_PARAMS, "an action's kind is not one the governance core knows"),
    "bad-args": (INVALID_PARAMS, "an action's arguments do not match its kind"),
    "too-many-actions": (INVALID_PARAMS, "a proposal has no action or more than MAX_ACTIONS"),
    # signature and replay
    "bad-signature": (SERVER_ERROR, "the signature is malformed or recovers another address"),
    "wrong-chain": (SERVER_ERROR, "the record was signed for another chain id"),
    "wrong-consortium": (SERVER_ERROR, "the record was signed for another genesis (consortium)"),
    "not-proposer": (SERVER_ERROR, "the signer is not the proposal's proposer"),
    "created-in-future": (SERVER_ERROR, "a proposal's created time is ahead of the block time"),
    "created-too-old": (SERVER_ERROR, "a proposal's created time is too far behind the block"),
    "duplicate": (SERVER_ERROR, "this proposal or ballot was recorded already"),
    "stale-ballot": (SERVER_ERROR, "a ballot with this revision or a higher one was recorded"),
    # who may act
    "not-a-member": (SERVER_ERROR, "the signer is not a member of the consortium"),
    "removed-member": (SERVER_ERROR, "the signer was a member and has been removed"),
    "too-many-open": (SERVER_ERROR, "the member has MAX_OPEN_PER_MEMBER proposals open"),
    # the proposal's lifecycle
    "unknown-proposal": (SERVER_ERROR, "no proposal has this id"),
    "proposal-not-open": (SERVER_ERROR, "the proposal is no longer open"),
    # the state an action needs
    "member-exists": (SERVER_ERROR, "add_member names an active member"),
    "unknown-member": (SERVER_ERROR, "the action names no active member"),
    "last-member": (SERVER_ERROR, "removing the member would leave no member"),
    "below-recovery-threshold": (
        SERVER_ERROR,
        "fewer active share holders than the recovery threshold would remain",
    ),
    "unknown-node": (SERVER_ERROR, "the action names no known node"),
    "node-exists": (SERVER_ERROR, "the node is known already"),
    "node-not-pending": (SERVER_ERROR, "trust_node names a node that is not pending"),
    "node-not-trusted": (SERVER_ERROR, "the node is not trusted (add_validator needs it)"),
    "node-retired": (SERVER_ERROR, "the node is retired"),
    "node-is-validator": (SERVER_ERROR, "retire_node names a validator: remove it first"),
    "already-validator": (SERVER_ERROR, "add_validator names a validator"),
    "not-validator": (SERVER_ERROR, "remove_validator names no validator"),
    "no-validator": (SERVER_ERROR, "the change would leave no validator"),
    "no-quorum": (SERVER_ERROR, "the change would leave fewer able validators than a quorum"),
    "measurement-not-allowed": (SERVER_ERROR, "the node's measurement is not allowed"),
    "platform-not-allowed": (SERVER_ERROR, "the node's platform is not allowed"),
    "virtual-not-allowed": (SERVER_ERROR, "virtual enclaves may not join"),
    "bad-attestation": (SERVER_ERROR, "a join record's attestation does not verify"),
    "too-many-pending": (SERVER_ERROR, "MAX_PENDING_NODES nodes wait for a trust vote already"),
    "already-allowed": (SERVER_ERROR, "the measurement or platform is allowed already"),
    "not-allowed": (SERVER_ERROR, "the measurement or platform is not allowed"),
    "bad-threshold": (SERVER_ERROR, "the recovery threshold is out of range"),
    "already-open": (SERVER_ERROR, "the network is open already"),
    # recovery shares
    "bad-share": (INVALID_PARAMS, "a share or share set is malformed"),
    "wrong-share": (SERVER_ERROR, "a share is not the one issued to that member"),
    "unknown-holder": (SERVER_ERROR, "the member holds no share of this generation"),
    "share-signer": (SERVER_ERROR, "a recovery share is signed by another than its member"),
    "wrong-generation": (SERVER_ERROR, "a recovery share of another share generation"),
    "wrong-node": (SERVER_ERROR, "a recovery share sealed to another node's enclave"),
    "not-recovering": (SERVER_ERROR, "the node is not in recovery mode"),
    "no-recovery-shares": (SERVER_ERROR, "no recovery share set is recorded"),
    "too-few-shares": (SERVER_ERROR, "fewer shares than the recovery threshold"),
    # the constitution
    "bad-constitution": (INVALID_PARAMS, "the constitution does not parse (see the message)"),
}


class GovernanceError(RpcError):
    """A refusal with a stable ``reason`` (one of ``REASONS``) and typed fields beside it."""

    def __init__(self, reason: str, message: str, **fields: Any) -> None:
        if reason not in REASONS:
            raise AssertionError(f"unknown governance reason {reason!r}")
        super().__init__(message, code=REASONS[reason][0], reason=reason, **fields)
        self.reason = reason
        self.fields = fields
