"""Coco Gateway: a confidential Ethereum JSON-RPC gateway."""

import importlib.util
import os

__version__ = "0.1.0"

# Keccak is py-evm's hottest primitive; eth-hash picks pycryptodome before the much faster
# C pysha3 backend unless told otherwise. An explicit ETH_HASH_BACKEND still wins.
if importlib.util.find_spec("sha3") is not None:
    os.environ.setdefault("ETH_HASH_BACKEND", "pysha3")
