"""The coco_ namespace: seals, attestation, sign-in, sessions, whoami, nodeInfo, myActivity."""

from __future__ import annotations

from typing import Any

from gateway import __version__
from gateway.api import params as p
from gateway.api.base import Handlers
from gateway.api.params import hexdata, qty
from gateway.consensus.qbft import Block, commit_seal_digest, recover_signer
from gateway.consensus.seal import seal_digest as v1_seal_digest
from gateway.enclave import messages as m
from gateway.errors import Unauthorized


class CocoMethods(Handlers):
    async def coco_getBlockSeal(self, params: list[Any], ctx: Any) -> Any:
        """The proof-of-authority seal of a block (docs/PROTOCOL.md, "Block seal")."""
        p.arity(params, 1)
        ref = p.block_ref(params[0], "block", 0)
        seal = await self._ask(m.GetSeal(ref))
        if seal is None:
            return None
        from eth_utils import to_checksum_address

        return {
            "version": seal["version"],
            "chainId": qty(seal["chainId"]),
            "blockNumber": qty(seal["number"]),
            "blockHash": hexdata(seal["hash"]),
            "seal": hexdata(seal["seal"]),
            "sealer": to_checksum_address(seal["sealer"]) if seal["sealer"] else None,
        }

    async def coco_getAttestation(self, params: list[Any], ctx: Any) -> Any:
        """The enclave's signed attestation report and its transaction keys
        (docs/PROTOCOL.md, "Attestation report")."""
        p.arity(params, 0)
        answer = await self._ask(m.GetAttestation())
        return {
            "report": answer["report"],
            "signature": hexdata(answer["signature"]),
            "currentEpoch": answer["currentEpoch"],
        }

    async def coco_siweMessage(self, params: list[Any], ctx: Any) -> Any:
        """A Sign-In with Ethereum message for ``address`` to sign (personal_sign)."""
        p.arity(params, 1, 1)
        address = p.address(params[0], "address", 0)
        origin = p.optional(params, 1, getattr(ctx, "base_url", "") or "http://localhost")
        origin = p.text(origin, "origin", 1, what="the page's origin, e.g. https://example.org")
        if not p.is_web_origin(origin):
            raise p.bad("origin", 1, "expected the page's origin, e.g. https://example.org")
        message = await self._ask(m.SiweMessage(address, origin))
        return {"message": message}

    async def coco_signIn(self, params: list[Any], ctx: Any) -> Any:
        """Exchange the signed message for a session and its personal RPC URL."""
        p.arity(params, 2)
        message = p.text(params[0], "message", 0, what="the SIWE message text")
        signature = p.data(params[1], "signature", 1, size=65)
        session = await self._ask(m.SignIn(message, signature))
        base = getattr(ctx, "base_url", "") or ""
        from eth_utils import to_checksum_address

        return {
            "token": session["token"],
            "address": to_checksum_address(session["address"]),
            "expiresAt": session["expiresAt"],
            "rpcUrl": f"{base}/rpc/{session['token']}",
        }

    async def coco_signOut(self, params: list[Any], ctx: Any) -> bool:
        p.arity(params, 0)
        auth = p.auth(ctx)
        if auth is None:
            raise Unauthorized("coco_signOut needs your personal RPC URL (/rpc/<token>)")
        answer = await self._ask(m.SignOut(auth))
        self.on_sign_out(bytes(answer["revocation"]))
        return True

    async def coco_myActivity(self, params: list[Any], ctx: Any) -> Any:
        """The signed-in account's own transactions (newest first) and contracts."""
        p.arity(params, 0)
        auth = p.auth(ctx)
        if auth is None:
            raise Unauthorized("coco_myActivity needs your personal RPC URL (/rpc/<token>)")
        return await self._ask(m.MyActivity(auth))

    async def coco_nodeInfo(self, params: list[Any], ctx: Any) -> Any:
        p.arity(params, 0)
        from eth_utils import to_checksum_address

        status = await self._ask(m.GetStatus())
        return {
            "client": f"coco-gateway/v{__version__}",
            "chainId": qty(status["chainId"]),
            "fork": status["fork"],
            # the QBFT set of the next height (as the votes left it, on a governed chain)
            "validators": [to_checksum_address(bytes(v)) for v in status["validators"]],
            "head": qty(status["head"]["number"]),
            "finalized": qty(status["finalized"]),
            "pendingTransactions": status["poolSize"],
            "dev": self.dev,
            "privacy": status["privacy"],
            "genesisHash": hexdata(status["genesisHash"]),
        }

    async def coco_nodeStatus(self, params: list[Any], ctx: Any) -> Any:
        """This node in its consortium: role, state, height, finalized height, QBFT round and
        proposer, peers, validators, last error, refused peer frames per reason code
        (docs/PROTOCOL.md, "Node-to-node wire")."""
        p.arity(params, 0)
        if self.node_status is not None:
            return await self.node_status()
        status = await self._ask(m.GetStatus())  # the dev chain: a consortium of one
        head = int(status["head"]["number"])
        validator = "0x" + bytes(status["validator"]).hex()
        return {
            "name": "dev",
            "role": "dev",
            "state": status.get("state", "ready"),
            "address": validator,
            "height": head,
            "finalized": int(status.get("finalized", head)),
            "round": 0,
            "proposer": validator,
            "peers": [],
            "validators": [validator],
            "lastError": None,
            "refused": {},
        }

    async def coco_getFinality(self, params: list[Any], ctx: Any) -> Any:
        """A block's proof of finality: its header, QBFT round and proposer, the commit seals
        and what they sign, the validators and the quorum; ``signers`` are the validators
        whose seals this node recovered (docs/qbft.md). Null for an unknown block."""
        p.arity(params, 1)
        ref = p.block_ref(params[0], "block", 0)
        proof = await self._ask(m.GetFinality(ref))
        if proof is None:
            return None
        number, proposer = int(proof["number"]), bytes(proof["proposer"])
        header, round_ = bytes(proof["header"]), int(proof["round"])
        block_hash = bytes(proof["hash"])
        scheme = proof.get("scheme", "qbft-commit-seal-v1")
        digest: bytes | None = None
        if scheme == "seal-v1":  # the dev chain's blocks carry the v1 seal (a consortium of one)
            seal_digest = v1_seal_digest(self.chain_id, block_hash)
        else:
            digest = Block(number, proposer, header).digest
            seal_digest = commit_seal_digest(digest, round_)
        validators = [bytes(v) for v in proof["validators"]]
        signers: list[bytes] = []
        for seal in proof["seals"]:
            signer = recover_signer(seal_digest, bytes(seal))
            if signer is not None and signer in validators and signer not in signers:
                signers.append(signer)
        quorum = int(proof["quorum"])
        return {
            "number": qty(number),
            "hash": hexdata(block_hash),
            "header": hexdata(header),
            "round": round_,
            "proposer": hexdata(proposer) if proposer else None,
            "scheme": scheme,
            "digest": None if digest is None else hexdata(digest),
            "sealDigest": hexdata(seal_digest),
            "seals": [hexdata(s) for s in proof["seals"]],
            "signers": [hexdata(s) for s in signers],
            "validators": [hexdata(v) for v in validators],
            "quorum": quorum,
            "final": len(signers) >= quorum,
        }

    async def coco_whoami(self, params: list[Any], ctx: Any) -> Any:
        """Who this URL's caller is to the node: ``address`` is the signed-in account on a
        personal RPC URL, null on the public one; ``privacy`` says what an anonymous call's
        msg.sender is (the zero address on a strict node, its ``from`` on an open one)."""
        p.arity(params, 0)
        from eth_utils import to_checksum_address

        address = await self._ask(m.WhoAmI(p.auth(ctx)))
        return {
            "address": None if address is None else to_checksum_address(address),
            "privacy": "strict" if self.strict else "open",
        }
