"""A seeded fuzz run against a real node: whatever arrives, the node answers properly.

Requests over HTTP and WebSocket are generated from a seed: the node's own methods and
unknown ones, parameters of the wrong types, huge numbers, deep JSON, bad hex, bad UTF-8,
lone surrogates, malformed envelopes, batches, raw transactions of random RLP, bodies that
lie about their encoding, broken HTTP framing and broken WebSocket frames on raw sockets.
The run asserts:

- every answer is a well-formed JSON-RPC object (an array for a batch), or a 4xx for HTTP
  that is not well formed, or a WebSocket close with a protocol code (never 1011);
- no answer is "internal error" (-32603) and no status is 5xx;
- the node's log gains no traceback and no ERROR line;
- the host and enclave processes' memory stays within MEMORY_BOUND of what it was after
  the warm-up;
- a control transfer sent at the end still gets its receipt.

Replay: the seed is printed (and named in every failure); ``COCO_FUZZ_SEED=<n>`` runs the
same requests again, ``COCO_FUZZ_CASES=<n>`` changes how many per node (default 3000 on an
open node, then 3000 on a strict one: about a minute here). Some requests go to a signed-in
account's personal URL. Generated requests never depend on the node's answers (only that
URL's token comes from the node), so a seed always produces the same requests.

What the fuzzer does not try (documented in docs/SECURITY.md): expensive contract execution
(random code has no JUMP/JUMPI, so it cannot loop: gas bounds that anyway), slow-loris
timing, and many concurrent connections (tests/test_ws_backpressure.py).
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import os
import random
import socket
import struct
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from conftest import CHAIN_ID, DEV_KEYS, NodeProcess, rpc, wait_receipt
from eth_account import Account
from procstat import enclave_pid, rss
from rlp_support import nested_lists
from ws_support import RawWebSocket

from gateway.api.eth import Api
from gateway.protocol.envelope import REQUEST_MAGIC

SEED = int(os.environ.get("COCO_FUZZ_SEED") or random.SystemRandom().randrange(2**32))
CASES = int(os.environ.get("COCO_FUZZ_CASES", "3000"))  # per node: one open, one strict
WARM_UP = 300  # cases run before the memory baseline is taken (caches, allocator arenas)
# Growth allowed to each process between the baseline and the end. The largest request is
# about 1 MiB, decoded transiently; a leak or a decoding blow-up costs hundreds of MiB
# (nested RLP once cost the enclave 2.2 GiB), while growth measured over 30 runs (3000 to
# 6000 cases a node) stayed under 22 MiB for the host and 3 MiB for the enclave (Python
# keeps freed arenas, the chain grows a little).
MEMORY_BOUND = 128 * 1024 * 1024

PREFIXES = ("eth_", "net_", "web3_", "coco_", "txpool_", "evm_")
METHODS = sorted(name for name in dir(Api) if name.startswith(PREFIXES))
METHODS += ["eth_subscribe", "eth_unsubscribe"]
UNKNOWN = [
    "eth_foo",
    "anvil_mine",
    "hardhat_reset",
    "debug_traceTransaction",
    "admin_peers",
    "",
    " eth_chainId",
    "ETH_CHAINID",
    "eth_chainId\x00",
    "rpc.discover",
    "é",
    "x" * 300,
]
DEV_ADDRESSES = [Account.from_key(k).address for k in DEV_KEYS]
PERSONAL = "personal"  # gen.path()'s stand-in for the signed-in account's personal URL
TAGS = ["latest", "earliest", "pending", "safe", "finalized"]
# random code may not loop: without JUMP (0x56) and JUMPI (0x57) execution is linear
CODE_BYTES = bytes(b for b in range(256) if b not in (0x56, 0x57))

pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module", params=["open", "strict"])
def chain(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NodeProcess]:
    """A fresh node per privacy mode: strict mode takes other paths (who may see what)."""
    extra = ("--privacy", "strict") if request.param == "strict" else ()
    proc = NodeProcess(tmp_path_factory.mktemp(f"fuzz-{request.param}") / "data", *extra)
    proc.mode = request.param  # type: ignore[attr-defined]
    yield proc.start()
    proc.stop()


# ------------------------------------------------------------------------- generation
class Gen:
    """Everything random comes from one seeded generator, in a fixed order."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    def pick(self, items: list[Any] | tuple[Any, ...]) -> Any:
        return items[self.r.randrange(len(items))]

    def hexdata(self, size: int | None = None) -> str:
        size = self.r.choice([0, 1, 4, 20, 32, 65, 100]) if size is None else size
        return "0x" + self.r.randbytes(size).hex()

    def code(self) -> str:
        if self.r.random() < 0.1:  # an envelope, or what looks like one
            header = REQUEST_MAGIC + bytes(
                [self.pick([1, 1, 1, 0, 2, 255]), self.pick([1, 2, 0, 9])]
            )
            header += self.pick([CHAIN_ID, 1, 2**64 - 1]).to_bytes(8, "big")
            header += self.r.randrange(0, 3).to_bytes(4, "big")
            header += self.pick([b"\x00" * 32, self.r.randbytes(32), b""])
            return "0x" + (header + self.r.randbytes(self.r.choice([0, 12, 28, 100]))).hex()
        size = self.r.choice([0, 1, 10, 100, 1000])
        return "0x" + bytes(self.pick(CODE_BYTES) for _ in range(size)).hex()

    def quantity(self) -> Any:
        return self.pick(
            [
                hex(self.r.randrange(0, 100)),
                hex(self.r.randrange(0, 2**64)),
                hex(2**256 - 1),
                hex(2**256),
                "0x" + "f" * self.r.choice([65, 200, 5000]),
                "0x",
                "0x0" + "0" * 10,
                "0X1",
                "1",
                "-0x1",
                "0xg1",
                self.r.randrange(-(2**70), 2**70),
                2**300,
                -1,
                1.5,
                1e308,
            ]
        )

    def address(self) -> Any:
        return self.pick(
            [
                self.pick(DEV_ADDRESSES),
                self.hexdata(20),
                self.hexdata(19),
                "0x" + "zz" * 20,
                self.pick(DEV_ADDRESSES).lower()[2:],
                None,
            ]
        )

    def text(self) -> str:
        return self.pick(
            [
                "",
                "a",
                "\u00e9\u4e2d\U0001f600",
                "\x00\x01\x1b[31m",
                "x" * self.r.choice([100, 10_000]),
                "latest",
                "0x",
                "http://[",
                "https://example.org",
                "\ud800",  # a lone surrogate (written as an escape by json.dumps)
                "\udfff\ud800",
                "Nonce: " + "\ud83d",
            ]
        )

    def rlp_junk(self) -> str:
        kind = self.r.randrange(6)
        if kind == 0:  # nested lists
            depth = self.r.choice([5, 20, 1000, 30_000])
            return "0x" + self.pick([b"", b"\x01", b"\x02"]).hex() + nested_lists(depth).hex()
        if kind == 1:  # lengths that overrun
            return "0x02" + self.pick(["f9ffff", "b9ffff00", "c5", "f8", "ff" * 8]) + "00"
        if kind == 2:  # a signed transaction with one byte changed
            raw = bytearray(self.signed_tx())
            raw[self.r.randrange(len(raw))] ^= 1 << self.r.randrange(8)
            return "0x" + raw.hex()
        if kind == 3:
            return "0x" + self.signed_tx().hex()
        if kind == 4:
            return self.hexdata(self.r.choice([1, 50, 3000]))
        return "0x" + self.pick(["03", "04", "7f", "80", "c0", "00"]) + self.hexdata(40)[2:]

    def signed_tx(self) -> bytes:
        key = "0x" + self.r.randbytes(32).hex()
        tx: dict[str, Any] = {
            "chainId": self.pick([CHAIN_ID, 1, 0]),
            "nonce": self.r.randrange(0, 3),
            "to": self.pick([self.pick(DEV_ADDRESSES), b""]),
            "value": self.r.randrange(0, 10),
            "gas": self.pick([21_000, 100_000, 10**9]),
            "data": bytes.fromhex(self.code()[2:]),
        }
        if self.r.random() < 0.5:
            tx.update(maxFeePerGas=10**10, maxPriorityFeePerGas=self.pick([0, 10**11]))
        else:
            tx.update(gasPrice=self.pick([0, 10**10]))
        if tx["to"] == b"":
            del tx["to"]
        return bytes(Account.sign_transaction(tx, key).raw_transaction)

    def tx_object(self) -> Any:
        fields = {
            "from": self.address,
            "to": self.address,
            "gas": self.quantity,
            "gasPrice": self.quantity,
            "maxFeePerGas": self.quantity,
            "maxPriorityFeePerGas": self.quantity,
            "value": self.quantity,
            "nonce": self.quantity,
            "data": self.code,
            "input": self.code,
            "accessList": lambda: self.pick(
                [[], [{"address": self.address(), "storageKeys": []}], "x"]
            ),
            "type": self.quantity,
            "chainId": self.quantity,
            "signedQuery": self.signed_query,
            "junk": lambda: self.value(1),
        }
        names = list(fields)
        chosen = self.r.sample(names, self.r.randrange(0, 6))
        obj = {name: fields[name]() for name in chosen}
        if "value" in obj and self.r.random() < 0.7:
            obj["value"] = "0x0"  # mostly no money moves
        return obj

    def signed_query(self) -> Any:
        if self.r.random() < 0.3:
            return self.value(2)
        leash = {
            key: self.quantity()
            for key in ("nonce", "blockNumber", "blockRange", "expiry", "chainId", "node")
            if self.r.random() < 0.8
        }
        return {"signature": self.pick([self.hexdata(65), self.hexdata()]), "leash": leash}

    def filter_object(self) -> Any:
        obj: dict[str, Any] = {}
        for name, make in [
            ("fromBlock", self.block),
            ("toBlock", self.block),
            ("blockHash", lambda: self.hexdata(32)),
            ("address", lambda: self.pick([self.address(), [self.address()] * 3, []])),
            (
                "topics",
                lambda: [
                    self.pick([None, self.hexdata(32), [self.hexdata(32)], 5])
                    for _ in range(self.r.randrange(6))
                ],
            ),
        ]:
            if self.r.random() < 0.4:
                obj[name] = make()
        return obj

    def block(self) -> Any:
        return self.pick(
            [
                self.pick(TAGS),
                self.quantity(),
                {"blockNumber": "0x0"},
                {"blockHash": self.hexdata(32)},
                self.hexdata(32),
            ]
        )

    def value(self, depth: int = 3) -> Any:
        kind = self.r.randrange(12 if depth > 0 else 8)
        if kind == 0:
            return None
        if kind == 1:
            return self.pick([True, False])
        if kind == 2:
            return self.quantity()
        if kind == 3:
            return self.text()
        if kind == 4:
            return self.hexdata()
        if kind == 5:
            return self.address()
        if kind == 6:
            return self.block()
        if kind == 7:
            return self.rlp_junk()
        if kind == 8:
            return [self.value(depth - 1) for _ in range(self.r.randrange(4))]
        if kind == 9:
            return {self.text()[:20]: self.value(depth - 1) for _ in range(self.r.randrange(4))}
        if kind == 10:
            return self.tx_object()
        return self.filter_object()

    def params(self, method: str) -> Any:
        roll = self.r.random()
        if roll < 0.05:
            return self.pick([None, {}, {"a": 1}, "x", 5, True])
        if roll < 0.55 and method in SHAPES:
            return [
                make(self) if self.r.random() < 0.85 else self.value() for make in SHAPES[method]
            ][: self.r.randrange(len(SHAPES[method]) + 2)]
        return [self.value() for _ in range(self.r.randrange(5))]

    def request(self) -> dict[str, Any]:
        method = self.pick(METHODS) if self.r.random() < 0.85 else self.pick(UNKNOWN)
        request: dict[str, Any] = {
            "jsonrpc": "2.0",
            "id": self.r.randrange(10**6),
            "method": method,
        }
        params = self.params(method)
        if params is not None or self.r.random() < 0.5:
            request["params"] = params
        roll = self.r.random()
        if roll < 0.03:
            del request["id"]  # a notification
        elif roll < 0.06:
            request["id"] = self.pick([None, "s", 1.5, [1], {"a": 1}, True, 2**80])
        elif roll < 0.08:
            request["jsonrpc"] = self.pick(["1.0", 2, None])
        elif roll < 0.10:
            request["method"] = self.pick([5, None, ["eth_chainId"]])
        return request

    def body(self) -> tuple[bytes, dict[str, str], str]:
        """A request body, its headers, and what the case is (for failure messages)."""
        headers = {"Content-Type": "application/json"}
        kind = self.r.randrange(20)
        if kind < 11:
            doc: Any = self.request()
            what = f"call {doc.get('method')!r}"
        elif kind < 14:
            doc = [self.request() for _ in range(self.r.choice([1, 2, 5, 30]))]
            what = "batch"
        elif kind == 14:
            depth = self.r.choice([10, 300, 5000, 100_000])
            opener = self.pick(["[", '{"a":'])
            closer = "]" if opener == "[" else "}"
            return (opener * depth + "1" + closer * depth).encode(), headers, f"depth {depth}"
        elif kind == 15:
            junk = self.pick(
                [
                    self.r.randbytes(self.r.choice([1, 100, 5000])),
                    b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId"',
                    b'{"jsonrpc":"2.0","id":1,"method":"eth_\xff\xfe"}',
                    b"\xef\xbb\xbf" + json.dumps(self.request()).encode(),
                    b'{"jsonrpc":"2.0","id":1e400,"method":"eth_chainId"}',
                    b'{"jsonrpc":"2.0","id":NaN,"method":"eth_chainId"}',
                    b'{"jsonrpc":"2.0","id":1,"method":"eth_getBalance",'
                    b'"params":["\\ud800", "latest"]}',
                    b"[" + b"1," * 1500 + b"1]",
                    b"",
                    b"null",
                    b'"x"',
                ]
            )
            return junk, headers, "junk body"
        elif kind == 16:
            doc = self.request()
            body = json.dumps(doc).encode()
            encoding = self.pick(["gzip", "deflate", "br", "zstd", "identity", "x-bogus"])
            if self.r.random() < 0.5 and encoding in ("gzip", "deflate"):
                body = gzip.compress(body) if encoding == "gzip" else zlib.compress(body)
            return body, {**headers, "Content-Encoding": encoding}, f"encoding {encoding}"
        elif kind == 17:
            big = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": self.pick(METHODS),
                "params": ["0x" + "ab" * self.r.choice([100_000, 500_000])],
            }
            return json.dumps(big).encode(), headers, "large param"
        elif kind == 18:
            content_type = self.pick(
                [
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "",
                    "application/json; charset=latin-1",
                ]
            )
            return (
                json.dumps(self.request()).encode(),
                {"Content-Type": content_type},
                "content type",
            )
        else:
            doc = self.request()
            what = "call with surrogate escapes"
            text = json.dumps(doc).replace("a", "\\ud800", 1)
            return text.encode(), headers, what
        return json.dumps(doc).encode(), headers, what

    def path(self) -> str:
        """ "/", a signed-in account's personal URL (PERSONAL), or a made-up token."""
        return self.pick(
            ["/"] * 6
            + [PERSONAL] * 2
            + [
                "/rpc/" + self.text()[:40].encode("utf-8", "surrogatepass").hex(),
                "/rpc/" + base64.urlsafe_b64encode(self.r.randbytes(61)).decode(),
            ]
        )

    def raw_http(self) -> bytes:
        body = json.dumps(self.request()).encode()
        request_line = b"POST / HTTP/1.1"
        headers = [
            b"Host: 127.0.0.1",
            b"Content-Type: application/json",
            b"Content-Length: %d" % len(body),
        ]
        mutation = self.r.randrange(14)
        if mutation == 0:
            request_line = self.pick(
                [
                    b"P0ST / HTTP/1.1",
                    b"POST / HTTP/2.0",
                    b"POST  HTTP/1.1",
                    b"POST /\x00 HTTP/1.1",
                    b"\x16\x03\x01\x02\x00\x01",
                    b"POST / HTTP/1.1 extra",
                ]
            )
        elif mutation == 1:
            headers.append(
                self.pick(
                    [
                        b"Bad Header",
                        b"X: a\x00b",
                        b"X:\xff\xfe",
                        b": empty-name",
                        b"X: " + b"a" * 9000,
                    ]
                )
            )
        elif mutation == 2:
            headers[2] = self.pick(
                [
                    b"Content-Length: -1",
                    b"Content-Length: abc",
                    b"Content-Length: 1e3",
                    b"Content-Length: 99999999999999999999",
                ]
            )
        elif mutation == 3:
            headers.append(b"Content-Length: %d" % (len(body) + 1))  # two different lengths
        elif mutation == 4:
            headers[2] = b"Transfer-Encoding: chunked"
            size = self.pick(
                [
                    b"zz",
                    b"-1",
                    b"%x" % (len(body) - 1),
                    b"%x;ext=\x01" % len(body),
                    b"%x" % len(body),
                ]
            )
            body = size + b"\r\n" + body + b"\r\n0\r\n\r\n"
        elif mutation == 5:
            headers.append(b"Transfer-Encoding: chunked")  # both framings
        elif mutation == 6:
            headers.append(b" folded: continuation")
        elif mutation == 7:
            headers[0] = b"Host: \xff\xfe"
        elif mutation == 8:
            headers.append(
                b"Content-Encoding: " + self.pick([b"gzip", b"deflate", b"br", b"gzip, deflate"])
            )
        elif mutation == 9:
            request_line = b"POST /" + b"a" * self.r.choice([100, 9000]) + b" HTTP/1.1"
        elif mutation == 10:
            headers = [b"X-%d: %d" % (i, i) for i in range(self.r.choice([50, 200]))] + headers
        elif mutation == 11:
            headers.append(b"Expect: 100-continue")
        elif mutation == 12:
            request_line = b"GET / HTTP/1.1"
            version = b"Sec-WebSocket-Version: " + self.pick([b"13", b"8", b"x"])
            headers = [b"Host: x", b"Upgrade: websocket", b"Connection: Upgrade", version]
            headers += self.pick([[], [b"Sec-WebSocket-Key: !!"]])
            body = b""
        else:
            request_line = b"POST / HTTP/1.0"
        return request_line + b"\r\n" + b"\r\n".join(headers) + b"\r\n\r\n" + body

    def ws_session(self) -> list[tuple[str, bytes]]:
        """WebSocket frames: ("text"|"binary", payload) requests, at most one broken frame last."""
        frames: list[tuple[str, bytes]] = []
        for _ in range(self.r.randrange(1, 8)):
            body, _, _ = self.body()
            if self.r.random() < 0.2:
                doc = {
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": self.pick(["eth_subscribe", "eth_unsubscribe"]),
                    "params": self.params("eth_subscribe"),
                }
                body = json.dumps(doc).encode()
            frames.append((self.pick(["text", "text", "binary"]), body))
        if self.r.random() < 0.3:
            frames.append(
                (
                    self.pick(
                        ["bad-utf8", "bad-opcode", "unmasked", "oversize", "bad-close", "fragment"]
                    ),
                    b"",
                )
            )
        return frames


