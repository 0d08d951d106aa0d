"""eth_createAccessList and eth_getProof: answered on an open node as geth answers them,
refused on a strict one (docs/SECURITY.md).

Access lists are checked against the slots the contract's layout implies and by mining a
transaction that carries the list (its receipt's gas must be the reported ``gasUsed``);
proofs are checked by walking them from the block header's state root with keccak, with a
walker written here (not the trie library the node uses), against eth_getBalance,
eth_getTransactionCount, eth_getCode and eth_getStorageAt.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
import rlp
from artifacts import load_artifact
from conftest import CHAIN_ID, DEV_KEYS, NodeProcess, rpc
from eth_account import Account
from eth_utils import keccak, to_checksum_address
from rpc_schemas import SchemaMismatch, validate_result
from web3 import Web3

from gateway.client.session import sign_in
from gateway.protocol import envelope as env

ALICE = Account.from_key(DEV_KEYS[0])
BOB = Account.from_key(DEV_KEYS[1])
INVALID_PARAMS = -32602
UNAUTHORIZED = -32002
BALANCE_OF_SLOT = 3  # Token: name, symbol, totalSupply, then balanceOf
TOTAL_SUPPLY_SLOT = 2
SUPPLY = 10**24
EMPTY_ROOT = keccak(rlp.encode(b""))
EMPTY_CODE_HASH = keccak(b"")
PROBED = "0x" + "ab" * 20  # an account the prober reads the balance of
IDENTITY_PRECOMPILE = "0x" + "00" * 19 + "04"


def _runtime_prober() -> bytes:
    """BALANCE(PROBED); STATICCALL(identity precompile); SLOAD(5); STOP."""
    return bytes.fromhex(
        "73" + PROBED[2:] + "3150"  # PUSH20 PROBED, BALANCE, POP
        "600060006000600060045afa50"  # STATICCALL(gas, 0x04, 0, 0, 0, 0), POP
        "60055450"  # SLOAD(5), POP
        "00"
    )


def _deploy_code(runtime: bytes) -> bytes:
    """Init code that returns ``runtime``."""
    return bytes.fromhex(f"60{len(runtime):02x}80600b6000396000f3") + runtime


def balance_slot(holder: str) -> bytes:
    """Where Token keeps ``balanceOf[holder]`` (Solidity's mapping layout)."""
    return keccak(bytes.fromhex(holder[2:]).rjust(32, b"\0") + BALANCE_OF_SLOT.to_bytes(32, "big"))


def _send(w3: Web3, tx: dict[str, Any]) -> Any:
    tx = {
        "from": ALICE.address,
        "nonce": w3.eth.get_transaction_count(ALICE.address, "pending"),
        **tx,
    }
    raw = ALICE.sign_transaction(tx).raw_transaction
    return w3.eth.wait_for_transaction_receipt(w3.eth.send_raw_transaction(raw))


@pytest.fixture(scope="module")
def token(w3: Web3) -> Any:
    artifact = load_artifact("Token")
    factory = w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    tx = factory.constructor("Proof", "PRF", SUPPLY).build_transaction({"from": ALICE.address})
    receipt = _send(w3, tx)
    return w3.eth.contract(address=receipt.contractAddress, abi=artifact["abi"])


@pytest.fixture(scope="module")
def prober(w3: Web3) -> str:
    receipt = _send(
        w3,
        {"data": _deploy_code(_runtime_prober()), "gas": 200_000, "maxFeePerGas": 10**10,
         "maxPriorityFeePerGas": 10**9, "chainId": CHAIN_ID},
    )  # fmt: skip
    assert receipt.status == 1
    return str(receipt.contractAddress)


def _error(url: str, method: str, params: list[Any]) -> dict[str, Any]:
    answer = rpc(url, method, params)
    assert "error" in answer, (method, answer)
    return dict(answer["error"])


# ------------------------------------------------------------------ eth_createAccessList


def test_access_list_of_a_token_transfer_and_its_gas(w3: Web3, token: Any) -> None:
    carol = Account.create().address
    call = token.functions.transfer(carol, 5).build_transaction(
        {"from": ALICE.address, "gas": 200_000}
    )
    answer = w3.eth.create_access_list(
        {"from": ALICE.address, "to": token.address, "data": call["data"]}, "latest"
    )
    assert "error" not in answer
    want = ["0x" + k.hex() for k in sorted([balance_slot(ALICE.address), balance_slot(carol)])]
    listed = [(e["address"], list(e["storageKeys"])) for e in answer["accessList"]]
    assert listed == [(token.address, want)]
    # the transaction that carries the list uses exactly the gas reported
    receipt = _send(
        w3,
        {**call, "accessList": answer["accessList"], "gas": answer["gasUsed"] + 10_000,
         "chainId": CHAIN_ID, "nonce": w3.eth.get_transaction_count(ALICE.address, "pending")},
    )  # fmt: skip
    assert receipt.status == 1 and receipt.type == 2
    assert receipt.gasUsed == answer["gasUsed"]
    assert token.functions.balanceOf(carol).call() == 5


def test_access_list_leaves_out_sender_recipient_and_precompiles(w3: Web3, prober: str) -> None:
    answer = rpc(w3.provider.endpoint_uri, "eth_createAccessList", [{"to": prober}])["result"]
    validate_result("eth_createAccessList", answer)
    entries = {e["address"].lower(): e["storageKeys"] for e in answer["accessList"]}
    # the account read by BALANCE, without slots; the recipient only for its slot 5; not the
    # precompile, not the (zero) sender, not the coinbase
    assert entries == {PROBED: [], prober.lower(): ["0x" + "00" * 31 + "05"]}
    assert int(answer["gasUsed"], 16) > 21_000
    # a list given in the call is where the search starts, as in geth: its entries stay
    extra = {"address": "0x" + "cd" * 20, "storageKeys": ["0x" + "11" * 32]}
    again = rpc(
        w3.provider.endpoint_uri,
        "eth_createAccessList",
        [{"to": prober, "accessList": [extra]}, "latest"],
    )["result"]
    assert {e["address"].lower(): e["storageKeys"] for e in again["accessList"]} == {
        **entries,
        extra["address"]: extra["storageKeys"],
    }
    assert int(again["gasUsed"], 16) == int(answer["gasUsed"], 16) + 2400 + 1900


def test_access_list_of_a_reverting_call_names_the_error(w3: Web3, token: Any) -> None:
    poor = Account.create().address
    call = token.functions.transfer(BOB.address, 1).build_transaction({"from": poor, "gas": 10**6})
    answer = rpc(
        w3.provider.endpoint_uri,
        "eth_createAccessList",
        [{"from": poor, "to": token.address, "data": call["data"]}],
    )["result"]
    validate_result("eth_createAccessList", answer)
    assert answer["error"].startswith("execution reverted")
    # what the call read before it reverted is listed all the same
    assert answer["accessList"] == [
        {"address": token.address, "storageKeys": ["0x" + balance_slot(poor).hex()]}
    ]


def test_access_list_of_a_contract_creation(w3: Web3) -> None:
    # execution-apis' example: init code that stores 0x80 at slot 0x81
    nonce = w3.eth.get_transaction_count(BOB.address)
    answer = rpc(
        w3.provider.endpoint_uri,
        "eth_createAccessList",
        [{"from": BOB.address, "data": "0x608060806080608155"}, "latest"],
    )["result"]
    created = to_checksum_address(keccak(rlp.encode([bytes.fromhex(BOB.address[2:]), nonce]))[12:])
    assert answer["accessList"] == [{"address": created, "storageKeys": ["0x" + "00" * 31 + "81"]}]
    # Prague: 53000 + 9 bytes of data (144) + one word of init code (2), the list (4300),
    # four PUSH1 (12) and an SSTORE to a slot the list made warm (20000)
    assert int(answer["gasUsed"], 16) == 53_000 + 144 + 2 + 4300 + 12 + 20_000


def test_access_list_does_not_trace_enveloped_call_data(node: NodeProcess, token: Any) -> None:
    attestation = rpc(node.url, "coco_getAttestation")["result"]
    epoch = attestation["currentEpoch"]
    key = next(k for k in attestation["report"]["txKeys"] if k["epoch"] == epoch)
    data = token.functions.balanceOf(ALICE.address).build_transaction(
        {"from": ALICE.address, "gas": 10**6}
    )["data"]
    sealed = env.seal_request(
        bytes.fromhex(data[2:]),
        kind=env.Kind.CALL,
        chain_id=CHAIN_ID,
        epoch=epoch,
        enclave_public=bytes.fromhex(key["publicKey"][2:]),
        sender=bytes.fromhex(ALICE.address[2:]),
        to=bytes.fromhex(token.address[2:]),
    ).envelope
    call = {"from": ALICE.address, "to": token.address, "data": "0x" + sealed.hex()}
    assert "result" in rpc(node.url, "eth_call", [call, "latest"])  # a good envelope ...
    error = _error(node.url, "eth_createAccessList", [call, "latest"])
    assert error["code"] == INVALID_PARAMS  # ... that is not traced
    assert "enveloped" in error["message"] and "transaction.input" in error["message"]


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ([], "missing value"),
        (["0x1"], "argument 0 (transaction)"),
        ([{"to": "0x12"}], "transaction.to"),
        ([{"accessList": {}}], "transaction.accessList"),
        ([{"accessList": [{"address": "0x" + "00" * 20, "slots": []}]}], "accessList[0]"),
        ([{"accessList": [{"address": "0x12", "storageKeys": []}]}], "accessList[0].address"),
        (
            [{"accessList": [{"address": "0x" + "00" * 20, "storageKeys": ["0x01"]}]}],
            "accessList[0].storageKeys",
        ),
        (
            [
                {
                    "accessList": [
                        {"address": "0x" + "00" * 20, "storageKeys": ["0x" + "00" * 32] * 1024}
                    ]
                }
            ],
            "at most 1024",
        ),
        ([{}, "0xnope"], "argument 1 (block)"),
        ([{}, "latest", {}], "too many arguments"),
    ],
)
def test_create_access_list_bad_params(node: NodeProcess, params: list[Any], names: str) -> None:
    error = _error(node.url, "eth_createAccessList", params)
    assert error["code"] == INVALID_PARAMS
    assert names in error["message"]


