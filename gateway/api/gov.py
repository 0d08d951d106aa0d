"""The coco_gov* methods: submit a signed governance record, read the governance state
(docs/GOVERNANCE.md, "Over RPC").

``coco_govSubmit`` takes either the signed record (docs/GOVERNANCE.md, "Messages": the JSON
object, or its canonical JSON as a string), or what a wallet signed and the signature:
``[typedData, signature]`` (the signer recovered from the signature) or ``[typedData,
signature, signer]`` (a signature that does not recover ``signer`` is ``bad-signature``).
The host checks the form; the enclave checks the record against the governance state at its
head (the core's reason codes), pools it, and the node forwards it to the other nodes; a
validator includes it in a block, where every node applies it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.api import params as p
from gateway.api.base import Handlers
from gateway.api.params import hexdata
from gateway.clock import now
from gateway.enclave import messages as m
from gateway.governance import share_record, typed
from gateway.governance.errors import GovernanceError

MAX_RECORD_TEXT = typed.MAX_RECORD_BYTES


def _utf8(text: str) -> bytes:
    """``text`` as UTF-8; JSON may carry a lone surrogate escape (``"\\ud83d"``), which no
    UTF-8 record can hold."""
    try:
        return text.encode()
    except UnicodeEncodeError:
        raise GovernanceError("bad-record", "the record is not valid UTF-8 text") from None


def record_from_params(params: list[Any]) -> bytes:
    """The canonical record bytes of coco_govSubmit's parameters (GovernanceError or
    InvalidParams on a malformed one)."""
    p.arity(params, 1, 2)
    first = params[0]
    if len(params) == 1:
        if isinstance(first, str):
            if len(first) > MAX_RECORD_TEXT:
                raise GovernanceError("bad-record", "the record is too long")
            return _utf8(first)
        if isinstance(first, dict):
            try:
                text = typed.canonical_json(first)
            except (TypeError, ValueError):
                raise GovernanceError("bad-record", "the record is not plain JSON") from None
            return _utf8(text)
        raise p.bad("record", 0, "expected the signed record (an object or its JSON text)")
    signature = p.data(params[1], "signature", 1, size=65)
    if not isinstance(first, dict):
        raise p.bad("typedData", 0, "expected the typed data the wallet signed (an object)")
    if len(params) == 3:
        signer = p.address(params[2], "signer", 2)
    else:
        probe = typed.from_typed_data(first, signature, bytes(20))
        signer = typed.recover_signer(probe.domain, probe.message, signature)
    return typed.encode_record(typed.from_typed_data(first, signature, signer))


class GovMethods(Handlers):
    on_governance: Callable[[bytes], None]

    async def coco_govSubmit(self, params: list[Any], ctx: Any) -> Any:
        """Submit a signed proposal, ballot or withdrawal (module docstring)."""
        record = record_from_params(params)
        typed.decode_record(record)  # the form, before the enclave trip
        answer = await self._ask(m.GovSubmit(record, int(now())))
        self.on_governance(bytes(answer["hash"]))
        return {
            "hash": hexdata(answer["hash"]),
            "type": answer["type"],
            "signer": hexdata(answer["signer"]),
            "proposal": hexdata(answer["proposal"]),
        }

    async def coco_govState(self, params: list[Any], ctx: Any) -> Any:
        """The governance state at this node's head: its digest, members, nodes, validator
        schedule, policies, recovery threshold, open proposals."""
        p.arity(params, 0)
        return await self._ask(m.GovQuery("state"))

    async def coco_govMembers(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 0)
        return await self._ask(m.GovQuery("members"))

    async def coco_govNodes(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 0)
        return await self._ask(m.GovQuery("nodes"))

    async def coco_govConstitution(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 0)
        return await self._ask(m.GovQuery("constitution"))

    async def coco_govProposals(self, params: list[Any], ctx: Any) -> Any:
        """Every proposal in the order recorded, with its ballots and tally; optional
        ``status`` filter ("open", "accepted", ...)."""
        p.arity(params, 0, 1)
        status = p.optional(params, 0, None)
        if status is not None:
            status = p.text(status, "status", 0)
        return await self._ask(m.GovQuery("proposals", status))

    async def coco_govProposal(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 1)
        pid = p.hash32(params[0], "proposal", 0)
        return await self._ask(m.GovQuery("proposal", "0x" + pid.hex()))

    async def coco_govBlock(self, params: list[Any], ctx: Any) -> Any:
        """A committed block's governance section (its records) and the state digest after
        it; null for a block this node has not committed."""
        p.arity(params, 1)
        number = p.quantity(params[0], "block", 0, bits=63)
        answer = await self._ask(m.GovQuery("block", number))
        return answer

    async def coco_govRecoveryShare(self, params: list[Any], ctx: Any) -> Any:
        """A member's encrypted recovery share of the newest generation, with the share
        set's context (chain id, genesis, generation, threshold) and the node's recovery
        status: public (only the member's X25519 key opens it)."""
        p.arity(params, 1)
        member = p.address(params[0], "member", 0)
        return await self._ask(m.RecoveryInfo(member))

    async def coco_govRecoveryStatus(self, params: list[Any], ctx: Any) -> Any:
        """The share set's summary and, on a node in recovery mode, the shares submitted so
        far, its recovery key and the attestation that binds the key to its enclave."""
        p.arity(params, 0)
        return await self._ask(m.RecoveryInfo(None))

    async def coco_govRecoverySubmit(self, params: list[Any], ctx: Any) -> Any:
        """A member's signed recovery share (docs/GOVERNANCE.md, "Recovery"): the record's
        JSON object or its canonical JSON text."""
        p.arity(params, 1)
        first = params[0]
        if isinstance(first, dict):
            try:
                first = typed.canonical_json(first)
            except (TypeError, ValueError):
                raise GovernanceError("bad-record", "the record is not plain JSON") from None
        if not isinstance(first, str):
            raise p.bad("record", 0, "expected the signed share record (an object or its text)")
        if len(first) > MAX_RECORD_TEXT:
            raise GovernanceError("bad-record", "the record is too long")
        raw = _utf8(first)
        share_record.decode(raw)  # the form, before the enclave trip
        return await self._ask(m.RecoverySubmit(raw))


def typed_data_for(chain_id: int, genesis: bytes, message: typed.Message) -> dict[str, Any]:
    """What a wallet signs for ``message`` in this consortium (for clients and the CLI)."""
    return typed.typed_data(typed.Domain(chain_id, genesis), message)