SHAPES: dict[str, list[Any]] = {
    "eth_getBalance": [Gen.address, Gen.block],
    "eth_getTransactionCount": [Gen.address, Gen.block],
    "eth_getCode": [Gen.address, Gen.block],
    "eth_getStorageAt": [Gen.address, Gen.quantity, Gen.block],
    "eth_call": [Gen.tx_object, Gen.block],
    "eth_estimateGas": [Gen.tx_object, Gen.block],
    "eth_sendTransaction": [Gen.tx_object],
    "eth_sendRawTransaction": [Gen.rlp_junk],
    "eth_getLogs": [Gen.filter_object],
    "eth_newFilter": [Gen.filter_object],
    "eth_getFilterChanges": [Gen.quantity],
    "eth_getFilterLogs": [Gen.quantity],
    "eth_uninstallFilter": [Gen.quantity],
    "eth_getBlockByNumber": [Gen.block, lambda g: g.pick([True, False, 1])],
    "eth_getBlockByHash": [lambda g: g.hexdata(32), lambda g: g.pick([True, False])],
    "eth_getTransactionByHash": [lambda g: g.hexdata(32)],
    "eth_getTransactionReceipt": [lambda g: g.hexdata(32)],
    "eth_getBlockReceipts": [Gen.block],
    "eth_feeHistory": [
        Gen.quantity,
        Gen.block,
        lambda g: [g.r.uniform(-10, 120) for _ in range(g.r.randrange(5))],
    ],
    "eth_getTransactionByBlockNumberAndIndex": [Gen.block, Gen.quantity],
    "eth_getTransactionByBlockHashAndIndex": [lambda g: g.hexdata(32), Gen.quantity],
    "coco_siweMessage": [Gen.address, Gen.text],
    "coco_signIn": [Gen.text, lambda g: g.hexdata(65)],
    "coco_getBlockSeal": [Gen.block],
    "eth_subscribe": [
        lambda g: g.pick(["newHeads", "logs", "newPendingTransactions", "syncing", "x"]),
        Gen.filter_object,
    ],
    "eth_unsubscribe": [lambda g: g.hexdata(16)],
}


