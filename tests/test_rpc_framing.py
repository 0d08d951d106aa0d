"""JSON-RPC 2.0 framing over HTTP POST and WebSocket, against a real node process.

Single requests, batches (order, one error per bad element, notifications, the size cap),
parse errors, invalid request objects, the body-size limit, CORS, geth's -32601 message,
and the same framing rules over a WebSocket connection.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import CHAIN_ID, rpc
from eth_utils import keccak
from websockets.sync.client import connect

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
LIMIT_EXCEEDED = -32005
MAX_BODY = 5 * 1024 * 1024
MAX_BATCH = 1000
CHAIN_ID_HEX = hex(CHAIN_ID)


# ---------------------------------------------------------------------------- helpers
class Reply:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def post(url: str, body: bytes | str, headers: dict[str, str] | None = None) -> Reply:
    data = body.encode() if isinstance(body, str) else body
    req = urllib.request.Request(
        url, data=data, headers={"Content-Type": "application/json", **(headers or {})}
    )
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return Reply(resp.status, resp.headers, resp.read())
    except urllib.error.HTTPError as exc:  # keep the status: the test asserts it is 200
        return Reply(exc.code, exc.headers, exc.read())


def post_chunked(url: str, chunks: Iterator[bytes]) -> Reply:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        conn.request(
            "POST",
            "/",
            body=chunks,
            headers={"Content-Type": "application/json"},
            encode_chunked=True,
        )
        resp = conn.getresponse()
        return Reply(resp.status, resp.headers, resp.read())
    finally:
        conn.close()


def call_doc(url: str, document: Any) -> Any:
    """POST a JSON document; the status must be 200 and the body JSON."""
    reply = post(url, json.dumps(document))
    assert reply.status == 200, (reply.status, reply.body[:300])
    return reply.json()


def req(method: str, params: list[Any] | None = None, id: Any = 1) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": id, "method": method, "params": params or []}


def note(method: str, params: list[Any] | None = None) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "method": method, "params": params or []}


def assert_error(response: Any, code: int, id: Any = None) -> str:
    assert isinstance(response, dict), response
    assert response.get("jsonrpc") == "2.0", response
    assert "result" not in response, response
    assert response["id"] == id, response
    error = response["error"]
    assert error["code"] == code, response
    assert isinstance(error["message"], str) and error["message"], response
    assert "Traceback" not in error["message"], response
    return str(error["message"])


def assert_serving(url: str) -> None:
    assert rpc(url, "eth_chainId") == {"jsonrpc": "2.0", "id": 1, "result": CHAIN_ID_HEX}


# ---------------------------------------------------------------------------- single
@pytest.mark.parametrize("request_id", [1, 0, -7, 2**53, 1.5, "abc", "", None])
def test_single_request_echoes_the_id(node: Any, request_id: Any) -> None:
    reply = post(node.url, json.dumps(req("eth_chainId", id=request_id)))
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json() == {"jsonrpc": "2.0", "id": request_id, "result": CHAIN_ID_HEX}


def test_params_may_be_omitted_or_null(node: Any) -> None:
    for document in (
        {"jsonrpc": "2.0", "id": 3, "method": "eth_chainId"},
        {"jsonrpc": "2.0", "id": 3, "method": "eth_chainId", "params": None},
    ):
        assert call_doc(node.url, document) == {"jsonrpc": "2.0", "id": 3, "result": CHAIN_ID_HEX}


def test_single_notification_gets_an_empty_body(node: Any) -> None:
    reply = post(node.url, json.dumps(note("eth_chainId")))
    assert reply.status == 200
    assert reply.body == b""


# ---------------------------------------------------------------------------- batches
def test_batch_is_answered_in_order_with_one_error_per_bad_element(node: Any) -> None:
    batch = [
        req("eth_chainId", id=1),
        1,
        {},
        req("no_suchMethod", id="x"),
        note("eth_blockNumber"),  # a notification: no entry in the answer
        {"jsonrpc": "1.0", "id": 5, "method": "eth_chainId"},
        req("net_version", id=2),
        {"jsonrpc": "2.0", "id": 6},
        {"jsonrpc": "2.0", "id": 7, "method": "eth_chainId", "params": "0x1"},
        [],
        "eth_chainId",
        note("no_suchMethod"),  # unknown method as a notification: still no entry
        req("eth_getBalance", ["0x1234"], id=8),
        req("web3_clientVersion", id=9),
    ]
    answer = call_doc(node.url, batch)
    assert isinstance(answer, list)
    assert len(answer) == len(batch) - 2
    assert answer[0] == {"jsonrpc": "2.0", "id": 1, "result": CHAIN_ID_HEX}
    assert_error(answer[1], INVALID_REQUEST)
    assert_error(answer[2], INVALID_REQUEST)
    message = assert_error(answer[3], METHOD_NOT_FOUND, "x")
    assert message == "the method no_suchMethod does not exist/is not available"
    assert_error(answer[4], INVALID_REQUEST, 5)
    assert answer[5] == {"jsonrpc": "2.0", "id": 2, "result": str(CHAIN_ID)}
    assert_error(answer[6], INVALID_REQUEST, 6)
    assert_error(answer[7], INVALID_REQUEST, 7)
    assert_error(answer[8], INVALID_REQUEST)
    assert_error(answer[9], INVALID_REQUEST)
    assert_error(answer[10], -32602, 8)
    assert answer[11]["id"] == 9 and answer[11]["result"].startswith("coco-gateway/")


def test_batch_of_notifications_only_gets_an_empty_body(node: Any) -> None:
    batch = [note("eth_chainId"), note("eth_blockNumber"), note("no_suchMethod")]
    reply = post(node.url, json.dumps(batch))
    assert reply.status == 200
    assert reply.body == b""
    assert reply.headers["Access-Control-Allow-Origin"] == "*"


def test_empty_batch_is_one_invalid_request_error(node: Any) -> None:
    answer = call_doc(node.url, [])
    assert isinstance(answer, dict)
    assert_error(answer, INVALID_REQUEST)


def test_batch_size_cap(node: Any) -> None:
    full = call_doc(node.url, [req("eth_chainId", id=i) for i in range(MAX_BATCH)])
    assert [r["id"] for r in full] == list(range(MAX_BATCH))
    assert all(r["result"] == CHAIN_ID_HEX for r in full)

    over = call_doc(node.url, [req("eth_chainId", id=i) for i in range(MAX_BATCH + 1)])
    assert isinstance(over, dict)
    message = assert_error(over, LIMIT_EXCEEDED)
    assert str(MAX_BATCH) in message
    assert_serving(node.url)


# ---------------------------------------------------------------------------- parse errors
@pytest.mark.parametrize(
    "body",
    [
        b"{bad",
        b"",
        b"   ",
        b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId"',
        b'[{"jsonrpc":"2.0","id":1,"method":"eth_chainId"},',
        b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId"} trailing',
        b"{'jsonrpc':'2.0','id':1,'method':'eth_chainId'}",
        b'{"jsonrpc":"2.0","id":NaN,"method":"eth_chainId"}',
        b'{"jsonrpc":"2.0","id":1e400,"method":"eth_chainId"}',
        b'{"jsonrpc":"2.0","id":1,"method":"eth_feeHistory","params":["0x1","latest",[Infinity]]}',
        b'{"jsonrpc":"2.0","id":"\xff\xfe","method":"eth_chainId"}',
    ],
    ids=[
        "garbage",
        "empty",
        "blank",
        "unterminated",
        "unterminated-batch",
        "trailing",
        "single-quotes",
        "nan",
        "overflowing-float",
        "infinity",
        "not-utf8",
    ],
)
def test_malformed_json_is_a_parse_error_with_id_null(node: Any, body: bytes) -> None:
    reply = post(node.url, body)
    assert reply.status == 200
    assert_error(reply.json(), PARSE_ERROR)


@pytest.mark.parametrize("depth", [300, 100_000, 2_000_000])
def test_deeply_nested_json_is_refused_and_the_node_survives(node: Any, depth: int) -> None:
    # json's C decoder recursing this deep once took the whole node down (SIGSEGV)
    body = b"[" * depth + b"]" * depth
    reply = post(node.url, body)
    assert reply.status == 200
    assert_error(reply.json(), PARSE_ERROR)
    nested_params = (
        b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":'
        + b"[" * depth
        + b"]" * depth
        + b"}"
    )
    assert_error(post(node.url, nested_params).json(), PARSE_ERROR)
    assert_serving(node.url)


def test_brackets_inside_strings_do_not_count_as_nesting(node: Any) -> None:
    deep_looking = '"' + "[{" * 5000 + '\\"' + "]}" * 10 + '"'
    body = '{"jsonrpc":"2.0","id":' + deep_looking + ',"method":"eth_chainId"}'
    answer = post(node.url, body).json()
    assert answer["result"] == CHAIN_ID_HEX
    assert answer["id"] == json.loads(deep_looking)


# ---------------------------------------------------------------------------- invalid requests
@pytest.mark.parametrize(
    ("document", "echoed_id"),
    [
        ({"jsonrpc": "1.0", "id": 1, "method": "eth_chainId"}, 1),
        ({"jsonrpc": 2.0, "id": 1, "method": "eth_chainId"}, 1),
        ({"id": 1, "method": "eth_chainId"}, 1),
        ({"jsonrpc": "2.0", "id": 1}, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": None}, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": ["eth_chainId"]}, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": "0x1"}, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": 1}, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": True}, 1),
        ({"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": {"a": 1}}, 1),
        ({"jsonrpc": "2.0", "id": {"a": 1}, "method": "eth_chainId"}, None),
        ({"jsonrpc": "2.0", "id": [1], "method": "eth_chainId"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "eth_chainId"}, None),
        ({"jsonrpc": "2.0", "method": 7}, None),
        (1, None),
        ("eth_chainId", None),
        (None, None),
        ({}, None),
    ],
)
def test_invalid_request_objects(node: Any, document: Any, echoed_id: Any) -> None:
    reply = post(node.url, json.dumps(document))
    assert reply.status == 200
    assert_error(reply.json(), INVALID_REQUEST, echoed_id)


# ---------------------------------------------------------------------------- size limit
def test_body_over_the_limit_with_content_length(node: Any) -> None:
    filler = "0x" + "00" * (MAX_BODY // 2)  # the JSON text is just over 5 MiB
    body = json.dumps(req("web3_sha3", [filler])).encode()
    assert len(body) > MAX_BODY
    reply = post(node.url, body)
    assert reply.status == 200
    message = assert_error(reply.json(), LIMIT_EXCEEDED)
    assert str(MAX_BODY) in message
    assert_serving(node.url)


def test_body_over_the_limit_when_chunked(node: Any) -> None:
    def chunks() -> Iterator[bytes]:
        for _ in range(6):
            yield b" " * (1024 * 1024)
        yield json.dumps(req("eth_chainId")).encode()

    reply = post_chunked(node.url, chunks())
    assert reply.status == 200
    assert_error(reply.json(), LIMIT_EXCEEDED)
    assert_serving(node.url)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_large_body_under_the_limit_is_read_whole(node: Any, chunked: bool) -> None:
    # the body arrives in many TCP reads; it must be read to its end, not to the first read
    payload = bytes(range(256)) * 8192  # 2 MiB, 4 MiB as hex
    body = json.dumps(req("web3_sha3", ["0x" + payload.hex()])).encode()
    assert len(body) < MAX_BODY
    if chunked:
        reply = post_chunked(node.url, (body[i : i + 65536] for i in range(0, len(body), 65536)))
    else:
        reply = post(node.url, body)
    assert reply.status == 200
    assert reply.json() == {"jsonrpc": "2.0", "id": 1, "result": "0x" + keccak(payload).hex()}


# ---------------------------------------------------------------------------- CORS
def test_cors_preflight(node: Any) -> None:
    request = urllib.request.Request(
        node.url,
        method="OPTIONS",
        headers={
            "Origin": "http://example.test",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    with urllib.request.urlopen(request, timeout=30) as resp:
        assert resp.status in (200, 204)
        headers = resp.headers
    assert headers["Access-Control-Allow-Origin"] == "*"
    allowed = headers["Access-Control-Allow-Headers"].lower().replace(" ", "").split(",")
    assert "content-type" in allowed
    methods = headers["Access-Control-Allow-Methods"].upper().replace(" ", "").split(",")
    assert "POST" in methods


@pytest.mark.parametrize(
    "body",
    [json.dumps(req("eth_chainId")), "{bad", json.dumps(req("no_such")), "[]"],
    ids=["result", "parse-error", "unknown-method", "empty-batch"],
)
def test_post_responses_carry_cors_headers(node: Any, body: str) -> None:
    reply = post(node.url, body, headers={"Origin": "http://example.test"})
    assert reply.status == 200
    assert reply.headers["Access-Control-Allow-Origin"] == "*"


# ---------------------------------------------------------------------------- unknown methods
@pytest.mark.parametrize(
    "method",
    [
        "anvil_nodeInfo",
        "anvil_metadata",
        "hardhat_metadata",
        "eth_noSuchMethod",
        "foo",
        "evm_snapshot",
        "debug_traceTransaction",
        "",
        "ETH_CHAINID",
        "eth_chainId ",
    ],
)
def test_unknown_method_has_geths_message(node: Any, method: str) -> None:
    response = rpc(node.url, method, [])
    message = assert_error(response, METHOD_NOT_FOUND, 1)
    assert message == f"the method {method} does not exist/is not available"


@pytest.mark.parametrize(
    ("method", "params"),
    [("eth_subscribe", ["newHeads"]), ("eth_unsubscribe", ["0x1"])],
)
def test_subscriptions_over_http_are_an_error(node: Any, method: str, params: list[Any]) -> None:
    response = rpc(node.url, method, params)
    message = assert_error(response, METHOD_NOT_FOUND, 1)
    assert "notifications not supported" in message


# ---------------------------------------------------------------------------- WebSocket
def ws_exchange(node: Any, *messages: str | bytes, expect: int) -> list[Any]:
    """Send the messages in order, then read ``expect`` replies (each within 10 s)."""
    with connect(node.ws_url, open_timeout=10, max_size=None) as ws:
        for message in messages:
            ws.send(message)
        return [json.loads(ws.recv(timeout=10)) for _ in range(expect)]


def test_ws_single_request(node: Any) -> None:
    (answer,) = ws_exchange(node, json.dumps(req("eth_chainId", id="ws")), expect=1)
    assert answer == {"jsonrpc": "2.0", "id": "ws", "result": CHAIN_ID_HEX}


def test_ws_binary_frame_is_read_as_json(node: Any) -> None:
    (answer,) = ws_exchange(node, json.dumps(req("eth_chainId", id=4)).encode(), expect=1)
    assert answer == {"jsonrpc": "2.0", "id": 4, "result": CHAIN_ID_HEX}


def test_ws_batch_in_order_with_errors(node: Any) -> None:
    batch = [
        req("eth_chainId", id=1),
        1,
        note("eth_chainId"),
        req("anvil_nodeInfo", id=2),
        {"jsonrpc": "2.0", "id": 3, "method": "eth_chainId", "params": "x"},
        req("net_version", id=4),
    ]
    (answer,) = ws_exchange(node, json.dumps(batch), expect=1)
    assert isinstance(answer, list) and len(answer) == 5
    assert answer[0] == {"jsonrpc": "2.0", "id": 1, "result": CHAIN_ID_HEX}
    assert_error(answer[1], INVALID_REQUEST)
    message = assert_error(answer[2], METHOD_NOT_FOUND, 2)
    assert message == "the method anvil_nodeInfo does not exist/is not available"
    assert_error(answer[3], INVALID_REQUEST, 3)
    assert answer[4] == {"jsonrpc": "2.0", "id": 4, "result": str(CHAIN_ID)}


def test_ws_malformed_json_and_empty_batch_then_keeps_serving(node: Any) -> None:
    answers = ws_exchange(
        node,
        "{bad",
        "[]",
        b"[" * 100_000 + b"]" * 100_000,
        json.dumps(req("eth_chainId", id="after")),
        expect=4,
    )
    assert_error(answers[0], PARSE_ERROR)
    assert_error(answers[1], INVALID_REQUEST)
    assert_error(answers[2], PARSE_ERROR)
    assert answers[3] == {"jsonrpc": "2.0", "id": "after", "result": CHAIN_ID_HEX}


def test_ws_notifications_get_no_reply(node: Any) -> None:
    answers = ws_exchange(
        node,
        json.dumps(note("eth_chainId")),
        json.dumps([note("eth_chainId"), note("eth_blockNumber")]),
        json.dumps(req("eth_chainId", id="next")),
        expect=1,
    )
    assert answers == [{"jsonrpc": "2.0", "id": "next", "result": CHAIN_ID_HEX}]


def test_ws_batch_size_cap(node: Any) -> None:
    over = [req("eth_chainId", id=i) for i in range(MAX_BATCH + 1)]
    answers = ws_exchange(node, json.dumps(over), json.dumps(req("eth_chainId")), expect=2)
    assert_error(answers[0], LIMIT_EXCEEDED)
    assert answers[1]["result"] == CHAIN_ID_HEX


def test_ws_subscribe_is_served(node: Any) -> None:
    answers = ws_exchange(
        node,
        json.dumps(req("eth_subscribe", ["newHeads"], id=1)),
        json.dumps(req("eth_subscribe", ["noSuchKind"], id=2)),
        expect=2,
    )
    assert answers[0]["id"] == 1
    assert answers[0]["result"].startswith("0x")
    assert_error(answers[1], -32602, 2)
