"""The JSON-RPC method handlers: eth_, net_, web3_ and the coco_ namespace."""