# -------------------------------------------------------------------------- checking
class Failures:
    def __init__(self) -> None:
        self.items: list[str] = []
        self.codes: Counter[Any] = Counter()  # answers by error code ("result" for success)

    def add(self, case: int, what: str, problem: str) -> None:
        self.items.append(f"case {case} ({what}): {problem}")


def check_document(document: Any, case: int, what: str, failures: Failures) -> None:
    entries = document if isinstance(document, list) else [document]
    if isinstance(document, list) and not document:
        failures.add(case, what, "an empty batch answer")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("jsonrpc") != "2.0" or "id" not in entry:
            failures.add(case, what, f"not a JSON-RPC response: {str(entry)[:200]}")
            continue
        if ("result" in entry) == ("error" in entry):
            failures.add(case, what, f"needs exactly one of result and error: {str(entry)[:200]}")
            continue
        error = entry.get("error")
        failures.codes[error.get("code") if isinstance(error, dict) else "result"] += 1
        if error is not None:
            if (
                not isinstance(error, dict)
                or not isinstance(error.get("code"), int)
                or not isinstance(error.get("message"), str)
            ):
                failures.add(case, what, f"malformed error object: {str(error)[:200]}")
            elif error["code"] == -32603:
                failures.add(case, what, f"internal error: {error}")


