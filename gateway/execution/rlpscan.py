"""A cheap structural check of untrusted RLP before anything decodes it in full.

py-rlp decodes recursively and copies the rest of the input at every level, so a body of
tens of thousands of nested empty lists costs gigabytes and seconds before it is refused.
``check`` walks the encoding once, iteratively, with no copies: every length must fit
inside its parent, the input must be exactly one item, lists may nest at most
``max_depth`` deep and hold at most ``max_items`` items in all. Canonical form (no leading
zeros, no long form for short payloads) is left to the decoder that runs next.
"""

from __future__ import annotations

# A signed transaction nests four lists deep at most (the transaction, its access list, an
# entry, the entry's storage keys); an EIP-7702 authorization list nests three.
MAX_DEPTH = 16
# Every item takes at least one byte, so a 128 KiB transaction holds at most ~131,000; the
# largest real ones (an access list of ~4,000 keys, ~1,400 authorizations) hold ~10,000.
MAX_ITEMS = 32_768


class RlpShapeError(ValueError):
    """The input is not one well-formed RLP item within the bounds; the text is geth-like."""


def check(
    data: bytes | memoryview, *, max_depth: int = MAX_DEPTH, max_items: int = MAX_ITEMS
) -> None:
    """Raise ``RlpShapeError`` unless ``data`` is exactly one RLP item within the bounds."""
    view = memoryview(data)
    end = len(view)
    if end == 0:
        raise RlpShapeError("rlp: empty input")
    pos = 0
    items = 0
    # the end offsets of the lists that enclose ``pos``, innermost last
    open_lists: list[int] = []
    while True:
        # close every list that ends here
        while open_lists and pos == open_lists[-1]:
            open_lists.pop()
        if pos == end:
            break
        if not open_lists and items:
            raise RlpShapeError("rlp: input contains more than one value")
        limit = open_lists[-1] if open_lists else end
        items += 1
        if items > max_items:
            raise RlpShapeError(f"rlp: more than {max_items} values")
        prefix = view[pos]
        if prefix < 0x80:  # a single byte
            pos += 1
            continue
        if prefix < 0xB8:  # a short string
            header, length, is_list = 1, prefix - 0x80, False
        elif prefix < 0xC0:  # a long string: the length of the length follows
            header = _long(view, pos, prefix - 0xB7, limit)
            length, is_list = _length(view, pos, prefix - 0xB7), False
        elif prefix < 0xF8:  # a short list
            header, length, is_list = 1, prefix - 0xC0, True
        else:  # a long list
            header = _long(view, pos, prefix - 0xF7, limit)
            length, is_list = _length(view, pos, prefix - 0xF7), True
        payload_end = pos + header + length
        if payload_end > limit:
            raise RlpShapeError("rlp: value size exceeds available input length")
        if is_list:
            if len(open_lists) >= max_depth:
                raise RlpShapeError(f"rlp: lists nested deeper than {max_depth} levels")
            open_lists.append(payload_end)
            pos += header
        else:
            pos = payload_end


def _long(view: memoryview, pos: int, size: int, limit: int) -> int:
    """The header size of a long-form item, checked to fit before its length is read."""
    if pos + 1 + size > limit:
        raise RlpShapeError("rlp: value size exceeds available input length")
    return 1 + size


def _length(view: memoryview, pos: int, size: int) -> int:
    return int.from_bytes(view[pos + 1 : pos + 1 + size], "big")