# ------------------------------------------------------------------ eth_getProof


def _nibbles(data: bytes) -> list[int]:
    return [n for byte in data for n in (byte >> 4, byte & 15)]


def walk_proof(root: bytes, key: bytes, proof: list[str]) -> bytes:
    """The value under ``keccak(key)`` in the trie with ``root``, reading only the proof's
    nodes, each found by its keccak; b"" when the proof shows the key absent."""
    nodes = {keccak(raw): raw for raw in (bytes.fromhex(h[2:]) for h in proof)}
    path = _nibbles(keccak(key))
    ref: Any = root
    if root == EMPTY_ROOT:
        assert proof == []
        return b""
    while True:
        node = ref if isinstance(ref, list) else rlp.decode(nodes[ref])  # KeyError: a gap
        if len(node) == 17:
            if not path:
                return bytes(node[16])
            ref, path = node[path[0]], path[1:]
            if ref == b"":
                return b""
            continue
        assert len(node) == 2, node
        encoded = _nibbles(node[0])
        flag = encoded[0]
        rest = encoded[1:] if flag & 1 else encoded[2:]
        if flag >= 2:  # leaf
            return bytes(node[1]) if rest == path else b""
        if path[: len(rest)] != rest:  # extension off the path
            return b""
        ref, path = node[1], path[len(rest) :]


