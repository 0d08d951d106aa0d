"""The client SDK: attestation checks, envelopes and decryption for web3.py users.

Imports nothing of the node: only the shared wire formats in ``gateway.protocol``.
"""