def http_case(
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    case: int,
    what: str,
    failures: Failures,
) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        status, payload = response.status, response.read()
    finally:
        conn.close()
    if status >= 500:
        failures.add(case, what, f"HTTP {status}: {payload[:200]!r}")
        return
    if status != 200:
        encoding = headers.get("Content-Encoding", "identity")
        client_fault = encoding not in ("identity", "x-bogus") or path != "/"  # "/rpc/": 404
        if not (400 <= status < 500 and client_fault):
            failures.add(case, what, f"HTTP {status} for well-formed HTTP: {payload[:200]!r}")
        return
    if not payload:
        return  # notifications only: no body
    try:
        document = json.loads(payload)
    except ValueError:
        failures.add(case, what, f"a body that is not JSON: {payload[:200]!r}")
        return
    check_document(document, case, what, failures)


def raw_http_case(port: int, data: bytes, case: int, failures: Failures) -> None:
    what = f"raw HTTP {data[:40]!r}"
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(data)
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        head, _, rest = answer.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/"):
            failures.add(case, what, f"no HTTP answer: {answer[:200]!r}")
            return
        status = int(head.split(b" ", 2)[1])
        if status == 100:  # Expect: 100-continue, then the real answer
            head, _, rest = rest.partition(b"\r\n\r\n")
            while not head:
                rest += sock.recv(65536)
                head, _, rest = rest.partition(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
        if status >= 500 or not 200 <= status < 500:
            failures.add(case, what, f"HTTP {status}: {head[:200]!r}")
            return
        if status == 200:
            length = next(
                (
                    int(line.split(b":", 1)[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            if length:
                try:
                    check_document(json.loads(rest[:length]), case, what, failures)
                except ValueError:
                    failures.add(case, what, f"a body that is not JSON: {rest[:200]!r}")


def ws_case(
    port: int, path: str, frames: list[tuple[str, bytes]], case: int, failures: Failures
) -> None:
    ws = RawWebSocket(port, path)
    try:
        if ws.status != 101:
            if not (ws.status == 404 and path == "/rpc/"):
                failures.add(case, "WebSocket handshake", f"HTTP {ws.status}")
            return
        for kind, payload in frames:
            what = f"WebSocket {kind} {payload[:40]!r}"
            if kind == "text" and not _utf8(payload):
                kind = "bad-utf8"  # the node must close (1007), not answer
            if kind in ("text", "binary"):
                ws.send_frame(1 if kind == "text" else 2, payload)
                if not _expects_answer(payload):
                    continue
                while True:
                    opcode, data = ws.frame()
                    if opcode == 8:
                        code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None
                        failures.add(case, what, f"closed ({code}) instead of answering")
                        return
                    try:
                        document = json.loads(data)
                    except ValueError:
                        failures.add(case, what, f"a frame that is not JSON: {data[:200]!r}")
                        return
                    if isinstance(document, dict) and document.get("method") == "eth_subscription":
                        continue  # a notification between answers
                    check_document(document, case, what, failures)
                    break
                continue
            # one broken frame: the node must close with a protocol code, not 1011
            if kind == "bad-utf8":
                ws.send_frame(1, payload if payload and not _utf8(payload) else b'{"a":"\xff"}')
            elif kind == "bad-opcode":
                ws.send_frame(5, b"x")
            elif kind == "unmasked":
                ws.send_frame(1, b"{}", masked=False)
            elif kind == "oversize":
                ws.send_frame(1, b"", length=64 * 1024 * 1024)
            elif kind == "bad-close":
                ws.send_frame(8, b"\x00")
            else:
                ws.send_frame(0, b"x")  # a continuation with nothing to continue
            try:
                # then a proper close of ours: a node that took the frame answers it (1000)
                ws.send_frame(8, struct.pack(">H", 1000))
            except (ConnectionError, OSError):
                return  # the node dropped the broken connection already
            try:
                while True:
                    opcode, data = ws.frame()
                    if opcode == 8:
                        code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else None
                        if code is not None and not 1000 <= code < 1011:
                            failures.add(case, what, f"closed with {code} {data[2:]!r}")
                        return
                    if opcode in (1, 2):
                        try:
                            document = json.loads(data)
                        except ValueError:
                            failures.add(case, what, f"a frame that is not JSON: {data[:200]!r}")
                            return
                        if not (
                            isinstance(document, dict)
                            and document.get("method") == "eth_subscription"
                        ):
                            check_document(document, case, what, failures)
            except (EOFError, ConnectionError):
                return  # the node dropped the broken connection
            return  # nothing after a broken frame
    except (EOFError, ConnectionError, TimeoutError) as exc:
        failures.add(case, "WebSocket", f"connection lost: {exc!r}")
    finally:
        ws.sock.close()


def _utf8(payload: bytes) -> bool:
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _expects_answer(payload: bytes) -> bool:
    """Whether the node answers this message: everything but notifications (no id)."""
    if payload.count(b"[") + payload.count(b"{") > 200:
        return True  # nested too deep for the node (a parse error), and for json.loads here
    try:
        document = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return True  # parse errors are answered
    if isinstance(document, dict):
        return "id" in document
    if isinstance(document, list) and document:
        return any(not isinstance(item, dict) or "id" in item for item in document)
    return True


# ------------------------------------------------------------------------------- run
def test_fuzz(chain: NodeProcess, capsys: pytest.CaptureFixture[str]) -> None:
    mode = chain.mode  # type: ignore[attr-defined]
    with capsys.disabled():
        print(f"\nfuzz seed {SEED} ({CASES} cases, {mode} node): replay with COCO_FUZZ_SEED={SEED}")
    assert chain.proc is not None
    host = chain.proc.pid
    enclave = enclave_pid(host)
    gen = Gen(SEED * 2 + (mode == "strict"))
    failures = Failures()
    # a control account nobody else knows, funded before the fuzz so that nothing the
    # fuzz does with the dev accounts (gapped nonces, transfers) can stand in its way;
    # each reads its own nonce and receipts through its personal URL (as strict mode wants)
    control = Account.from_key("0x" + random.Random(SEED).randbytes(32).hex())
    funder = Account.from_key(DEV_KEYS[0])
    fund = _send(_sign_in(chain, funder), funder, control.address, 10**18)
    wait_receipt(_sign_in(chain, funder), fund, what=f"seed {SEED}: ")
    personal = _sign_in(chain, Account.from_key(DEV_KEYS[1])).removeprefix(chain.url)
    log_start = len(chain.log().splitlines())
    baseline: tuple[int, int] | None = None
    started = time.monotonic()
    for case in range(CASES):
        if case == WARM_UP:
            baseline = (rss(host), rss(enclave))
        roll = gen.r.random()
        if roll < 0.75:
            body, headers, what = gen.body()
            path = gen.path()
            path = personal if path == PERSONAL else path
            http_case(chain.port, path, body, headers, case, what, failures)
        elif roll < 0.87:
            raw_http_case(chain.port, gen.raw_http(), case, failures)
        else:
            path = gen.path()
            path = personal if path == PERSONAL else path
            ws_case(chain.port, path, gen.ws_session(), case, failures)
        assert chain.proc.poll() is None, f"seed {SEED}: the node died at case {case}"
    elapsed = time.monotonic() - started
    assert baseline is not None
    grown = (rss(host) - baseline[0], rss(enclave) - baseline[1])
    with capsys.disabled():
        print(
            f"fuzz seed {SEED}: {CASES} cases in {elapsed:.0f} s; host grew "
            f"{grown[0] / 2**20:.1f} MiB, enclave {grown[1] / 2**20:.1f} MiB; answers "
            f"{dict(failures.codes.most_common())}"
        )
    # the control transfer
    control_url = _sign_in(chain, control)
    tx_hash = _send(control_url, control, funder.address, 1)
    receipt = wait_receipt(control_url, tx_hash, what=f"seed {SEED}: ")
    assert receipt["status"] == "0x1", f"seed {SEED}"
    new_log = chain.log().splitlines()[log_start:]
    bad_lines = [line for line in new_log if "Traceback" in line or " ERROR " in line]
    assert not failures.items, f"seed {SEED}: {len(failures.items)} bad answers:\n" + "\n".join(
        failures.items[:30]
    )
    assert not bad_lines, f"seed {SEED}: the log gained:\n" + "\n".join(bad_lines[:30])
    assert grown[0] < MEMORY_BOUND, f"seed {SEED}: the host grew by {grown[0] / 2**20:.0f} MiB"
    assert grown[1] < MEMORY_BOUND, f"seed {SEED}: the enclave grew by {grown[1] / 2**20:.0f} MiB"


def _sign_in(chain: NodeProcess, account: Any) -> str:
    """The account's personal RPC URL (Sign-In with Ethereum)."""
    from eth_account.messages import encode_defunct

    message = rpc(chain.url, "coco_siweMessage", [account.address])["result"]["message"]
    signature = account.sign_message(encode_defunct(text=message)).signature
    session = rpc(chain.url, "coco_signIn", [message, "0x" + bytes(signature).hex()])
    assert "result" in session, (SEED, session)
    return str(session["result"]["rpcUrl"])


def _send(url: str, account: Any, to: str, value: int) -> str:
    nonce = int(rpc(url, "eth_getTransactionCount", [account.address, "pending"])["result"], 16)
    gas_price = 2 * int(rpc(url, "eth_gasPrice")["result"], 16)
    tx = {
        "chainId": CHAIN_ID,
        "nonce": nonce,
        "to": to,
        "value": value,
        "gas": 21_000,
        "gasPrice": gas_price,
    }
    answer = rpc(
        url,
        "eth_sendRawTransaction",
        ["0x" + bytes(account.sign_transaction(tx).raw_transaction).hex()],
    )
    assert "result" in answer, (SEED, answer)
    return str(answer["result"])