def _check_account(w3: Web3, answer: dict[str, Any], address: str, block: int) -> list[Any]:
    root = bytes(w3.eth.get_block(block)["stateRoot"])
    found = walk_proof(root, bytes.fromhex(address[2:]), answer["accountProof"])
    if found:
        nonce, balance, storage_root, code_hash = rlp.decode(found)
    else:
        nonce, balance, storage_root, code_hash = b"", b"", EMPTY_ROOT, EMPTY_CODE_HASH
    assert int.from_bytes(nonce, "big") == int(answer["nonce"], 16)
    assert int.from_bytes(balance, "big") == int(answer["balance"], 16)
    assert answer["storageHash"] == "0x" + storage_root.hex()
    assert answer["codeHash"] == "0x" + code_hash.hex()
    assert w3.eth.get_balance(address, block) == int(answer["balance"], 16)
    assert w3.eth.get_transaction_count(address, block) == int(answer["nonce"], 16)
    assert keccak(bytes(w3.eth.get_code(address, block))) == code_hash
    return [storage_root]


def test_proof_of_a_contract_and_its_slots_walks_from_the_state_root(w3: Web3, token: Any) -> None:
    block = w3.eth.block_number
    holder_slot = "0x" + balance_slot(ALICE.address).hex()
    unused = "0x" + "77" * 32
    keys = [holder_slot, "0x2", unused, "0x0002"]
    answer = rpc(w3.provider.endpoint_uri, "eth_getProof", [token.address, keys, hex(block)])[
        "result"
    ]
    validate_result("eth_getProof", answer)
    assert answer["address"].lower() == token.address.lower()
    [storage_root] = _check_account(w3, answer, token.address, block)
    assert storage_root != EMPTY_ROOT
    # keys come back as geth echoes them: 32 bytes as given, shorter ones as quantities
    assert [p["key"] for p in answer["storageProof"]] == [holder_slot, "0x2", unused, "0x2"]
    for entry, slot in zip(
        answer["storageProof"], [holder_slot, "0x2", unused, "0x2"], strict=True
    ):
        slot32 = int(slot, 16).to_bytes(32, "big")
        found = walk_proof(storage_root, slot32, entry["proof"])
        value = int.from_bytes(rlp.decode(found), "big") if found else 0
        assert value == int(entry["value"], 16)
        assert value == int.from_bytes(w3.eth.get_storage_at(token.address, slot32, block), "big")
    values = [int(p["value"], 16) for p in answer["storageProof"]]
    assert values[1] == values[3] == SUPPLY
    assert values[0] == token.functions.balanceOf(ALICE.address).call(block_identifier=block)
    assert values[2] == 0


