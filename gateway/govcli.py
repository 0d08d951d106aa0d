"""``coco-gateway gov ...``: a member's governance from a terminal (docs/GOVERNANCE.md,
"From a terminal"), and the ``init`` options that name the genesis members.

Signing uses eth-account with the member's private key, read from ``--key-file`` (the
first line: 0x and 64 hex digits) or the environment variable ``COCO_GOV_KEY``; the key
never leaves this process. Records go to a node over its RPC (``coco_govSubmit``); the
domain (chain id, genesis hash) comes from the node's ``coco_nodeInfo``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from gateway.governance import typed

KEY_ENV = "COCO_GOV_KEY"
ENC_KEY_ENV = "COCO_GOV_ENCRYPTION_KEY"


class GovCliError(Exception):
    """A command cannot go on: the message says why."""


# ----------------------------------------------------------------------------- init


def parse_member(text: str) -> dict[str, Any]:
    """``ADDRESS`` or ``ADDRESS:ENCKEY`` (a 0x 32-byte X25519 public key) as a terms entry."""
    address, _, key = text.partition(":")
    if not re.fullmatch(r"0x[0-9a-fA-F]{40}", address):
        raise ValueError(f"{text!r}: expected ADDRESS[:ENCKEY] with a 0x 20-byte address")
    entry: dict[str, Any] = {"address": address.lower()}
    if key:
        if not re.fullmatch(r"0x[0-9a-fA-F]{64}", key):
            raise ValueError(f"{text!r}: ENCKEY is a 0x-prefixed 32-byte X25519 public key")
        entry["encryptionKey"] = key.lower()
    return entry


def dev_members(count: int) -> list[dict[str, Any]]:
    """The first ``count`` dev mnemonic accounts as members (no encryption key: they vote
    and hold no recovery share). Public keys: development only."""
    from gateway.devaccounts import DEV_MNEMONIC, derive

    accounts = derive(DEV_MNEMONIC)
    if not 1 <= count <= len(accounts):
        raise ValueError(f"--dev-members is 1..{len(accounts)}")
    return [{"address": a.address.lower()} for a in accounts[:count]]


def add_init_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--member",
        type=_member,
        action="append",
        default=[],
        metavar="ADDRESS[:ENCKEY]",
        help="a genesis member of the consortium's governance (repeatable; ENCKEY: its "
        "X25519 public key for recovery shares); without members there is no governance",
    )
    p.add_argument(
        "--dev-members",
        type=int,
        default=0,
        metavar="N",
        help="the first N dev mnemonic accounts as genesis members (development only)",
    )
    p.add_argument(
        "--recovery-threshold",
        type=int,
        default=None,
        metavar="K",
        help="recovery shares needed (default: a majority of the members with a key)",
    )
    p.add_argument(
        "--opening",
        action="store_true",
        help="start the service 'opening': users cannot transact until the members vote "
        "open_network (default: open from genesis; needs members)",
    )


def _member(text: str) -> dict[str, Any]:
    try:
        return parse_member(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def members_of(args: argparse.Namespace) -> list[dict[str, Any]]:
    members = list(getattr(args, "member", []) or [])
    count = getattr(args, "dev_members", 0) or 0
    if count:
        try:
            extra = dev_members(count)
        except ValueError as exc:
            raise SystemExit(f"coco-gateway init: {exc}") from None
        members += [m for m in extra if m["address"] not in {e["address"] for e in members}]
    return members


# ----------------------------------------------------------------------------- rpc


def rpc(url: str, method: str, params: list[Any]) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise GovCliError(f"{url}: {exc}") from None
    if "error" in answer:
        err = answer["error"]
        reason = (err.get("data") or {}).get("reason") if isinstance(err, dict) else None
        raise GovCliError(f"{method} refused: {err.get('message')} (reason: {reason})")
    return answer.get("result")


def load_key(key_file: str | None) -> bytes:
    if key_file:
        try:
            text = Path(key_file).read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise GovCliError(f"cannot read the key file {key_file}: {exc}") from None
    else:
        text = os.environ.get(KEY_ENV, "").strip()
        if not text:
            raise GovCliError(f"give --key-file FILE or set {KEY_ENV} to the member's key")
    if not re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", text):
        raise GovCliError("the private key is 32 bytes of hex (0x optional)")
    return bytes.fromhex(text.removeprefix("0x"))


def domain_of(url: str) -> typed.Domain:
    info = rpc(url, "coco_nodeInfo", [])
    return typed.Domain(int(info["chainId"], 16), bytes.fromhex(info["genesisHash"][2:]))


def parse_action(text: str) -> typed.Action:
    """``KIND`` or ``KIND=JSON`` (the args object), e.g. ``remove_member={"address":"0x…"}``."""
    kind, sep, args = text.partition("=")
    try:
        parsed = json.loads(args) if sep else {}
    except ValueError:
        raise GovCliError(f"{text!r}: the args after '=' are a JSON object") from None
    if not isinstance(parsed, dict):
        raise GovCliError(f"{text!r}: the args after '=' are a JSON object")
    return typed.Action.make(kind, parsed)


def submit(url: str, record: typed.SignedRecord) -> dict[str, Any]:
    text = typed.encode_record(record).decode()
    result: dict[str, Any] = rpc(url, "coco_govSubmit", [text])
    return result


# ----------------------------------------------------------------------------- commands


def _propose(args: argparse.Namespace) -> dict[str, Any]:
    key = load_key(args.key_file)
    domain = domain_of(args.rpc)
    from eth_account import Account

    proposer = bytes.fromhex(Account.from_key(key).address[2:])
    actions = tuple(parse_action(a) for a in args.action)
    message = typed.Proposal(proposer, int(args.created or time.time()), actions)
    return submit(args.rpc, typed.sign(key, domain, message))


def _vote(args: argparse.Namespace) -> dict[str, Any]:
    key = load_key(args.key_file)
    domain = domain_of(args.rpc)
    pid = _proposal_id(args.proposal)
    revision = args.revision
    if revision is None:
        from eth_account import Account

        me = Account.from_key(key).address.lower()
        shown = rpc(args.rpc, "coco_govProposal", ["0x" + pid.hex()])
        ballot = (shown.get("ballots") or {}).get(me)
        revision = 0 if ballot is None else int(ballot["revision"]) + 1
    message = typed.Ballot(pid, args.approve, revision)
    return submit(args.rpc, typed.sign(key, domain, message))


def _withdraw(args: argparse.Namespace) -> dict[str, Any]:
    key = load_key(args.key_file)
    domain = domain_of(args.rpc)
    return submit(args.rpc, typed.sign(key, domain, typed.Withdraw(_proposal_id(args.proposal))))


def _list(args: argparse.Namespace) -> Any:
    return rpc(args.rpc, "coco_govProposals", [] if args.status is None else [args.status])


def _show(args: argparse.Namespace) -> Any:
    if args.proposal in (None, "state"):
        return rpc(args.rpc, "coco_govState", [])
    return rpc(args.rpc, "coco_govProposal", ["0x" + _proposal_id(args.proposal).hex()])


def load_encryption_key(key_file: str | None) -> bytes:
    """The member's X25519 private key: a file's first line (0x and 64 hex digits, as
    ``gov keygen`` writes it) or ``$COCO_GOV_ENCRYPTION_KEY``."""
    if key_file:
        try:
            text = Path(key_file).read_text().strip().splitlines()[0].strip()
        except (OSError, IndexError) as exc:
            raise GovCliError(f"cannot read the encryption key file {key_file}: {exc}") from None
    else:
        text = os.environ.get(ENC_KEY_ENV, "").strip()
        if not text:
            raise GovCliError(
                f"give --encryption-key-file FILE or set {ENC_KEY_ENV} to the member's X25519 "
                "private key"
            )
    if not re.fullmatch(r"(0x)?[0-9a-fA-F]{64}", text):
        raise GovCliError("the X25519 private key is 32 bytes of hex (0x optional)")
    return bytes.fromhex(text.removeprefix("0x"))


def _keygen(args: argparse.Namespace) -> dict[str, Any]:
    """A new X25519 key pair for recovery shares: the private key to a file (mode 0600,
    never overwritten), the public key printed (``init --member ADDRESS:PUBLIC`` or the
    ``encryptionKey`` of an ``add_member`` action)."""
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

    key = X25519PrivateKey.generate()
    private = key.private_bytes_raw()
    public = key.public_key().public_bytes_raw()
    path = Path(args.out)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise GovCliError(f"cannot create {path}: {exc} (it is never overwritten)") from None
    with os.fdopen(fd, "w") as f:
        f.write("0x" + private.hex() + "\n")
    return {"encryptionKey": "0x" + public.hex(), "privateKeyFile": str(path)}


def _recovery_share(args: argparse.Namespace) -> dict[str, Any]:
    """Fetch this member's encrypted share from a node in recovery mode, open it with the
    member's X25519 key, check it against its commitment, seal it to the node's attested
    recovery key, sign it (EIP-712) and submit it."""
    from eth_account import Account

    from gateway.governance import recovery, share_record
    from gateway.protocol import attestation

    key = load_key(args.key_file)
    enc = load_encryption_key(args.encryption_key_file)
    me = bytes.fromhex(Account.from_key(key).address[2:])
    info = rpc(args.rpc, "coco_govRecoveryShare", ["0x" + me.hex()])
    if not info.get("recovering"):
        raise GovCliError(
            f"the node at {args.rpc} is not in recovery mode (state {info.get('state')!r}): "
            "start it with coco-gateway node --recover"
        )
    try:
        chain_id = int(info["chainId"])
        genesis = bytes.fromhex(info["genesis"][2:])
        generation = int(info["generation"])
        node = bytes.fromhex(info["node"][2:])
        enclave_key = bytes.fromhex(info["recoveryKey"][2:])
        shown = info["share"]
        issued = recovery.IssuedShare(
            me,
            int(shown["index"]),
            bytes.fromhex(shown["commitment"][2:]),
            bytes.fromhex(shown["ciphertext"][2:]),
        )
        report = attestation.Report.from_json(info["attestation"]["report"])
        signature = bytes.fromhex(info["attestation"]["signature"][2:])
    except (KeyError, TypeError, ValueError, attestation.AttestationError) as exc:
        raise GovCliError(f"the node's recovery status is malformed: {exc}") from None
    try:
        attestation.verify(
            report,
            signature,
            expected_chain_id=chain_id,
            expected_measurement=_measurement(args.measurement),
            allow_virtual=True,
        )
    except attestation.AttestationError as exc:
        raise GovCliError(f"the node's attestation does not hold: {exc}") from None
    if report.join_key != enclave_key or report.node_address != node:
        raise GovCliError("the node's attestation does not bind its recovery key")
    _check_node_terms(info, report)
    context = recovery.ShareContext(chain_id, genesis, generation)
    share = recovery.decrypt_share(issued, enc, context)
    recovery.check_share(recovery.ShareSet(context, 1, (issued,)), me, share)
    sealed = recovery.seal_for_enclave(share, enclave_key, context, me, node)
    record = share_record.sign(
        key,
        typed.Domain(chain_id, genesis),
        share_record.RecoveryShare(me, generation, node, sealed),
    )
    answer: dict[str, Any] = rpc(
        args.rpc, "coco_govRecoverySubmit", [share_record.encode(record).decode()]
    )
    done = "the node recovered the consortium secret" if answer.get("recovered") else "waiting"
    print(
        f"share of 0x{me.hex()} (generation {generation}) accepted by node 0x{node.hex()} "
        f"(measurement 0x{report.measurement.hex()[:16]}…, {report.platform}): "
        f"{answer.get('submitted')} of {answer.get('threshold')} shares; {done}",
        file=sys.stderr,
    )
    return answer


def _check_node_terms(info: dict[str, Any], report: Any) -> None:
    """The recovering node against the governance state its ledger records (which the node
    reports: pass --measurement for a check that does not rely on it)."""
    allowed = info.get("measurements") or []
    if allowed and "0x" + report.measurement.hex() not in allowed:
        raise GovCliError(
            f"the node's enclave measurement 0x{report.measurement.hex()} is not one the "
            "consortium allows: not handing it a share"
        )
    if report.platform == "virtual" and not info.get("allowVirtual", False):
        raise GovCliError("the node runs a virtual enclave, which the consortium does not allow")
    trusted = info.get("trustedNodes")
    if trusted is not None and "0x" + report.node_address.hex() not in trusted:
        raise GovCliError(f"node 0x{report.node_address.hex()} is not a trusted node")


def _measurement(text: str | None) -> bytes | None:
    if text is None:
        return None
    if not re.fullmatch(r"0x[0-9a-fA-F]{64}", text):
        raise GovCliError("--measurement is 0x and 64 hex digits")
    return bytes.fromhex(text[2:])


def _proposal_id(text: str) -> bytes:
    if not re.fullmatch(r"0x[0-9a-fA-F]{64}", text or ""):
        raise GovCliError(f"{text!r} is not a proposal id (0x and 64 hex digits)")
    return bytes.fromhex(text[2:])


def run(args: argparse.Namespace) -> int:
    commands = {
        "propose": _propose,
        "vote": _vote,
        "withdraw": _withdraw,
        "list": _list,
        "show": _show,
        "keygen": _keygen,
        "recovery-share": _recovery_share,
    }
    try:
        result = commands[args.gov_command](args)
    except GovCliError as exc:
        print(f"coco-gateway gov {args.gov_command}: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:  # a GovernanceError from building the message
        message = getattr(exc, "message", None) or str(exc)
        print(f"coco-gateway gov {args.gov_command}: {message}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0


def add_parser(sub: Any) -> None:
    gov = sub.add_parser(
        "gov", help="governance: propose, vote, withdraw, list, show, keygen, recovery-share"
    )
    gsub = gov.add_subparsers(
        dest="gov_command", required=True, metavar="ACTION", help="what to do"
    )

    def common(p: argparse.ArgumentParser, signs: bool) -> None:
        p.add_argument("--rpc", default="http://127.0.0.1:8545", help="a node's RPC URL")
        if signs:
            p.add_argument("--key-file", help=f"the member's private key file (else ${KEY_ENV})")

    p = gsub.add_parser("propose", help="sign and submit a proposal of one or more actions")
    common(p, True)
    p.add_argument(
        "--action",
        action="append",
        required=True,
        metavar="KIND[=JSON]",
        help='an action, e.g. remove_validator=\'{"address":"0x…"}\' (repeatable, in order)',
    )
    p.add_argument("--created", type=int, default=None, help="unix seconds (default: now)")
    p = gsub.add_parser("vote", help="sign and submit a ballot on a proposal")
    common(p, True)
    p.add_argument("proposal", help="the proposal id (0x…)")
    way = p.add_mutually_exclusive_group(required=True)
    way.add_argument(
        "--approve", dest="approve", action="store_true", help="a ballot for the proposal"
    )
    way.add_argument(
        "--reject", dest="approve", action="store_false", help="a ballot against the proposal"
    )
    p.add_argument("--revision", type=int, default=None, help="default: one above your last ballot")
    p = gsub.add_parser("withdraw", help="withdraw your open proposal")
    common(p, True)
    p.add_argument("proposal", help="the id (0x…) of your open proposal")
    p = gsub.add_parser("list", help="the proposals, with ballots and tally")
    common(p, False)
    p.add_argument("--status", default=None, help="only those with this status (e.g. open)")
    p = gsub.add_parser("show", help="one proposal, or the governance state")
    common(p, False)
    p.add_argument("proposal", nargs="?", default=None, help="a proposal id (default: state)")
    p = gsub.add_parser("keygen", help="make an X25519 key pair for recovery shares")
    p.add_argument("--out", required=True, help="the new private key file (mode 0600)")
    p = gsub.add_parser(
        "recovery-share",
        help="open your recovery share and submit it to a node in recovery mode",
    )
    common(p, True)
    p.add_argument(
        "--encryption-key-file",
        help=f"your X25519 private key file, as gov keygen writes it (else ${ENC_KEY_ENV})",
    )
    p.add_argument(
        "--measurement",
        default=None,
        help="refuse a node whose attested enclave measurement is not this (0x…)",
    )
    gov.set_defaults(func=run)
