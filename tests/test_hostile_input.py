"""Input built to hurt the node is refused cheaply, with a clear error and a quiet log.

Absurdly nested RLP is refused before it is decoded (the enclave's memory stays flat);
bodies that are not what their headers say get HTTP 400; strings no UTF-8 encoder takes,
unparseable origins and oversized init code get -32602/-32000 rather than "internal
error"; malformed HTTP is answered 4xx and costs the log one short line, rate-limited.
"""

from __future__ import annotations

import gzip
import json
import logging
import socket
import sys
import time
import urllib.error
import urllib.request
import zlib
from collections.abc import Iterator
from typing import Any

import pytest
import rlp
from conftest import CHAIN_ID, DEV_KEYS, NodeProcess, rpc, wait_receipt
from eth_account import Account
from procstat import enclave_pid, rss
from rlp_support import nested_lists

from gateway.server.logs import ClientErrorFilter

MiB = 1024 * 1024
SENDER = Account.from_key(DEV_KEYS[2])
SINK = "0x" + "22" * 20
CHAIN_ID_QTY = hex(CHAIN_ID)


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    proc = NodeProcess(tmp_path_factory.mktemp("hostile") / "data").start()
    yield proc
    proc.stop()


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def call_body(method: str = "eth_chainId", params: list[Any] | None = None) -> bytes:
    return json.dumps(
        {"jsonrpc": "2.0", "id": 7, "method": method, "params": params or []}
    ).encode()


def error_of(url: str, method: str, params: list[Any]) -> dict[str, Any]:
    answer = rpc(url, method, params)
    assert "error" in answer, answer
    return dict(answer["error"])


# ------------------------------------------------------------------------------ RLP
def test_deeply_nested_rlp_is_refused_before_decoding(chain: NodeProcess) -> None:
    assert chain.proc is not None
    enclave = enclave_pid(chain.proc.pid)
    payload = "0x02" + nested_lists(38_000).hex()
    assert len(payload) // 2 < 128 * 1024
    rpc(chain.url, "eth_chainId")  # warm
    before = rss(enclave)
    for _ in range(3):
        started = time.monotonic()
        error = error_of(chain.url, "eth_sendRawTransaction", [payload])
        elapsed = time.monotonic() - started
        assert error["code"] == -32602
        assert error["message"] == (
            "invalid raw transaction: rlp: lists nested deeper than 16 levels"
        )
        assert elapsed < 2.0, elapsed  # decoding it took ~3 s of enclave time
    grown = rss(enclave) - before
    assert grown < 32 * MiB, f"the enclave grew by {grown / MiB:.0f} MiB"  # was 2.2 GiB


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\x02\xf9\xff\xff\x01", "rlp: value size exceeds available input length"),
        (b"\x02" + rlp.encode([b"\x01"] * 3) + b"\x00", "rlp: input contains more than one value"),
        (b"\x01", "rlp: empty input"),
        (b"\xc3\x01", "rlp: value size exceeds available input length"),
    ],
)
def test_malformed_rlp_is_refused_with_its_reason(
    chain: NodeProcess, raw: bytes, reason: str
) -> None:
    error = error_of(chain.url, "eth_sendRawTransaction", ["0x" + raw.hex()])
    assert error == {"code": -32602, "message": f"invalid raw transaction: {reason}"}


def test_valid_transactions_of_every_type_still_pass(chain: NodeProcess) -> None:
    nonce = int(
        rpc(chain.url, "eth_getTransactionCount", [SENDER.address, "pending"])["result"], 16
    )
    gas_price = 2 * int(rpc(chain.url, "eth_gasPrice")["result"], 16)
    access_list = [{"address": SINK, "storageKeys": ["0x" + "00" * 31 + "01"] * 3}]
    variants: list[dict[str, Any]] = [
        {"gasPrice": gas_price, "gas": 21_000},
        {"type": 1, "gasPrice": gas_price, "gas": 30_000, "accessList": access_list},
        {
            "type": 2,
            "maxFeePerGas": gas_price,
            "maxPriorityFeePerGas": 1,
            "gas": 30_000,
            "accessList": access_list,
        },
    ]
    for i, fields in enumerate(variants):
        tx = {"chainId": CHAIN_ID, "nonce": nonce + i, "to": SINK, "value": 1, **fields}
        raw = bytes(Account.sign_transaction(tx, SENDER.key).raw_transaction)
        answer = rpc(chain.url, "eth_sendRawTransaction", ["0x" + raw.hex()])
        assert "result" in answer, answer
        assert wait_receipt(chain.url, answer["result"])["status"] == "0x1"


