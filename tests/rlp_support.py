"""RLP built by hand for the tests that feed the node absurd input (rlp.encode would recurse)."""

from __future__ import annotations


def nested_lists(depth: int) -> bytes:
    """``depth`` empty lists, each inside the next."""
    headers = [b"\xc0"]
    size = 1
    for _ in range(depth - 1):
        if size < 56:
            header = bytes([0xC0 + size])
        else:
            length = size.to_bytes((size.bit_length() + 7) // 8, "big")
            header = bytes([0xF7 + len(length)]) + length
        headers.append(header)
        size += len(header)
    return b"".join(reversed(headers))
