"""Node-to-node networking: the v1 wire (``wire``), authenticated links (``link``), and the
consortium node shell that drives the enclave's consensus over them (``consortium_node``)."""
