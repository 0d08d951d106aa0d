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
from gateway.errors import InvalidParams
from gateway.governance import constitution, share_record, typed
from gateway.governance.actions import KINDS, POLICIES, parse_args
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


def _bad_message(field: str, what: str) -> InvalidParams:
    return InvalidParams(
        f"invalid argument 0 (message): {field} {what}", reason="bad-params", field=field
    )


def _fields(raw: dict[str, Any], required: tuple[str, ...], optional: tuple[str, ...]) -> None:
    missing = [name for name in required if name not in raw]
    if missing:
        raise _bad_message(missing[0], "is missing")
    unknown = sorted(set(raw) - set(required) - set(optional))
    if unknown:
        raise _bad_message(unknown[0], "is not a field of this message")


def _checked(check: Callable[[Any, str, int], Any], raw: dict[str, Any], name: str) -> Any:
    """``check`` (a gateway.api.params reader) on field ``name``, its refusal a bad-params."""
    try:
        return check(raw[name], f"message.{name}", 0)
    except InvalidParams as exc:
        raise InvalidParams(exc.message, reason="bad-params", field=name) from None


def _uint64(raw: dict[str, Any], name: str, default: int) -> int:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= typed.UINT64_MAX:
        raise _bad_message(name, "must be an integer in [0, 2^64 - 1]")
    return value


def message_from_description(raw: Any, clock: int) -> typed.Message:
    """The message coco_govTypedData describes (docs/GOVERNANCE.md, "Over RPC"): a
    proposal's actions with their arguments as JSON objects (made canonical here and checked
    against their kind), a ballot or a withdrawal; ``created`` defaults to ``clock``."""
    if not isinstance(raw, dict):
        raise InvalidParams(
            f"invalid argument 0 (message): expected an object, got {p.json_type(raw)}",
            reason="bad-params",
            field="message",
        )
    kind = raw.get("type")
    if kind == "proposal":
        _fields(raw, ("type", "proposer", "actions"), ("created",))
        proposer = _checked(p.address, raw, "proposer")
        actions_raw = raw["actions"]
        if not isinstance(actions_raw, list) or not 0 < len(actions_raw) <= typed.MAX_ACTIONS:
            raise _bad_message("actions", f"must be a list of 1 to {typed.MAX_ACTIONS} actions")
        actions = []
        for i, item in enumerate(actions_raw):
            if not isinstance(item, dict) or not isinstance(item.get("kind"), str):
                raise _bad_message(f"actions[{i}]", 'must be {"kind": "...", "args": {...}}')
            unknown = sorted(set(item) - {"kind", "args"})
            if unknown:
                raise _bad_message(f"actions[{i}].{unknown[0]}", "is not a field of an action")
            args = item.get("args", {})
            if not isinstance(args, dict):
                raise _bad_message(f"actions[{i}].args", "must be a JSON object")
            action = typed.Action.make(item["kind"], args)  # bad-action
            parse_args(action.kind, action.params())  # unknown-action, bad-args
            actions.append(action)
        return typed.Proposal(proposer, _uint64(raw, "created", clock), tuple(actions))
    if kind == "ballot":
        _fields(raw, ("type", "proposal", "approve"), ("revision",))
        return typed.Ballot(
            _checked(p.hash32, raw, "proposal"),
            _checked(p.boolean, raw, "approve"),
            _uint64(raw, "revision", 0),
        )
    if kind == "withdraw":
        _fields(raw, ("type", "proposal"), ())
        return typed.Withdraw(_checked(p.hash32, raw, "proposal"))
    raise _bad_message("type", 'must be "proposal", "ballot" or "withdraw"')


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

    async def coco_govTypedData(self, params: list[Any], ctx: Any) -> Any:
        """What a wallet signs (``eth_signTypedData_v4``) for the proposal, ballot or
        withdrawal that ``params[0]`` describes, in this consortium's domain, and the
        proposal id it makes or names. Signs nothing and records nothing."""
        p.arity(params, 1)
        message = message_from_description(params[0], int(now()))
        await self._ask(m.GovQuery("constitution"))  # no-governance before any domain
        status = await self._ask(m.GetStatus())
        typed_data = typed_data_for(int(status["chainId"]), bytes(status["genesisHash"]), message)
        pid = (
            typed.proposal_id(message) if isinstance(message, typed.Proposal) else message.proposal
        )
        return {"typedData": typed_data, "proposal": hexdata(pid)}

    async def coco_govActions(self, params: list[Any], ctx: Any) -> Any:
        """The action kinds this node's governance accepts: each one's arguments (type,
        whether required) and the constitution's rule for it; the node policies' values."""
        p.arity(params, 0)
        rules = constitution.parse(await self._ask(m.GovQuery("constitution")))
        return {
            "actions": {
                kind: {
                    "args": {
                        name: {"type": typ, "required": needed}
                        for name, (typ, needed) in spec.items()
                    },
                    "threshold": rules.rule(kind).threshold,
                    "openFor": rules.rule(kind).open_for,
                }
                for kind, spec in KINDS.items()
            },
            "policies": {name: list(values) for name, values in POLICIES.items()},
        }

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
        answer: dict[str, Any] = await self._ask(m.RecoverySubmit(raw))
        record = answer.pop("record", None)
        if record is not None:  # recovered: its recovery record goes to the other nodes
            self.on_governance(bytes(record))
            answer["record"] = hexdata(bytes(record))
        return answer


def typed_data_for(chain_id: int, genesis: bytes, message: typed.Message) -> dict[str, Any]:
    """What a wallet signs for ``message`` in this consortium (for clients and the CLI)."""
    return typed.typed_data(typed.Domain(chain_id, genesis), message)
