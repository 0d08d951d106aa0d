"""Wire formats shared by the node and the client SDK: pure functions, no I/O."""
