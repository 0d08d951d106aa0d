"""Sign in with Ethereum from a script: a private key in, a personal RPC URL out."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from eth_account import Account
from eth_account.messages import encode_defunct

from gateway.client.attest import rpc_call


def sign_in(url: str, private_key: bytes | str) -> dict[str, Any]:
    """Sign the node's SIWE message with ``private_key``; returns {token, address,
    expiresAt, rpcUrl}. ``url`` is the node's plain RPC URL."""
    account = Account.from_key(private_key)
    parsed = urlparse(url)
    origin = f"{parsed.scheme}://{parsed.netloc}"
    prepared = rpc_call(url, "coco_siweMessage", [account.address, origin])
    message = prepared["message"]
    signature = account.sign_message(encode_defunct(text=message)).signature
    session: dict[str, Any] = rpc_call(url, "coco_signIn", [message, "0x" + bytes(signature).hex()])
    return session


def sign_out(personal_url: str) -> bool:
    return bool(rpc_call(personal_url, "coco_signOut"))
