"""Coco Gateway: a confidential Ethereum JSON-RPC gateway."""

__version__ = "0.1.0"