def test_proofs_of_an_account_an_absent_one_and_an_older_block(w3: Web3, token: Any) -> None:
    # web3.py's own call and formatting
    head = w3.eth.block_number
    mine = w3.eth.get_proof(ALICE.address, [0], head)
    assert mine["balance"] == w3.eth.get_balance(ALICE.address, head)
    assert mine["nonce"] == w3.eth.get_transaction_count(ALICE.address, head)
    assert int.from_bytes(bytes(mine["storageProof"][0]["value"]), "big") == 0
    raw = rpc(w3.provider.endpoint_uri, "eth_getProof", [ALICE.address, [], hex(head)])["result"]
    validate_result("eth_getProof", raw)
    _check_account(w3, raw, ALICE.address, head)
    assert raw["storageHash"] == "0x" + EMPTY_ROOT.hex() and raw["storageProof"] == []

    nobody = Account.create().address
    absent = rpc(w3.provider.endpoint_uri, "eth_getProof", [nobody, ["0x0"], hex(head)])["result"]
    validate_result("eth_getProof", absent)
    _check_account(w3, absent, nobody, head)
    assert absent["balance"] == absent["nonce"] == "0x0"
    assert absent["storageProof"] == [{"key": "0x0", "value": "0x0", "proof": []}]
    assert absent["accountProof"]  # the proof of absence still shows the path

    # at genesis the token's address was empty: a proof of absence under genesis's root
    genesis = rpc(w3.provider.endpoint_uri, "eth_getProof", [token.address, ["0x2"], "earliest"])
    validate_result("eth_getProof", genesis["result"])
    _check_account(w3, genesis["result"], token.address, 0)
    assert genesis["result"]["codeHash"] == "0x" + EMPTY_CODE_HASH.hex()
    assert genesis["result"]["storageProof"][0]["value"] == "0x0"