# ------------------------------------------------------------ bodies and their headers
@pytest.mark.parametrize("encoding", ["gzip", "deflate"])
def test_a_body_that_is_not_what_its_encoding_says_is_a_400(
    chain: NodeProcess, encoding: str
) -> None:
    status, answer = post(
        chain.url,
        call_body(),
        {"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert status == 400
    assert answer["id"] is None
    assert answer["error"]["code"] == -32700
    assert f"not valid {encoding} data" in answer["error"]["message"]


@pytest.mark.parametrize(
    ("encoding", "compress"), [("gzip", gzip.compress), ("deflate", zlib.compress)]
)
def test_a_compressed_body_is_read(chain: NodeProcess, encoding: str, compress: Any) -> None:
    status, answer = post(
        chain.url,
        compress(call_body()),
        {"Content-Type": "application/json", "Content-Encoding": encoding},
    )
    assert (status, answer) == (200, {"jsonrpc": "2.0", "id": 7, "result": CHAIN_ID_QTY})


def test_a_compression_bomb_stops_at_the_body_limit(chain: NodeProcess) -> None:
    assert chain.proc is not None
    bomb = gzip.compress(b"[" + b" " * (512 * MiB) + b"]", compresslevel=9)
    assert len(bomb) < MiB
    before = rss(chain.proc.pid)
    status, answer = post(
        chain.url, bomb, {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    )
    assert status == 200
    assert answer["error"] == {
        "code": -32005,
        "message": "request body exceeds the 5242880-byte limit",
    }
    grown = rss(chain.proc.pid) - before
    assert grown < 64 * MiB, f"the host grew by {grown / MiB:.0f} MiB"


# ------------------------------------------------------------- parameters, not crashes
ACCOUNT = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"


# the params as raw JSON text: json.dumps would not write a lone surrogate escape
@pytest.mark.parametrize(
    ("method", "params", "fragment"),
    [
        (
            "coco_siweMessage",
            f'["{ACCOUNT}","http://\\ud800.org"]',
            "invalid argument 1 (origin): not valid Unicode: a lone surrogate (\\ud800)",
        ),
        (
            "coco_siweMessage",
            f'["{ACCOUNT}","http://["]',
            "invalid argument 1 (origin): expected the page's origin",
        ),
        (
            "coco_siweMessage",
            f'["{ACCOUNT}","https://h:port"]',
            "invalid argument 1 (origin): expected the page's origin",
        ),
        (
            "coco_signIn",
            f'["Nonce: \\udfff","0x{"00" * 65}"]',
            "invalid argument 0 (message): not valid Unicode: a lone surrogate (\\udfff)",
        ),
    ],
)
def test_sign_in_refuses_strings_it_cannot_use_by_name(
    chain: NodeProcess, method: str, params: str, fragment: str
) -> None:
    body = f'{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{params}}}'
    status, answer = post(chain.url, body.encode(), {"Content-Type": "application/json"})
    assert status == 200
    assert answer["error"]["code"] == -32602
    assert fragment in answer["error"]["message"]


@pytest.mark.parametrize("method", ["eth_estimateGas", "eth_call"])
def test_init_code_over_the_eip3860_limit_gets_the_limit_message(
    chain: NodeProcess, method: str
) -> None:
    params: list[Any] = [{"from": ACCOUNT, "data": "0x" + "00" * 49_153}]
    if method == "eth_call":
        params.append("latest")
    error = error_of(chain.url, method, params)
    assert error == {
        "code": -32000,
        "message": "max initcode size exceeded: code size 49153 limit 49152",
    }
    params[0]["data"] = "0x" + "00" * 49_152
    assert "result" in rpc(chain.url, method, params)


# ---------------------------------------------------------------- malformed HTTP, log
MALFORMED_HTTP = [
    b"GARBAGE\r\n\r\n",
    b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03",  # a TLS hello on the plain port
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nxx\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 70_000 + b"\r\n\r\n",
    b"POST /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    b"POST / HTTP/9.9\r\nHost: x\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Encoding: br\r\nContent-Length: 2\r\n\r\n[]",
    b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcdefgh\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n",
]


def raw_exchange(port: int, data: bytes) -> bytes:
    """Send ``data``, read the answer until the node closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b"Connection: close" not in answer:
                break  # a keep-alive answer: the head is enough
        return answer


def test_malformed_http_is_a_4xx_and_one_quiet_log_line(chain: NodeProcess) -> None:
    before = len(chain.log().splitlines())
    for data in MALFORMED_HTTP:
        answer = raw_exchange(chain.port, data)
        status = int(answer.split(b" ", 2)[1])
        assert 400 <= status < 500, (data[:60], answer[:200])
    assert rpc(chain.url, "eth_chainId")["result"] == CHAIN_ID_QTY
    new = chain.log().splitlines()[before:]
    assert not [line for line in new if "Traceback" in line or " ERROR " in line], new
    bad = [line for line in new if "bad request" in line]
    assert 0 < len(bad) <= len(MALFORMED_HTTP)
    assert all(" INFO aiohttp.server: bad request" in line and len(line) < 400 for line in bad)


def test_a_stalled_or_broken_chunked_body_is_a_408(chain: NodeProcess) -> None:
    """A chunked body whose framing breaks after its first chunks: aiohttp's parser then
    drops the body without ending it, so the node answers once it stops arriving."""
    body = b"[" + b"1," * 100_000 + b"1]"
    data = (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n%x\r\n" % (len(body) - 1) + body + b"\r\n0\r\n\r\n"
    )
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", chain.port), timeout=30) as sock:
        sock.sendall(data)
        answer = b""
        while not answer.endswith(b"}}") and (chunk := sock.recv(65536)):
            answer += chunk  # the JSON-RPC error ends the answer (the node lingers)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert b'"code":-32700' in answer and b"stopped arriving" in answer
    assert time.monotonic() - started < 30
    assert rpc(chain.url, "eth_chainId")["result"] == CHAIN_ID_QTY


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _client_fault_record(
    exc: BaseException, msg: str = "Error handling request from %s"
) -> logging.LogRecord:
    try:
        raise exc
    except BaseException:
        info = sys.exc_info()
    return logging.LogRecord("aiohttp.server", logging.ERROR, __file__, 1, msg, ("10.0.0.1",), info)


def test_client_faults_are_one_rate_limited_info_line() -> None:
    from aiohttp.http_exceptions import BadStatusLine

    logging.getLogger("aiohttp.server").setLevel(logging.INFO)
    clock = FakeClock()
    quiet = ClientErrorFilter(burst=3, rate=0.5, clock=clock)
    passed = [
        quiet.filter(_client_fault_record(BadStatusLine("GET\n/ forged\x1b[31m")))
        for _ in range(10)
    ]
    assert passed == [True] * 3 + [False] * 7
    clock.now += 2.0  # one token back
    record = _client_fault_record(ConnectionResetError("Connection lost"))
    assert quiet.filter(record)
    assert record.levelno == logging.INFO and record.exc_info is None
    assert record.getMessage() == (
        "bad request from 10.0.0.1: ConnectionResetError: Connection lost (7 more suppressed)"
    )
    line = _client_fault_record(BadStatusLine("GET\n/ forged\x1b[31m"))
    clock.now += 2.0
    assert quiet.filter(line)
    assert "\n" not in line.getMessage() and "\x1b" not in line.getMessage()


def test_a_bug_in_our_own_handler_keeps_its_traceback() -> None:
    quiet = ClientErrorFilter(burst=1, rate=0.001, clock=FakeClock())
    for _ in range(3):  # never rate-limited, never rewritten
        record = _client_fault_record(KeyError("oops"), "Error handling request from %s")
        assert quiet.filter(record)
        assert record.levelno == logging.ERROR and record.exc_info is not None
