"""The confidential client SDK (gateway.client.web3) against a real node process.

web3.py is used as dapps use it (contract.constructor().transact(), functions().transact(),
.call(), .estimate_gas(), events().process_receipt(), get_logs, filters), with the
confidential middleware sealing and opening underneath; the sync and the async web3, the
node's unlocked dev accounts and a local eth-account signer. The encryption is checked on
the wire and on chain with plain JSON-RPC that bypasses the SDK.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from artifacts import load_artifact
from conftest import CHAIN_ID, NodeProcess, rpc
from eth_abi import decode as abi_decode
from eth_account import Account
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError, ContractPanicError
from web3.middleware import SignAndSendRawMiddlewareBuilder
from web3.providers.rpc import HTTPProvider

from gateway.client.sdk import ConfidentialSession, Policy, SignedQueryError, drive
from gateway.client.web3 import (
    AttestationError,
    ConfidentialityError,
    ConfidentialMiddleware,
    async_confidential_web3,
    confidential,
    confidential_web3,
    session_of,
)
from gateway.protocol.envelope import REQUEST_MAGIC, RESPONSE_MAGIC

MARKER = "COCO-MARKER-5d1e: the secret payload"
MARKER_HEX = MARKER.encode().hex()
POLL = 0.05


class RecordingProvider(HTTPProvider):
    """HTTPProvider that keeps every request and response it carried (the wire)."""

    def __init__(self, url: str) -> None:
        super().__init__(url, request_kwargs={"timeout": 60})
        self.wire: list[str] = []

    def make_request(self, method: Any, params: Any) -> Any:
        response = super().make_request(method, params)
        self.wire.append(json.dumps([method, params, response], default=str))
        return response


def _wait(w3: Web3, tx_hash: Any) -> Any:
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=30, poll_latency=POLL)
    assert receipt.status == 1
    return receipt


def _deploy(w3: Web3, name: str, *args: Any, sender: str | None = None) -> tuple[Any, Any]:
    art = load_artifact(name)
    factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
    tx_hash = factory.constructor(*args).transact({"from": sender} if sender else {})
    receipt = _wait(w3, tx_hash)
    return w3.eth.contract(address=receipt.contractAddress, abi=art["abi"]), receipt


def _raw_input(node: NodeProcess, tx_hash: Any) -> bytes:
    tx = rpc(node.url, "eth_getTransactionByHash", [Web3.to_hex(tx_hash)])["result"]
    return bytes.fromhex(tx["input"][2:])


def _raw_log_data(node: NodeProcess, tx_hash: Any) -> list[bytes]:
    receipt = rpc(node.url, "eth_getTransactionReceipt", [Web3.to_hex(tx_hash)])["result"]
    return [bytes.fromhex(entry["data"][2:]) for entry in receipt["logs"]]


def _funded_account(w3: Web3) -> Any:
    """A fresh key the node does not know (so only local signing can send from it)."""
    account = Account.create()
    _wait(
        w3,
        w3.eth.send_transaction(
            {"from": w3.eth.accounts[0], "to": account.address, "value": 10**19}
        ),
    )
    return account


def _new_entries(flt: Any) -> list[Any]:
    """A filter's new entries, polled briefly: the node may answer a receipt a moment
    before its host-side filters (and eth_blockNumber) see the block."""
    deadline = time.time() + 5
    while not (entries := flt.get_new_entries()) and time.time() < deadline:
        time.sleep(POLL)
    return list(entries)


@pytest.fixture(scope="module")
def recorder(node: NodeProcess) -> RecordingProvider:
    return RecordingProvider(node.url)


@pytest.fixture(scope="module")
def sdk(recorder: RecordingProvider) -> Web3:
    w3 = confidential_web3(recorder, allow_virtual=True)
    assert w3.eth.chain_id == CHAIN_ID
    return w3


@pytest.fixture(scope="module")
def dev(sdk: Web3) -> str:
    return str(sdk.eth.accounts[2])


@pytest.fixture(scope="module")
def events(sdk: Web3, dev: str) -> Any:
    contract, _ = _deploy(sdk, "Events", sender=dev)
    return contract


def test_token_with_an_unlocked_account(sdk: Web3, dev: str, node: NodeProcess) -> None:
    token, deployed = _deploy(sdk, "Token", "Secret", "SEC", 10**24, sender=dev)
    # the constructor's log was sealed under the deployment's keys and opened here
    (minted,) = token.events.Transfer().process_receipt(deployed)
    assert (minted.args["from"], minted.args.to, minted.args.value) == (
        "0x0000000000000000000000000000000000000000",
        dev,
        10**24,
    )
    assert _raw_input(node, deployed.transactionHash)[:3] == REQUEST_MAGIC

    bob = Account.create().address
    estimate = token.functions.transfer(bob, 1234).estimate_gas({"from": dev})
    receipt = _wait(
        sdk, token.functions.transfer(bob, 1234).transact({"from": dev, "gas": estimate})
    )
    assert receipt.gasUsed <= estimate
    (moved,) = token.events.Transfer().process_receipt(receipt)
    assert (moved.args["from"], moved.args.to, moved.args.value) == (dev, bob, 1234)
    assert token.functions.balanceOf(bob).call() == 1234
    assert token.functions.symbol().call() == "SEC"
    logs = token.events.Transfer().get_logs(from_block=deployed.blockNumber)
    assert [(e.args.to, e.args.value) for e in logs] == [(dev, 10**24), (bob, 1234)]
    with pytest.raises(ContractCustomError) as failed:
        token.functions.transfer(bob, 10**30).call({"from": bob})
    selector = Web3.keccak(text="InsufficientBalance(address,uint256,uint256)")[:4]
    data = bytes.fromhex(str(failed.value.data)[2:])
    assert data[:4] == selector
    assert abi_decode(["address", "uint256", "uint256"], data[4:])[1:] == (1234, 10**30)


def test_the_encryption_is_real(
    sdk: Web3, dev: str, events: Any, node: NodeProcess, recorder: RecordingProvider
) -> None:
    start = len(recorder.wire)
    receipt = _wait(sdk, events.functions.note(MARKER).transact({"from": dev}))
    (noted,) = events.events.Note().process_receipt(receipt)
    assert noted.args.text == MARKER  # the SDK opened it
    assert events.functions.echo(MARKER.encode()).call() == MARKER.encode()

    # on chain: the transaction's input is an envelope, the receipt's log data is sealed
    raw_input = _raw_input(node, receipt.transactionHash)
    assert raw_input[:3] == REQUEST_MAGIC and MARKER.encode() not in raw_input
    (raw_data,) = _raw_log_data(node, receipt.transactionHash)
    assert raw_data[:3] == RESPONSE_MAGIC and MARKER.encode() not in raw_data
    # the same data read by an SDK session that did not send it stays sealed
    stranger = confidential_web3(node.url, allow_virtual=True)
    foreign = stranger.eth.get_transaction_receipt(receipt.transactionHash)
    assert bytes(foreign.logs[0].data)[:3] == RESPONSE_MAGIC

    # on the wire: neither the call data, the call's answer nor the log ever passed in clear
    wire = "".join(recorder.wire[start:])
    assert "eth_sendTransaction" in wire and "eth_call" in wire
    assert MARKER_HEX not in wire and MARKER not in wire
    # a plain call (no SDK) shows what the wire would have carried otherwise
    plain = rpc(
        node.url,
        "eth_call",
        [{"to": events.address, "data": events.encode_abi("echo", [MARKER.encode()])}],
    )["result"]
    assert MARKER_HEX in plain


def test_reverts_come_back_as_web3_errors(
    sdk: Web3, events: Any, recorder: RecordingProvider
) -> None:
    start = len(recorder.wire)
    with pytest.raises(ContractLogicError) as failed:
        events.functions.failRequire().call()
    assert failed.value.message == "execution reverted: Events: always fails"
    reason = bytes.fromhex(str(failed.value.data)[2:])
    assert reason[:4] == bytes.fromhex("08c379a0")
    assert abi_decode(["string"], reason[4:]) == ("Events: always fails",)

    with pytest.raises(ContractCustomError) as custom:
        events.functions.failCustom(7).call()
    data = bytes.fromhex(str(custom.value.data)[2:])
    assert data[:4] == Web3.keccak(text="Custom(uint256,string)")[:4]
    assert abi_decode(["uint256", "string"], data[4:]) == (7, "custom failure")

    with pytest.raises(ContractPanicError, match="Division by zero"):
        events.functions.failPanic().call()
    with pytest.raises(ContractLogicError) as plain:
        events.functions.failPlain().call()
    assert (plain.value.message, plain.value.data) == ("execution reverted", "0x")
    with pytest.raises(ContractLogicError, match="Events: always fails"):
        events.functions.failRequire().estimate_gas()

    # what the node sent: code 3 with the revert data sealed, no reason in the message
    answers = [json.loads(entry)[2] for entry in recorder.wire[start:]]
    errors = [answer["error"] for answer in answers if "error" in answer]
    assert len(errors) == 5 and all(
        e["code"] == 3 and e["message"] == "execution reverted" for e in errors
    )
    assert all(e["data"].startswith("0x" + RESPONSE_MAGIC.hex()) for e in errors)
    assert b"Events: always fails".hex() not in json.dumps(errors)


def test_local_signer_seals_before_signing(sdk: Web3, node: NodeProcess) -> None:
    account = _funded_account(sdk)
    w3 = confidential_web3(node.url, account, allow_virtual=True)
    assert w3.eth.default_account == account.address
    events, deployed = _deploy(w3, "Events")
    assert deployed["from"] == account.address
    assert _raw_input(node, deployed.transactionHash)[:3] == REQUEST_MAGIC

    receipt = _wait(w3, events.functions.note(MARKER).transact())
    tx = rpc(node.url, "eth_getTransactionByHash", [receipt.transactionHash.to_0x_hex()])
    assert tx["result"]["from"].lower() == account.address.lower()
    raw_input = _raw_input(node, receipt.transactionHash)
    assert raw_input[:3] == REQUEST_MAGIC and MARKER.encode() not in raw_input
    # the raw transaction's hash maps to the envelope's keys
    assert session_of(w3).keys_for_transaction(receipt.transactionHash) is not None
    (noted,) = events.events.Note().process_receipt(receipt)
    assert (noted.args["from"], noted.args.text) == (account.address, MARKER)
    assert MARKER.encode() not in _raw_log_data(node, receipt.transactionHash)[0]
    (logged,) = events.events.Note().get_logs(from_block=receipt.blockNumber)
    assert logged.args.text == MARKER

    token, _ = _deploy(w3, "Token", "Local", "LOC", 500)
    receipt = _wait(w3, token.functions.transfer(sdk.eth.accounts[3], 21).transact())
    (moved,) = token.events.Transfer().process_receipt(receipt)
    assert moved.args.value == 21
    assert token.functions.balanceOf(account.address).call() == 479


def test_middleware_order(sdk: Web3, node: NodeProcess) -> None:
    account = _funded_account(sdk)
    events = load_artifact("Events")

    # documented order: confidential outermost (add), the signer innermost (inject layer 0)
    w3 = Web3(HTTPProvider(node.url))
    w3.middleware_onion.add(confidential(allow_virtual=True))
    w3.middleware_onion.inject(SignAndSendRawMiddlewareBuilder.build(account), layer=0)
    factory = w3.eth.contract(abi=events["abi"], bytecode=events["bytecode"])
    receipt = _wait(w3, factory.constructor().transact({"from": account.address}))
    assert _raw_input(node, receipt.transactionHash)[:3] == REQUEST_MAGIC

    # the wrong order would sign plaintext: the SDK refuses to send it
    wrong = Web3(HTTPProvider(node.url))
    wrong.middleware_onion.add(confidential(allow_virtual=True))
    wrong.middleware_onion.add(SignAndSendRawMiddlewareBuilder.build(account))
    nonce = wrong.eth.get_transaction_count(account.address, "pending")
    factory = wrong.eth.contract(abi=events["abi"], bytecode=events["bytecode"])
    with pytest.raises(ConfidentialityError, match="plain call data"):
        factory.constructor().transact({"from": account.address})
    assert wrong.eth.get_transaction_count(account.address, "pending") == nonce


def test_filters_and_batches(sdk: Web3, dev: str, events: Any) -> None:
    note = events.events.Note()
    flt = note.create_filter(from_block="latest")
    receipt = _wait(sdk, events.functions.note(MARKER).transact({"from": dev}))
    assert [e.args.text for e in _new_entries(flt)] == [MARKER]  # eth_getFilterChanges
    everything = note.create_filter(from_block=receipt.blockNumber)
    assert [e.args.text for e in everything.get_all_entries()] == [MARKER]  # eth_getFilterLogs
    with sdk.batch_requests() as batch:
        batch.add(events.functions.echo(b"batched"))
        batch.add(sdk.eth.get_transaction_receipt(receipt.transactionHash))
        echoed, fetched = batch.execute()
    assert echoed == b"batched"
    assert note.process_receipt(fetched)[0].args.text == MARKER


def test_keys_carried_to_another_session(
    sdk: Web3, dev: str, events: Any, node: NodeProcess
) -> None:
    receipt = _wait(sdk, events.functions.note(MARKER).transact({"from": dev}))
    keys = session_of(sdk).keys_for_transaction(receipt.transactionHash)
    assert keys is not None and "response_key" not in repr(keys)

    later = confidential_web3(node.url, allow_virtual=True)  # say, the next run of the dapp
    session_of(later).remember_transaction(receipt.transactionHash, keys)
    contract = later.eth.contract(address=events.address, abi=events.abi)
    # eth_getLogs first: the SDK fetches the receipt to place the log within its transaction
    block = receipt.blockNumber
    (logged,) = contract.events.Note().get_logs(from_block=block, to_block=block)
    assert logged.args.text == MARKER
    (fetched,) = [
        r
        for r in later.eth.get_block_receipts(block)
        if r.transactionHash == receipt.transactionHash
    ]
    assert contract.events.Note().process_receipt(fetched)[0].args.text == MARKER


def test_async_web3(sdk: Web3, node: NodeProcess) -> None:
    account = _funded_account(sdk)

    async def scenario() -> None:
        w3 = async_confidential_web3(node.url, allow_virtual=True)
        signer = async_confidential_web3(node.url, account, allow_virtual=True)
        try:
            await exercise(w3, signer)
        finally:  # their aiohttp sessions, or "Unclosed client session"
            await w3.provider.disconnect()
            await signer.provider.disconnect()

    async def exercise(w3: Any, signer: Any) -> None:
        dev = (await w3.eth.accounts)[4]
        art = load_artifact("Events")
        factory = w3.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        tx_hash = await factory.constructor().transact({"from": dev})
        deployed = await w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=POLL)
        events = w3.eth.contract(address=deployed.contractAddress, abi=art["abi"])
        tx_hash = await events.functions.note(MARKER).transact({"from": dev})
        receipt = await w3.eth.wait_for_transaction_receipt(tx_hash, poll_latency=POLL)
        (noted,) = events.events.Note().process_receipt(receipt)
        assert noted.args.text == MARKER
        assert MARKER.encode() not in _raw_log_data(node, tx_hash)[0]
        (logged,) = await events.events.Note().get_logs(from_block=receipt.blockNumber)
        assert logged.args.text == MARKER
        assert await events.functions.echo(b"async").call() == b"async"
        assert await events.functions.spin(2).estimate_gas({"from": dev}) > 21_000
        with pytest.raises(ContractLogicError) as failed:
            await events.functions.failRequire().call()
        assert failed.value.message == "execution reverted: Events: always fails"
        with pytest.raises(ContractCustomError):
            await events.functions.failCustom(1).call()

        local = signer.eth.contract(address=events.address, abi=art["abi"])
        tx_hash = await local.functions.note(MARKER).transact()
        receipt = await signer.eth.wait_for_transaction_receipt(tx_hash, poll_latency=POLL)
        assert receipt["from"] == account.address
        (noted,) = local.events.Note().process_receipt(receipt)
        assert (noted.args["from"], noted.args.text) == (account.address, MARKER)
        assert _raw_input(node, tx_hash)[:3] == REQUEST_MAGIC

    asyncio.run(scenario())


def test_attestation_policy(sdk: Web3, dev: str, events: Any, node: NodeProcess) -> None:
    report = session_of(sdk).attestation
    assert report is not None and report.report.platform == "virtual"
    measurement = report.report.measurement
    nonce = sdk.eth.get_transaction_count(dev, "pending")

    def contract_on(w3: Web3) -> Any:
        return w3.eth.contract(address=events.address, abi=events.abi)

    wrong = confidential_web3(
        node.url, allow_virtual=True, expected_measurement=bytes(32 - 1) + b"\x01"
    )
    with pytest.raises(AttestationError, match="runs other code"):
        contract_on(wrong).functions.setValue(5).transact({"from": dev})
    with pytest.raises(AttestationError, match="runs other code"):
        contract_on(wrong).functions.value().call()
    assert sdk.eth.get_transaction_count(dev, "pending") == nonce  # nothing was sent

    strict = confidential_web3(node.url)  # allow_virtual defaults to False
    with pytest.raises(AttestationError, match="virtual"):
        contract_on(strict).functions.setValue(5).transact({"from": dev})
    bare = Web3(HTTPProvider(node.url))
    bare.middleware_onion.add(ConfidentialMiddleware)  # the bare class: the strict policy
    with pytest.raises(AttestationError, match="virtual"):
        contract_on(bare).functions.value().call()
    assert sdk.eth.get_transaction_count(dev, "pending") == nonce

    right = confidential_web3(node.url, allow_virtual=True, expected_measurement=measurement)
    _wait(right, contract_on(right).functions.setValue(6).transact({"from": dev}))
    assert contract_on(right).functions.value().call() == 6


def test_epoch_rotation(tmp_path: Path) -> None:
    """One-second epochs: the SDK fetches the key again when its epoch leaves the window
    by its clock, and when the node refuses it anyway (the clock said otherwise)."""
    node = NodeProcess(tmp_path / "data", "--epoch-period", "1").start()
    try:
        plain = Web3(HTTPProvider(node.url))
        art = load_artifact("Events")
        factory = plain.eth.contract(abi=art["abi"], bytecode=art["bytecode"])
        address = _wait(
            plain, factory.constructor().transact({"from": plain.eth.accounts[0]})
        ).contractAddress

        def client(clock: Any) -> tuple[Any, ConfidentialSession, RecordingProvider]:
            session = ConfidentialSession(Policy(allow_virtual=True), clock=clock)
            provider = RecordingProvider(node.url)
            w3 = Web3(provider)
            w3.middleware_onion.add(confidential(session=session))
            return w3.eth.contract(address=address, abi=art["abi"]), session, provider

        def refusals(provider: RecordingProvider) -> int:
            return sum("epoch" in json.dumps(json.loads(e)[2].get("error")) for e in provider.wire)

        # our clock follows the real one: refreshed before the node would refuse
        events, session, provider = client(time.time)
        assert events.functions.echo(b"a").call() == b"a"
        assert events.functions.echo(b"b").call() == b"b"
        assert session.attestations_fetched == 1  # cached while its epoch is in the window
        time.sleep(3.2)
        assert events.functions.echo(b"c").call() == b"c"
        assert session.attestations_fetched == 2
        assert refusals(provider) == 0

        # our clock stands still: the key looks current, the node refuses it as stale, the
        # SDK fetches the attestation again and seals anew
        frozen = time.time()
        events, session, provider = client(lambda: frozen)
        assert events.functions.echo(b"d").call() == b"d"
        first = session.attestation
        time.sleep(3.2)
        assert events.functions.echo(b"e").call() == b"e"
        assert session.attestations_fetched == 2
        assert refusals(provider) == 1
        second = session.attestation
        assert first is not None and second is not None
        assert second.node_epoch >= first.node_epoch + 3
    finally:
        node.stop()


def test_signed_queries_on_an_open_node(sdk: Web3, node: NodeProcess) -> None:
    """With a local account the SDK signs its calls and estimates (the node checks them on
    an open node too), never its transactions; sign_queries=False and the explicit
    query_signers option; a call object signed by the caller over plain data is refused
    before anything is sent. tests/test_sdk_signed_queries.py has the strict node."""
    account = _funded_account(sdk)

    def signed_methods(provider: RecordingProvider) -> list[str]:
        entries = [json.loads(entry) for entry in provider.wire]
        return sorted({m for m, params, _ in entries if "signedQuery" in json.dumps(params)})

    wire = RecordingProvider(node.url)
    w3 = confidential_web3(wire, account, allow_virtual=True)
    assert session_of(w3).query_signers == (account.address,)
    events, _ = _deploy(w3, "Events")
    receipt = _wait(w3, events.functions.note(MARKER).transact())
    assert events.functions.echo(MARKER.encode()).call() == MARKER.encode()
    assert events.functions.spin(2).estimate_gas() > 21_000
    assert signed_methods(wire) == ["eth_call", "eth_estimateGas"]
    (noted,) = events.events.Note().process_receipt(receipt)
    assert noted.args["from"] == account.address
    assert MARKER_HEX not in "".join(wire.wire)

    off = RecordingProvider(node.url)
    unsigned = confidential_web3(off, account, allow_virtual=True, sign_queries=False)
    contract = unsigned.eth.contract(address=events.address, abi=events.abi)
    assert contract.functions.echo(b"plain").call() == b"plain"
    assert session_of(unsigned).query_signers == () and signed_methods(off) == []

    own = RecordingProvider(node.url)
    mine = Web3(own)
    mine.middleware_onion.add(confidential(allow_virtual=True, query_signers=[account]))
    contract = mine.eth.contract(address=events.address, abi=events.abi)
    assert contract.functions.echo(b"own").call({"from": account.address}) == b"own"
    assert contract.functions.echo(b"anon").call() == b"anon"  # no from: nothing to sign
    assert signed_methods(own) == ["eth_call"]

    sent = len(own.wire)
    foreign = {"signature": "0x" + "00" * 65, "leash": {}}
    call = {"from": account.address, "to": events.address, "data": "0x1234", "signedQuery": foreign}
    with pytest.raises(SignedQueryError, match="over plain data"):
        drive(session_of(mine).exchange("eth_call", [call, "latest"]), own.make_request)
    assert len(own.wire) == sent


def test_signed_transaction_data_of_every_type() -> None:
    """The SDK finds the data of a signed transaction of each type (legacy, 2930, 1559,
    7702) to match it to its envelope, or to refuse plain data."""
    from gateway.client.sdk import _raw_transaction_data

    account = Account.create()
    base = {"nonce": 0, "gas": 100_000, "to": account.address, "value": 1, "chainId": CHAIN_ID}
    data = bytes(REQUEST_MAGIC) + bytes(range(90))
    kinds = [
        {"gasPrice": 1},
        {"gasPrice": 1, "accessList": [], "type": 1},
        {"maxFeePerGas": 2, "maxPriorityFeePerGas": 1},
        {
            "maxFeePerGas": 2,
            "maxPriorityFeePerGas": 1,
            "type": 4,
            "authorizationList": [
                account.sign_authorization(
                    {"chainId": CHAIN_ID, "address": account.address, "nonce": 1}
                )
            ],
        },
    ]
    for extra in kinds:
        signed = account.sign_transaction({**base, **extra, "data": data})
        assert _raw_transaction_data(bytes(signed.raw_transaction)) == data, extra
    assert _raw_transaction_data(b"\x7f junk") is None
    assert _raw_transaction_data(b"") is None