@pytest.mark.parametrize(
    ("params", "names"),
    [
        ([ALICE.address], "missing value"),
        (["0x12", []], "argument 0 (address)"),
        ([ALICE.address, "0x0"], "argument 1 (storageKeys)"),
        ([ALICE.address, ["0x" + "00" * 32] * 1025], "at most 1024 keys"),
        ([ALICE.address, ["0xzz"]], "storageKeys[0]"),
        ([ALICE.address, ["0x0", 5]], "storageKeys[1]"),
        ([ALICE.address, ["0x" + "00" * 33]], "too long"),
        ([ALICE.address, [], "0xnope"], "argument 2 (block)"),
    ],
)
def test_get_proof_bad_params(node: NodeProcess, params: list[Any], names: str) -> None:
    error = _error(node.url, "eth_getProof", params)
    assert error["code"] == INVALID_PARAMS
    assert names in error["message"]


def test_both_through_the_checking_proxy(checking_proxy: Any, token: Any) -> None:
    url = checking_proxy.url
    transfer = token.functions.transfer(BOB.address, 1).build_transaction(
        {"from": ALICE.address, "gas": 10**6}
    )["data"]
    assert "result" in rpc(url, "eth_createAccessList", [{"to": token.address, "data": transfer}])
    assert "result" in rpc(url, "eth_getProof", [token.address, ["0x2", "0x0"], "latest"])
    assert checking_proxy.calls["eth_createAccessList"] == 1
    assert checking_proxy.calls["eth_getProof"] == 1
    assert checking_proxy.problems == []


def test_cast_access_list_and_cast_proof(checking_proxy: Any, w3: Web3, token: Any) -> None:
    """Foundry's `cast access-list` and `cast proof`, through the checking proxy."""
    from foundry_support import Foundry, ensure_installed

    ensure_installed()
    cast = Foundry(checking_proxy.url)
    listed = cast.cast_json(
        "access-list", token.address, "transfer(address,uint256)", BOB.address, "1",
        "--from", ALICE.address,
    )  # fmt: skip
    slots = sorted("0x" + balance_slot(a).hex() for a in (ALICE.address, BOB.address))
    assert [(e["address"].lower(), e["storageKeys"]) for e in listed["accessList"]] == [
        (token.address.lower(), slots)
    ]
    assert int(listed["gasUsed"], 16) > 21_000
    block = w3.eth.block_number
    proof = cast.cast_json("proof", token.address, "2", "--block", str(block))
    assert int(proof["storageProof"][0]["value"], 16) == SUPPLY
    root = bytes(w3.eth.get_block(block)["stateRoot"])
    assert walk_proof(root, bytes.fromhex(token.address[2:]), proof["accountProof"])
    assert checking_proxy.calls["eth_createAccessList"] >= 1
    assert checking_proxy.calls["eth_getProof"] >= 1
    assert checking_proxy.problems == []


_VIEM_SCRIPT = """
import { createPublicClient, http } from "viem";
const client = createPublicClient({ transport: http(process.env.RPC_URL) });
const [token, holder, data] = process.argv.slice(1);
const listed = await client.createAccessList({ account: holder, to: token, data });
const proof = await client.getProof({ address: token, storageKeys: [`0x${"0".repeat(63)}2`] });
console.log(JSON.stringify({
  accessList: listed.accessList,
  gasUsed: listed.gasUsed.toString(),
  supply: proof.storageProof[0].value.toString(),
  nonce: proof.nonce,
}));
"""


