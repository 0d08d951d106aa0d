"""The trust boundary: keys, sealing and execution, reached only through plain-data messages."""
