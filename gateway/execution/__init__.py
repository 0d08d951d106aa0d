"""py-evm execution: chain configuration, the pending pool, block building, calls and queries."""
