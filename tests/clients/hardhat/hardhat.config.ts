// Hardhat 3 project that drives a Coco Gateway dev node over HTTP.
//
// Networks (the node's URL comes from the RPC_URL environment variable):
//   coco        signs locally with the dev accounts' private keys (eth_sendRawTransaction)
//   cocoRemote  uses the node's unlocked accounts ("remote": eth_accounts, eth_sendTransaction)
//
// Hardhat compiles the contracts itself with the solc-js installed from npm (solidity.path),
// so no compiler is downloaded. The sources are the repository's contracts/src, reached
// through the symlink ./contracts (Hardhat reads no source outside its project), and the
// settings are those of contracts/build.py, so the bytecode equals contracts/build/*.json.
import { createRequire } from "node:module";

import hardhatEthers from "@nomicfoundation/hardhat-ethers";
import { configVariable, defineConfig } from "hardhat/config";

const require = createRequire(import.meta.url);

// Anvil's / Hardhat's "test test ... junk" accounts 0, 1 and 2: the dev node funds them.
const DEV_KEYS = [
  "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
  "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
  "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
];

export default defineConfig({
  plugins: [hardhatEthers],
  paths: {
    sources: "contracts",
  },
  solidity: {
    version: "0.8.37",
    // The solc-js package's soljson.js: Hardhat loads a non-binary path as a WASM compiler.
    path: require.resolve("solc/soljson.js"),
    settings: {
      evmVersion: "prague",
      optimizer: { enabled: true, runs: 200 },
      metadata: { bytecodeHash: "none", appendCBOR: false },
    },
  },
  networks: {
    coco: {
      type: "http",
      chainType: "l1",
      url: configVariable("RPC_URL"),
      chainId: 31337,
      accounts: DEV_KEYS,
    },
    cocoRemote: {
      type: "http",
      chainType: "l1",
      url: configVariable("RPC_URL"),
      chainId: 31337,
      accounts: "remote",
    },
  },
});