def test_viem_create_access_list_and_get_proof(checking_proxy: Any, token: Any) -> None:
    """viem's createAccessList and getProof actions (not called by viem unless asked)."""
    from clients_support import JS_DIR, ensure_npm_packages, node_binary

    node = node_binary()
    ensure_npm_packages()
    data = token.functions.transfer(BOB.address, 1).build_transaction(
        {"from": ALICE.address, "gas": 10**6}
    )["data"]
    done = subprocess.run(
        [node, "--input-type=module", "-e", _VIEM_SCRIPT, token.address, ALICE.address, data],
        cwd=JS_DIR,
        env={**os.environ, "RPC_URL": checking_proxy.url},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    slots = sorted("0x" + balance_slot(a).hex() for a in (ALICE.address, BOB.address))
    assert [(e["address"].lower(), e["storageKeys"]) for e in answer["accessList"]] == [
        (token.address.lower(), slots)
    ]
    assert int(answer["gasUsed"]) > 21_000
    assert int(answer["supply"]) == SUPPLY and answer["nonce"] == 1
    assert checking_proxy.problems == []


# ------------------------------------------------------------------ the result schemas


def test_schemas_catch_a_bad_access_list_result() -> None:
    good = {"accessList": [{"address": "0x" + "00" * 20, "storageKeys": []}], "gasUsed": "0x5208"}
    validate_result("eth_createAccessList", good)
    validate_result("eth_createAccessList", {**good, "error": "execution reverted"})
    for bad, where in (
        ({**good, "gasUsed": "0x05208"}, "result.gasUsed"),
        ({"gasUsed": "0x1"}, "result.accessList"),
        ({**good, "error": 3}, "result.error"),
        ({**good, "trace": []}, "result.trace"),
    ):
        with pytest.raises(SchemaMismatch, match=where.replace(".", r"\.")):
            validate_result("eth_createAccessList", bad)


def test_schemas_catch_a_bad_proof_result() -> None:
    good = {
        "address": "0x" + "00" * 20,
        "accountProof": ["0xf8"],
        "balance": "0x0",
        "codeHash": "0x" + EMPTY_CODE_HASH.hex(),
        "nonce": "0x1",
        "storageHash": "0x" + EMPTY_ROOT.hex(),
        "storageProof": [{"key": "0x2", "value": "0x0", "proof": []}],
    }
    validate_result("eth_getProof", good)
    for path, value, where in (
        (("nonce",), "0x01", "result.nonce"),
        (("codeHash",), "0x00", "result.codeHash"),
        (("accountProof",), ["f8"], r"result.accountProof\[0\]"),
        (("storageProof", 0, "value"), "0x00", r"result.storageProof\[0\].value"),
        (("storageProof", 0, "extra"), "x", r"result.storageProof\[0\].extra"),
    ):
        bad: Any = {**good, "storageProof": [dict(good["storageProof"][0])]}
        target = bad
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        with pytest.raises(SchemaMismatch, match=where):
            validate_result("eth_getProof", bad)


# ------------------------------------------------------------------ a strict node


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    node = NodeProcess(tmp_path_factory.mktemp("strict-proof") / "data", "--privacy", "strict")
    node.start()
    yield {"anon": node.url, "alice": sign_in(node.url, DEV_KEYS[0])["rpcUrl"]}
    node.stop()


@pytest.mark.parametrize("who", ["anon", "alice"])
def test_strict_node_refuses_both_whoever_asks(strict: dict[str, str], who: str) -> None:
    url = strict[who]
    error = _error(url, "eth_getProof", [ALICE.address, [], "latest"])
    assert error["code"] == UNAUTHORIZED
    assert error["message"].startswith("eth_getProof is not available on this node")
    error = _error(url, "eth_createAccessList", [{"from": ALICE.address, "to": BOB.address}])
    assert error["code"] == UNAUTHORIZED
    assert error["message"].startswith("eth_createAccessList is not available on this node")
    # bad input is still named as such
    assert _error(url, "eth_getProof", [ALICE.address, ["0xzz"]])["code"] == INVALID_PARAMS


def test_a_bad_session_token_is_named_before_the_refusal(strict: dict[str, str]) -> None:
    forged = strict["anon"] + "/rpc/not-a-token"
    for method, params in (
        ("eth_getProof", [ALICE.address, []]),
        ("eth_createAccessList", [{"to": BOB.address}]),
    ):
        error = _error(forged, method, params)
        assert error["code"] == UNAUTHORIZED
        assert error["message"].startswith("invalid session token"), error
