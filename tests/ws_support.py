"""A WebSocket client on a plain socket, for tests that must send frames no library sends
or must stop reading (tests/test_fuzz.py, tests/test_ws_backpressure.py).

    ws = RawWebSocket(port, "/")               # handshake done; ws.status is its HTTP status
    ws.send_frame(1, b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId"}')
    opcode, payload = ws.frame()               # one whole frame (no reassembly)
"""

from __future__ import annotations

import base64
import os
import socket
import struct


class RawWebSocket:
    """The handshake and RFC 6455 framing by hand: it reads only when told to."""

    def __init__(
        self,
        port: int,
        path: str = "/",
        *,
        timeout: float = 60,
        receive_buffer: int | None = None,
    ) -> None:
        self.sock = socket.socket()
        if receive_buffer is not None:  # before connect: the TCP window is agreed then
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(
            (
                f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                "Sec-WebSocket-Version: 13\r\n\r\n"
            ).encode()
        )
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        self.head, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        self.status = int(self.head.split(b" ", 2)[1])

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError
        return chunk

    def _exactly(self, n: int) -> bytes:
        while len(self.buffer) < n:
            self.buffer += self._recv()
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        return out

    def send_frame(
        self,
        opcode: int,
        payload: bytes,
        *,
        fin: bool = True,
        masked: bool = True,
        length: int | None = None,
    ) -> None:
        """One frame; ``length`` overrides the header's length (to announce a lie)."""
        length = len(payload) if length is None else length
        first = (0x80 if fin else 0) | opcode
        mask_bit = 0x80 if masked else 0
        if length < 126:
            header = bytes([first, mask_bit | length])
        elif length < 1 << 16:
            header = bytes([first, mask_bit | 126]) + struct.pack(">H", length)
        else:
            header = bytes([first, mask_bit | 127]) + struct.pack(">Q", length)
        if masked:
            mask = os.urandom(4)
            key = (mask * (len(payload) // 4 + 1))[: len(payload)]
            payload = (
                (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(
                    len(payload), "big"
                )
                if payload
                else b""
            )
            header += mask
        self.sock.sendall(header + payload)

    def frame(self) -> tuple[int, bytes]:
        """The next frame's opcode and payload."""
        first, second = self._exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack(">H", self._exactly(2))
        elif length == 127:
            (length,) = struct.unpack(">Q", self._exactly(8))
        return first & 0x0F, self._exactly(length)
