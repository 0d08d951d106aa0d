"""JoinAdmit on a governed chain, in real (in-process) enclaves (docs/GOVERNANCE.md, "Joins";
docs/PROTOCOL.md, "Join handshake"): the governance state, not the terms' node list, decides.
A genesis node is admitted; a node the state does not know is refused ``node-pending`` and
its join record is pooled once (the refusal names it for the host to forward); the state's
measurements and allowVirtual refuse by the governance codes. The block that records the
node pending and the vote that trusts it run on a real cluster:
tests/test_governance_joins.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_enclave_consortium import make_identity, make_terms, refusal, run, start

from gateway.devaccounts import derive
from gateway.enclave import messages as m
from gateway.governance import joins
from gateway.protocol.attestation import Report

MEMBERS = [{"address": a.address.lower()} for a in derive()[:3]]


def governed(idents: list[dict[str, Any]], **over: Any) -> dict[str, Any]:
    return make_terms(idents, members=MEMBERS, **over)


def test_the_governance_state_decides_who_joins(tmp_path: Path) -> None:
    async def go() -> None:
        idents = [await make_identity(tmp_path / f"n{i}") for i in range(2)]
        newcomer = await make_identity(tmp_path / "new")
        terms = governed(idents)
        genesis = await start(tmp_path / "n0", terms)
        listed = await start(tmp_path / "n1", terms)
        new = await start(tmp_path / "new", terms)  # not in the terms' nodes
        opened = [genesis, listed, new]
        try:
            request = await new.request(m.JoinRequest())
            err = await refusal(genesis.request(m.JoinAdmit(request)))
            assert err.reason_code == "node-pending"
            assert "trust_node" in err.message
            data = err.data
            address = "0x" + newcomer["address"].hex()
            assert data["address"] == address and data["platform"] == "virtual"
            assert data["measurement"] == "0x" + newcomer["measurement"].hex()
            # the join record it pooled: the attested request, in canonical form
            raw = joins.encode_join(Report.from_json(request["report"]), request["signature"])
            assert data["record"] == "0x" + joins.join_hash(raw).hex()
            state = await genesis.request(m.GovQuery("state"))
            assert state["pooled"] == 1 and address not in state["nodes"]
            # asked again (the joiner retries): the same refusal, nothing more pooled
            err = await refusal(genesis.request(m.JoinAdmit(request)))
            assert err.reason_code == "node-pending"
            assert (await genesis.request(m.GovQuery("state")))["pooled"] == 1
            # a restarted joiner attests a new join key: its node waits in the pool already
            again = await new.request(m.JoinRequest())
            err = await refusal(genesis.request(m.JoinAdmit(again)))
            assert err.reason_code == "node-pending"
            assert (await genesis.request(m.GovQuery("state")))["pooled"] == 1
            # a genesis node of consortium.json is trusted at block 0: admitted
            joined = await listed.request(m.JoinRequest())
            assert isinstance((await genesis.request(m.JoinAdmit(joined)))["wrapped"], bytes)
        finally:
            for enclave in opened:
                await enclave.close()

    run(go())


def test_governed_refusals_use_the_governance_codes(tmp_path: Path) -> None:
    async def go() -> None:
        idents = [await make_identity(tmp_path / f"n{i}") for i in range(2)]

        async def admitter(name: str, **over: Any) -> Any:
            ident = await make_identity(tmp_path / name)
            return await start(tmp_path / name, governed([ident, *idents[1:]], **over))

        joiner = await start(tmp_path / "n1", governed(idents))
        strict_code = await admitter("strict-code", measurements=["0x" + "ab" * 32])
        no_virtual = await admitter("no-virtual", allowVirtual=False)
        no_platform = await admitter("no-platform", platforms=["sev-snp"])
        opened = [joiner, strict_code, no_virtual, no_platform]
        try:
            request = await joiner.request(m.JoinRequest())
            err = await refusal(strict_code.request(m.JoinAdmit(request)))
            assert err.reason_code == "measurement-not-allowed"
            assert "0x" + idents[1]["measurement"].hex() in err.message
            err = await refusal(no_virtual.request(m.JoinAdmit(request)))
            assert err.reason_code == "virtual-not-allowed"
            err = await refusal(no_platform.request(m.JoinAdmit(request)))
            assert err.reason_code == "platform-not-allowed"
            assert "virtual" in err.message
            # refused by the terms of the state: nothing was pooled
            for enclave in (strict_code, no_virtual, no_platform):
                assert (await enclave.request(m.GovQuery("state")))["pooled"] == 0
        finally:
            for enclave in opened:
                await enclave.close()

    run(go())
