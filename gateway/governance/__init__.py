"""Consortium governance, the pure core (docs/GOVERNANCE.md).

Members (Ethereum accounts) sign proposals, ballots and withdrawals as EIP-712 typed data
(``typed``); the constitution says how many votes each kind of action needs
(``constitution``); ``state`` is the deterministic state machine every node runs over the
records in the chain's order; ``recovery`` splits the ledger secret's wrapping key into
members' shares. Nothing here does I/O or knows the node: the enclave feeds it records,
heights and block times, and acts on the events it returns.
"""
