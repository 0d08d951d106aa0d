import { createRequire } from "node:module";

import hardhatEthers from "@nomicfoundation/hardhat-ethers";
import { configVariable, defineConfig } from "hardhat/config";

const require = createRequire(import.meta.url);

// The dev node's funded accounts 0, 1 and 2 (mnemonic "test test ... junk").
const DEV_KEYS = [
  "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
  "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
  "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
];

export default defineConfig({
  plugins: [hardhatEthers],
  solidity: {
    version: "0.8.37",
    // Offline: the solc-js compiler installed by `npm install solc@0.8.37`, not a download.
    path: require.resolve("solc/soljson.js"),
    settings: {
      // No evmVersion: solc 0.8.37 targets "osaka", the node's default fork. For a node
      // started with --fork prague, add:  evmVersion: "prague",
      optimizer: { enabled: true, runs: 200 },
      // Optional: no metadata trailer, so the bytecode equals the repository's contracts/build.
      metadata: { bytecodeHash: "none", appendCBOR: false },
    },
  },
  networks: {
    // Hardhat signs with the keys and sends eth_sendRawTransaction.
    coco: {
      type: "http",
      chainType: "l1",
      url: configVariable("RPC_URL"), // http://127.0.0.1:8545
      chainId: 31337,
      accounts: DEV_KEYS,
    },
    // The node's unlocked dev accounts instead (eth_accounts, eth_sendTransaction).
    cocoRemote: {
      type: "http",
      chainType: "l1",
      url: configVariable("RPC_URL"),
      chainId: 31337,
      accounts: "remote",
    },
  },
});
