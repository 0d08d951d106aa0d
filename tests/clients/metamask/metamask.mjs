// MetaMask's own packages against a Coco Gateway node: what the extension does with a custom
// network, driven headless.
//
//     RPC_URL=http://127.0.0.1:8545 node metamask.mjs [scenario ...]
//
// Scenarios: add_network, eip1559, block_tracker, balances_nonces, estimate_gas, fees,
// send_eip1559, send_legacy, pending (needs a node with --block-time), reverts, mined_revert,
// contract_detection.
//
// Each scenario builds a fresh wallet (wallet.mjs: NetworkController, TransactionController,
// GasFeeController, ...) with the node's network added through NetworkController.addNetwork,
// then asserts on what those controllers did and on every request they sent. The few steps
// that live in the extension's UI code and not in a package are replayed over HTTP; each says
// which extension file it follows.

import { AbiCoder, Interface } from "@ethersproject/abi";
import {
  DEV_KEYS,
  check,
  equal,
  eventually,
  loadArtifact,
  rejects,
  runScenarios,
  withTimeout,
} from "../js/lib.mjs";
import {
  CHAIN_ID_HEX,
  NETWORK_FORM,
  RPC_URL,
  createWallet,
  refusedUrls,
  sentRequests,
  sentSince,
} from "./wallet.mjs";

const EVENTS = loadArtifact("Events");
const TOKEN = loadArtifact("Token");
const EVENTS_ABI = new Interface(EVENTS.abi);
const TOKEN_ABI = new Interface(TOKEN.abi);
const REVERT_REASON = "Events: always fails";
const ERROR_STRING_SELECTOR = "0x08c379a0"; // Error(string)
const DAPP_ORIGIN = "https://dapp.coco.test";
const FINAL = new Set(["confirmed", "failed", "dropped", "rejected"]);
const HEX_QUANTITY = /^0x(0|[1-9a-f][0-9a-f]*)$/;

// A fresh account per scenario run, so scenarios never share nonces: recipients are derived
// from the scenario name; senders are the funded dev accounts.
const RECIPIENT = (n) => `0x${(0xc0c0_0000 + n).toString(16).padStart(40, "0")}`;

// ---------------------------------------------------------------------------------------------
// helpers

/** A POST like the extension's jsonRpcRequest (shared/modules/rpc.utils.js). */
async function jsonRpcRequest(rpcUrl, method, params = []) {
  const id = Date.now().toString(); // the extension sends a string id
  const response = await fetch(rpcUrl, {
    method: "POST",
    body: JSON.stringify({ id, jsonrpc: "2.0", method, params }),
    headers: { "Content-Type": "application/json" },
    cache: "default",
  });
  const document = await response.json();
  return { id, status: response.status, document };
}

function txOf(wallet, id) {
  return wallet.transactions.state.transactions.find((t) => t.id === id);
}

/** The error a call through MetaMask's network client rejects with. */
async function clientError(wallet, method, params, what) {
  return rejects(() => wallet.request(method, params), what);
}

/**
 * Checks the error shape for a revert with Error(string) as it leaves MetaMask's network
 * client: eth-json-rpc-middleware's fetch middleware wraps the node's error object as
 * rpcErrors.internal({ data: <node error> }) (dist/fetch.cjs), so the node's code 3, message
 * and revert data arrive in `error.data`.
 */
function checkWrappedRevert(error, reason, what) {
  equal(error.code, -32603, `${what}: MetaMask's wrapper code`);
  const nodeError = error.data;
  check(nodeError && typeof nodeError === "object", `${what}: node error in error.data`);
  checkNodeRevert(nodeError, reason, what);
}

/** The node's own error object for a revert with Error(string). */
function checkNodeRevert(nodeError, reason, what) {
  equal(nodeError.code, 3, `${what}: node error code`);
  equal(nodeError.message, `execution reverted: ${reason}`, `${what}: node error message`);
  check(
    typeof nodeError.data === "string" && nodeError.data.startsWith(ERROR_STRING_SELECTOR),
    `${what}: revert data starts with Error(string) selector, got ${nodeError.data}`,
  );
  const [decoded] = AbiCoder.prototype.decode.call(
    new AbiCoder(),
    ["string"],
    `0x${nodeError.data.slice(10)}`,
  );
  equal(decoded, reason, `${what}: decoded revert reason`);
}

/**
 * The confirmation flow: TransactionController.addTransaction (gas, fees, type), the
 * confirmation request (accepted like a user clicking Confirm), then approve, nonce, sign with
 * the SimpleKeyring, eth_sendRawTransaction, and the pending-transaction tracker polling
 * eth_getTransactionReceipt until the transaction is final.
 */
async function addTransaction(wallet, txParams, { origin = "metamask" } = {}) {
  const { result, transactionMeta } = await wallet.transactions.addTransaction(txParams, {
    networkClientId: wallet.networkClientId,
    origin,
  });
  const approval = await withTimeout(wallet.approvals.next(), 10_000, "confirmation request");
  equal(approval.request.requestData.txId, transactionMeta.id, "confirmation is for this tx");
  equal(approval.request.type, "transaction", "confirmation type");
  // The confirmation screen waits for the gas fee poller's first estimates before it lets the
  // user confirm (rejecting while that update is in flight makes TransactionController throw
  // "Cannot update transaction as ID not found" from a timer).
  const unapproved = structuredClone(
    await eventually(
      () => {
        const tx = txOf(wallet, transactionMeta.id);
        return tx?.gasFeeEstimatesLoaded ? tx : undefined;
      },
      10_000,
      "gas fee estimates loaded for the confirmation",
    ),
  );
  equal(unapproved.status, "unapproved", "status while the confirmation is open");
  return { approval, result, unapproved, id: transactionMeta.id };
}

async function confirmAndWait(wallet, pending) {
  pending.approval.accept();
  let hash;
  let submitError;
  try {
    hash = await withTimeout(pending.result, 15_000, "submit");
  } catch (error) {
    submitError = error;
  }
  const final = await eventually(
    () => {
      const tx = txOf(wallet, pending.id);
      return tx && FINAL.has(tx.status) ? tx : undefined;
    },
    15_000,
    () => `final status for ${pending.id} (now ${txOf(wallet, pending.id)?.status})`,
  );
  return { hash, submitError, final };
}

async function send(wallet, txParams, options) {
  const pending = await addTransaction(wallet, txParams, options);
  const done = await confirmAndWait(wallet, pending);
  return { ...done, unapproved: pending.unapproved };
}

async function deploy(wallet, artifact, constructorData = "0x") {
  const data = artifact.bytecode + constructorData.replace(/^0x/, "");
  const { final } = await send(wallet, { from: wallet.address, data });
  equal(final.status, "confirmed", `${artifact.contractName} deployment status`);
  equal(final.type, "contractDeployment", "TransactionController's type for a deployment");
  const address = final.txReceipt?.contractAddress;
  check(/^0x[0-9a-fA-F]{40}$/.test(address ?? ""), `contract address in receipt: ${address}`);
  return address.toLowerCase();
}

async function withWallet(options, body) {
  const wallet = await createWallet(options);
  try {
    return await body(wallet);
  } finally {
    wallet.destroy();
    check(
      !refusedUrls.some((url) => url.includes("infura")),
      `the wallet tried to reach Infura (a built-in network was used): ${refusedUrls}`,
    );
  }
}

/** Resolves just after the node's block number changes (polled directly, every 20 ms). */
async function nextBlockStarted() {
  const number = async () => (await jsonRpcRequest(RPC_URL, "eth_blockNumber")).document.result;
  const start = await number();
  await eventually(async () => (await number()) !== start, 10_000, "a new block", 20);
}

function hexToBig(hex) {
  return BigInt(hex);
}

// ---------------------------------------------------------------------------------------------
// scenarios

/**
 * 1. "Add a network manually": the form fetches eth_chainId from the RPC URL with the
 * extension's jsonRpcRequest and compares the answer, as a string, with the chain id the user
 * typed (converted with toHex: decimal to lowercase unpadded hex) — a mismatch shows
 * "endpointReturnedDifferentChainId" and disables Save
 * (ui/pages/settings/networks-tab/networks-form/networks-form.tsx). Then onSubmit calls
 * NetworkController.addNetwork and setActiveNetwork, which this scenario runs for real.
 */
async function addNetwork() {
  const typed = `0x${BigInt(NETWORK_FORM.chainIdDecimal).toString(16)}`;
  const { id, status, document } = await jsonRpcRequest(RPC_URL, "eth_chainId");
  equal(status, 200, "HTTP status of eth_chainId");
  check(document && typeof document === "object" && !Array.isArray(document), "object response");
  equal(document.id, id, "response id echoes the string id");
  check(!("error" in document), `eth_chainId error: ${JSON.stringify(document.error)}`);
  check(document.result === typed, `eth_chainId is exactly ${typed}, got ${document.result}`);
  check(document.result === CHAIN_ID_HEX, "the chain id the form sends to addNetwork");
  // wallet_addEthereumChain's validateChainId (app/scripts/lib/rpc-method-middleware/handlers/
  // ethereum-chain-utils.js): 0x-prefixed, unpadded, non-zero, within Number.MAX_SAFE_INTEGER.
  check(/^0x[1-9a-f]+[0-9a-f]*$/i.test(document.result), "isPrefixedFormattedHexString");
  check(Number.parseInt(document.result, 16) <= Number.MAX_SAFE_INTEGER, "isSafeChainId");

  const mark = sentRequests.length;
  await withWallet({}, async (wallet) => {
    const metadata = wallet.network.state.networksMetadata[wallet.networkClientId];
    equal(metadata?.status, "available", "NetworkController's status for the new network");
    equal(metadata?.EIPS?.[1559], true, "NetworkController's EIP-1559 flag");
    equal(wallet.network.state.selectedNetworkClientId, wallet.networkClientId, "selected");
    const stored = wallet.network.state.networkConfigurationsByChainId[CHAIN_ID_HEX];
    equal(stored?.name, NETWORK_FORM.name, "stored network name");
    equal(stored?.nativeCurrency, NETWORK_FORM.ticker, "stored currency symbol");
    equal(stored?.rpcEndpoints?.[0]?.url, RPC_URL, "stored RPC URL");
    // The network client answers eth_chainId from its configuration, without the node.
    equal(await wallet.request("eth_chainId"), CHAIN_ID_HEX, "provider eth_chainId");
  });
  const methods = new Set(sentRequests.slice(mark).map((r) => r.method));
  check(!methods.has("net_version"), "MetaMask no longer asks net_version");
  check(methods.has("eth_getBlockByNumber"), "the network lookup read the latest block");
}

/**
 * 2. EIP-1559 detection: NetworkController's lookup reads the latest block
 * (eth_getBlockByNumber, [<block>, false]) and calls the network EIP-1559 when the block has
 * baseFeePerGas; TransactionController reads gasLimit from the same call to bound estimates.
 * The "latest" tag is rewritten to the block tracker's number by the custom network's
 * block-ref-rewrite middleware, so the node sees a hex block number.
 */
async function eip1559() {
  // The plain call, as any EIP-1559 check makes it.
  const { document } = await jsonRpcRequest(RPC_URL, "eth_getBlockByNumber", ["latest", false]);
  const block = document.result;
  check(block && HEX_QUANTITY.test(block.baseFeePerGas ?? ""), "latest block has baseFeePerGas");
  check(HEX_QUANTITY.test(block.gasLimit ?? ""), "latest block has gasLimit");
  check(hexToBig(block.gasLimit) > 21000n, "gasLimit is a real limit");
  check(block.transactions.every((t) => typeof t === "string"), "false: transaction hashes");

  const mark = sentRequests.length;
  await withWallet({}, async (wallet) => {
    equal(await wallet.network.getEIP1559Compatibility(), true, "getEIP1559Compatibility");
    const lookups = sentSince(mark, "eth_getBlockByNumber");
    check(lookups.length >= 1, "the lookup sent eth_getBlockByNumber");
    for (const { params } of lookups) {
      check(HEX_QUANTITY.test(params[0]), `block tag rewritten to a number: ${params[0]}`);
      equal(params[1], false, "hydrated transactions not asked for");
    }
    // Through MetaMask's provider, "latest" comes back with the same fields.
    const viaClient = await wallet.request("eth_getBlockByNumber", ["latest", false]);
    check(HEX_QUANTITY.test(viaClient.baseFeePerGas ?? ""), "baseFeePerGas via MetaMask");
    check(HEX_QUANTITY.test(viaClient.gasLimit ?? ""), "gasLimit via MetaMask");
  });
}

/**
 * 3. Block tracking: the network client's PollingBlockTracker (@metamask/eth-block-tracker,
 * created in network-controller's create-network-client) polls eth_blockNumber and emits
 * "latest" for each new number; each mined transaction must show up.
 */
async function blockTracker() {
  await withWallet({ privateKey: DEV_KEYS[0] }, async (wallet) => {
    const tracker = wallet.networkClient.blockTracker;
    const seen = [];
    const onLatest = (number) => seen.push(number);
    tracker.on("latest", onLatest);
    const mark = sentRequests.length;
    try {
      const first = await tracker.getLatestBlock();
      check(HEX_QUANTITY.test(first), `tracker's latest block is hex: ${first}`);
      const minedIn = [];
      for (let i = 0; i < 3; i += 1) {
        const { final } = await send(wallet, {
          from: wallet.address,
          to: RECIPIENT(3),
          value: "0x1",
        });
        equal(final.status, "confirmed", `transfer ${i} status`);
        const blockNumber = final.txReceipt.blockNumber;
        minedIn.push(blockNumber);
        await eventually(
          () => seen.some((n) => hexToBig(n) >= hexToBig(blockNumber)),
          5_000,
          () => `tracker sees block ${blockNumber} (saw ${seen.join(", ")})`,
        );
      }
      for (let i = 1; i < seen.length; i += 1) {
        check(hexToBig(seen[i]) > hexToBig(seen[i - 1]), `"latest" only moves up: ${seen}`);
      }
      for (let i = 1; i < minedIn.length; i += 1) {
        check(hexToBig(minedIn[i]) > hexToBig(minedIn[i - 1]), "each transfer in a new block");
      }
      equal(await tracker.getLatestBlock(), seen[seen.length - 1], "getLatestBlock");
      const polls = sentSince(mark, "eth_blockNumber");
      check(polls.length >= 3, `tracker polled eth_blockNumber (${polls.length} times)`);
      check(
        polls.every((r) => r.params === undefined || r.params.length === 0),
        "eth_blockNumber with no params",
      );
    } finally {
      tracker.removeListener("latest", onLatest);
    }
  });
}

/**
 * 4. Balances and nonces at explicit hex block numbers taken from the block tracker (what
 * MetaMask's account tracker and nonce tracker send), at "latest" (rewritten to the tracker's
 * number by the middleware) and at "pending" (passed through).
 */
async function balancesNonces() {
  await withWallet({ privateKey: DEV_KEYS[1] }, async (wallet) => {
    const tracker = wallet.networkClient.blockTracker;
    const sender = wallet.address;
    const recipient = RECIPIENT(4);
    const before = await tracker.getLatestBlock();
    const balanceBefore = hexToBig(await wallet.request("eth_getBalance", [recipient, before]));
    const nonceBefore = hexToBig(
      await wallet.request("eth_getTransactionCount", [sender, before]),
    );

    // The nonce tracker (@metamask/nonce-tracker, used by TransactionController) asks for the
    // count at the tracker's latest block number.
    let mark = sentRequests.length;
    const lock = await wallet.transactions.getNonceLock(sender, wallet.networkClientId);
    try {
      equal(BigInt(lock.nextNonce), nonceBefore, "nonce tracker's next nonce");
    } finally {
      lock.releaseLock();
    }
    const nonceQueries = sentSince(mark, "eth_getTransactionCount");
    check(
      nonceQueries.every((r) => HEX_QUANTITY.test(r.params[1])),
      `nonce tracker used hex block numbers: ${JSON.stringify(nonceQueries.map((r) => r.params))}`,
    );

    const value = 123_456_789n;
    const { final } = await send(wallet, {
      from: sender,
      to: recipient,
      value: `0x${value.toString(16)}`,
    });
    equal(final.status, "confirmed", "transfer status");
    const minedIn = final.txReceipt.blockNumber;
    await eventually(
      async () => hexToBig(await tracker.getLatestBlock()) >= hexToBig(minedIn),
      5_000,
      `tracker reaches block ${minedIn}`,
    );

    // State at the older number is still the old state; at the new one it has the transfer.
    equal(
      hexToBig(await wallet.request("eth_getBalance", [recipient, before])),
      balanceBefore,
      `balance at ${before}`,
    );
    equal(
      hexToBig(await wallet.request("eth_getBalance", [recipient, minedIn])),
      balanceBefore + value,
      `balance at ${minedIn}`,
    );
    equal(
      hexToBig(await wallet.request("eth_getTransactionCount", [sender, before])),
      nonceBefore,
      `nonce at ${before}`,
    );
    equal(
      hexToBig(await wallet.request("eth_getTransactionCount", [sender, minedIn])),
      nonceBefore + 1n,
      `nonce at ${minedIn}`,
    );

    mark = sentRequests.length;
    for (const tag of ["latest", "pending"]) {
      equal(
        hexToBig(await wallet.request("eth_getBalance", [recipient, tag])),
        balanceBefore + value,
        `balance at ${tag}`,
      );
      equal(
        hexToBig(await wallet.request("eth_getTransactionCount", [sender, tag])),
        nonceBefore + 1n,
        `nonce at ${tag}`,
      );
    }
    // "latest" is rewritten to the tracker's number, which the block cache has just seen, so
    // those reads may be answered from the cache; none may reach the node as "latest".
    const tags = sentRequests.slice(mark).map((r) => r.params?.[1]);
    check(!tags.includes("latest"), `"latest" went out as the tracker's number: ${tags}`);
    check(tags.includes("pending"), `"pending" went out as is: ${tags}`);
  });
}

/**
 * 5. Gas estimation as TransactionController does it (dist/utils/gas.cjs, estimateGas): the
 * normalized txParams with gasPrice, maxFeePerGas and maxPriorityFeePerGas deleted, value
 * defaulted to 0x0, no block tag. normalizeTransactionParams keeps every key it knows, so a
 * dapp's nonce, accessList and even estimatedBaseFee (a MetaMask-internal key) reach
 * eth_estimateGas; the node must ignore what it does not use.
 */
async function estimateGas() {
  await withWallet({ privateKey: DEV_KEYS[2] }, async (wallet) => {
    const events = await deploy(wallet, EVENTS);
    const data = EVENTS_ABI.encodeFunctionData("setValue", [42]);
    const nonce = await wallet.request("eth_getTransactionCount", [wallet.address, "pending"]);
    const mark = sentRequests.length;
    const pending = await addTransaction(
      wallet,
      {
        from: wallet.address,
        to: events,
        data,
        type: "0x2",
        nonce,
        accessList: [],
        estimatedBaseFee: "0x3b9aca00",
        maxFeePerGas: "0x77359400",
        maxPriorityFeePerGas: "0x3b9aca00",
      },
      { origin: DAPP_ORIGIN },
    );
    const estimates = sentSince(mark, "eth_estimateGas");
    equal(estimates.length, 1, "one eth_estimateGas");
    const [request, ...rest] = estimates[0].params;
    equal(rest.length, 0, "eth_estimateGas sent without a block tag");
    const keys = Object.keys(request).sort();
    for (const key of ["from", "to", "value", "data", "type", "nonce", "estimatedBaseFee"]) {
      check(keys.includes(key), `MetaMask sent ${key} to eth_estimateGas: ${keys}`);
    }
    for (const key of ["gas", "gasPrice", "maxFeePerGas", "maxPriorityFeePerGas"]) {
      check(!keys.includes(key), `MetaMask stripped ${key}: ${keys}`);
    }
    equal(request.type, "0x2", "type sent to eth_estimateGas");
    equal(request.value, "0x0", "value defaulted to 0x0");
    const tx = pending.unapproved;
    check(!tx.simulationFails, `estimate failed: ${JSON.stringify(tx.simulationFails)}`);
    const estimated = hexToBig(tx.gasLimitNoBuffer ?? "0x0");
    check(estimated > 21_000n && estimated < 200_000n, `estimate for setValue: ${estimated}`);
    check(hexToBig(tx.txParams.gas) >= estimated, "gas limit at least the estimate");
    const { final } = await confirmAndWait(wallet, pending);
    equal(final.status, "confirmed", "setValue status");
    check(hexToBig(final.txReceipt.gasUsed) <= hexToBig(tx.txParams.gas), "gas used fits");
    equal(
      BigInt(await wallet.request("eth_call", [{ to: events, data: "0x3fa4f245" }])),
      42n,
      "value() after setValue(42)",
    );

    // The same call straight to the node, with keys no client should need understood: the
    // node must answer as for the plain call.
    const plain = { from: wallet.address, to: events, data, value: "0x0" };
    const { document: base } = await jsonRpcRequest(RPC_URL, "eth_estimateGas", [plain]);
    const { document: extra } = await jsonRpcRequest(RPC_URL, "eth_estimateGas", [
      {
        ...plain,
        type: "0x2",
        nonce: await wallet.request("eth_getTransactionCount", [wallet.address, "pending"]),
        chainId: CHAIN_ID_HEX,
        accessList: [],
        estimatedBaseFee: "0x3b9aca00",
        origin: DAPP_ORIGIN,
        networkClientId: wallet.networkClientId,
      },
    ]);
    check(!base.error, `plain estimate: ${JSON.stringify(base.error)}`);
    check(!extra.error, `estimate with extra keys: ${JSON.stringify(extra.error)}`);
    equal(extra.result, base.result, "extra keys do not change the estimate");
  });
}

/**
 * 6. Fees on a custom chain: GasFeeController asks MetaMask's gas API (refused here, as it has
 * nothing for a private chain) and falls back to eth_gasPrice; TransactionController's gas
 * fee flow then uses that price as both maxFeePerGas and maxPriorityFeePerGas
 * (dist/utils/gas-fees.cjs). These versions never send eth_feeHistory.
 */
async function fees() {
  await withWallet({ privateKey: DEV_KEYS[0], nonRpcGasApis: true }, async (wallet) => {
    const refusedBefore = refusedUrls.length;
    const estimates = await wallet.gasFees.fetchGasFeeEstimates({
      networkClientId: wallet.networkClientId,
    });
    equal(estimates.gasEstimateType, "eth_gasPrice", "GasFeeController's estimate type");
    check(
      refusedUrls.slice(refusedBefore).some((url) => url.includes("gas.api.cx.metamask.io")),
      "GasFeeController tried MetaMask's gas API first",
    );
    const gasPrice = hexToBig(await wallet.request("eth_gasPrice"));
    const gwei = Number(estimates.gasFeeEstimates.gasPrice);
    check(
      Math.abs(gwei * 1e9 - Number(gasPrice)) < 1,
      `estimate ${estimates.gasFeeEstimates.gasPrice} gwei is eth_gasPrice ${gasPrice}`,
    );
    const latest = await wallet.request("eth_getBlockByNumber", ["latest", false]);
    check(gasPrice >= hexToBig(latest.baseFeePerGas), "eth_gasPrice covers the base fee");

    const { final, unapproved } = await send(wallet, {
      from: wallet.address,
      to: RECIPIENT(6),
      value: "0x2",
    });
    equal(unapproved.txParams.type, "0x2", "EIP-1559 envelope on an EIP-1559 network");
    equal(unapproved.txParams.maxFeePerGas, `0x${gasPrice.toString(16)}`, "maxFeePerGas");
    equal(
      unapproved.txParams.maxPriorityFeePerGas,
      unapproved.txParams.maxFeePerGas,
      "maxPriorityFeePerGas = maxFeePerGas",
    );
    equal(final.status, "confirmed", "transfer priced from eth_gasPrice");
    check(
      hexToBig(final.txReceipt.effectiveGasPrice) <= gasPrice,
      "effectiveGasPrice within maxFeePerGas",
    );
    check(
      !sentRequests.some((r) => r.method === "eth_feeHistory"),
      "no eth_feeHistory from these MetaMask versions",
    );
  });
}

/**
 * 7. Sends signed in the wallet: SimpleKeyring signs TransactionController's @ethereumjs/tx
 * object, eth_sendRawTransaction publishes it, the pending-transaction tracker polls
 * eth_getTransactionReceipt and reads the block (eth_getBlockByHash) when it is mined.
 */
async function sendTyped(type) {
  await withWallet({ privateKey: DEV_KEYS[1] }, async (wallet) => {
    const recipient = RECIPIENT(type === "0x0" ? 70 : 72);
    const value = 10n ** 15n;
    const mark = sentRequests.length;
    const txParams = { from: wallet.address, to: recipient, value: `0x${value.toString(16)}` };
    if (type === "0x0") txParams.type = "0x0";
    const { hash, final, unapproved } = await send(wallet, txParams);
    check(/^0x[0-9a-f]{64}$/.test(hash ?? ""), `transaction hash from the submit: ${hash}`);
    equal(final.hash, hash, "hash in TransactionController state");
    equal(final.status, "confirmed", "final status");
    equal(final.txReceipt.status, "0x1", "receipt status");
    equal(final.txParams.type, type, "envelope type");
    if (type === "0x0") {
      check(HEX_QUANTITY.test(unapproved.txParams.gasPrice ?? ""), "legacy gasPrice set");
      check(!unapproved.txParams.maxFeePerGas, "no maxFeePerGas on a legacy tx");
    } else {
      check(HEX_QUANTITY.test(unapproved.txParams.maxFeePerGas ?? ""), "maxFeePerGas set");
    }
    const raw = sentSince(mark, "eth_sendRawTransaction");
    equal(raw.length, 1, "one eth_sendRawTransaction");
    check(
      type === "0x0" ? raw[0].params[0].startsWith("0xf8") : raw[0].params[0].startsWith("0x02"),
      `raw transaction envelope for type ${type}: ${raw[0].params[0].slice(0, 6)}`,
    );
    check(sentSince(mark, "eth_getTransactionReceipt").length >= 1, "receipt polled");
    check(sentSince(mark, "eth_getBlockByHash").length >= 1, "mined block read by hash");
    check(final.blockTimestamp, "block timestamp recorded from eth_getBlockByHash");
    equal(final.baseFeePerGas !== undefined, true, "block base fee recorded");

    // eth_getTransactionByHash, as MetaMask's activity and dapps read a submitted transaction.
    const onChain = await wallet.request("eth_getTransactionByHash", [hash]);
    equal(onChain.hash, hash, "getTransactionByHash hash");
    equal(onChain.from, wallet.address, "from");
    equal(onChain.to, recipient, "to");
    equal(hexToBig(onChain.value), value, "value");
    equal(onChain.nonce, final.txParams.nonce, "nonce");
    equal(onChain.type, type, "type");
    equal(onChain.chainId, CHAIN_ID_HEX, "chainId");
    equal(onChain.blockNumber, final.txReceipt.blockNumber, "blockNumber");
    const balance = hexToBig(await wallet.request("eth_getBalance", [recipient, "latest"]));
    check(balance >= value, `recipient balance ${balance}`);
  });
}

/**
 * 8a. A transaction that would revert: TransactionController's estimate fails, it keeps the
 * node's message in simulationFails (the confirmation screen's "this transaction is likely to
 * fail" alert), falls back to a fraction of the block gas limit, and the user rejects it.
 */
async function reverts() {
  await withWallet({ privateKey: DEV_KEYS[2] }, async (wallet) => {
    const events = await deploy(wallet, EVENTS);
    const data = EVENTS_ABI.encodeFunctionData("failRequire", []);
    const call = { from: wallet.address, to: events, data, value: "0x0" };

    // The node's own answer (execution-apis: code 3, message, revert data), with HTTP 200:
    // MetaMask's RPC service turns any non-2xx status into an HTTP error (-32050, or
    // "resource unavailable" for 5xx) and drops the body (network-controller's
    // dist/rpc-service/rpc-service.cjs), so the revert data would be lost.
    const { status, document } = await jsonRpcRequest(RPC_URL, "eth_estimateGas", [call]);
    equal(status, 200, "HTTP status of a JSON-RPC error response");
    check(document.error, `eth_estimateGas of failRequire: ${JSON.stringify(document)}`);
    checkNodeRevert(document.error, REVERT_REASON, "eth_estimateGas (node)");

    // Through MetaMask's network client.
    const error = await clientError(wallet, "eth_estimateGas", [call], "estimate via MetaMask");
    checkWrappedRevert(error, REVERT_REASON, "eth_estimateGas (MetaMask provider)");

    const pending = await addTransaction(
      wallet,
      { from: wallet.address, to: events, data },
      { origin: DAPP_ORIGIN },
    );
    const fails = pending.unapproved.simulationFails;
    // simulationFails.reason is the wrapper's message ("Internal JSON-RPC error." in this
    // version); the node's reason travels in the wrapped error's data, checked above.
    check(fails, "TransactionController marked the estimate as failed");
    check(
      typeof fails.reason === "string" && fails.reason.length > 0,
      `simulationFails.reason: ${JSON.stringify(fails)}`,
    );
    const latest = await wallet.request("eth_getBlockByNumber", ["latest", false]);
    const fallback = (hexToBig(latest.gasLimit) * 35n) / 100n;
    equal(hexToBig(pending.unapproved.txParams.gas), fallback, "fallback gas: 35% of block");
    const mark = sentRequests.length;
    pending.approval.reject(Object.assign(new Error("User rejected"), { code: 4001 }));
    const rejection = await rejects(() => pending.result, "the dapp's request after Reject");
    equal(rejection.code, 4001, "the dapp gets 4001 (user rejected)");
    const event = await eventually(
      () => wallet.events.find((e) => e.name === "transactionRejected"),
      5_000,
      "transactionRejected event",
    );
    equal(event.payload.transactionMeta.id, pending.id, "rejected transaction");
    check(!txOf(wallet, pending.id), "a rejected transaction leaves the controller's state");
    equal(sentSince(mark, "eth_sendRawTransaction").length, 0, "nothing sent after Reject");
  });
}

/**
 * 8b. A failing transaction that is mined (gas set by hand, so nothing is estimated):
 * TransactionController marks a receipt with status 0x0 as failed; it does not look for a
 * reason (dist/helpers/PendingTransactionTracker.cjs). The reason is recovered the way a
 * wallet or dapp does, by re-running the call with eth_call at the receipt's block through
 * MetaMask's provider, whose error must carry the node's code 3, message and data.
 */
async function minedRevert() {
  await withWallet({ privateKey: DEV_KEYS[0] }, async (wallet) => {
    const events = await deploy(wallet, EVENTS);
    const data = EVENTS_ABI.encodeFunctionData("failRequire", []);
    const { hash, final, submitError } = await send(wallet, {
      from: wallet.address,
      to: events,
      data,
      gas: "0x30d40",
    });
    check(!submitError, `submit of a failing tx: ${submitError}`);
    check(/^0x[0-9a-f]{64}$/.test(hash ?? ""), "the failing transaction was published");
    equal(final.status, "failed", "TransactionController status of a reverted tx");
    equal(final.txParams.gas, "0x30d40", "gas limit as set by hand");
    const receipt = await wallet.request("eth_getTransactionReceipt", [hash]);
    equal(receipt.status, "0x0", "receipt status");
    check(hexToBig(receipt.gasUsed) < 200_000n, "gas used below the limit (a revert)");

    const tx = await wallet.request("eth_getTransactionByHash", [hash]);
    const replay = { from: tx.from, to: tx.to, data: tx.input, value: tx.value, gas: tx.gas };
    const parent = `0x${(hexToBig(receipt.blockNumber) - 1n).toString(16)}`;
    for (const block of [receipt.blockNumber, parent]) {
      const error = await clientError(wallet, "eth_call", [replay, block], `eth_call at ${block}`);
      checkWrappedRevert(error, REVERT_REASON, `eth_call at ${block} (MetaMask provider)`);
      const { document } = await jsonRpcRequest(RPC_URL, "eth_call", [replay, block]);
      check(document.error, `eth_call at ${block} (node) should fail`);
      checkNodeRevert(document.error, REVERT_REASON, `eth_call at ${block} (node)`);
    }
  });
}

/**
 * 9. Transaction type detection (dist/utils/transaction-type.cjs, determineTransactionType):
 * eth_getCode on `to` tells a simple send from a contract interaction, and a token transfer
 * is recognised from its data once the target has code.
 */
async function contractDetection() {
  await withWallet({ privateKey: DEV_KEYS[1] }, async (wallet) => {
    const events = await deploy(wallet, EVENTS);
    const supply = 10n ** 24n;
    const token = await deploy(
      wallet,
      TOKEN,
      TOKEN_ABI.encodeDeploy(["Coco Token", "COCO", supply.toString()]),
    );
    const setValue = EVENTS_ABI.encodeFunctionData("setValue", [7]);
    const deposit = EVENTS_ABI.encodeFunctionData("deposit", []);
    const transfer = TOKEN_ABI.encodeFunctionData("transfer", [RECIPIENT(9), 5]);
    const cases = [
      [{ to: RECIPIENT(9), value: "0x1" }, "simpleSend"],
      [{ to: events, data: setValue }, "contractInteraction"],
      [{ to: events, value: "0x5", data: deposit }, "contractInteraction"],
      [{ to: token, data: transfer }, "transfer"],
    ];
    const mark = sentRequests.length;
    for (const [params, expected] of cases) {
      const { final, unapproved } = await send(wallet, { from: wallet.address, ...params });
      equal(unapproved.type, expected, `TransactionController type for ${params.data ?? "send"}`);
      equal(final.status, "confirmed", `${expected} status`);
    }
    // The code reads went out with the tracker's block number (the block cache answers
    // repeats within one block, so count targets, not calls).
    const codeReads = sentSince(mark, "eth_getCode");
    for (const target of [RECIPIENT(9), events, token]) {
      check(
        codeReads.some((r) => r.params[0].toLowerCase() === target),
        `eth_getCode of ${target} was read: ${codeReads.map((r) => r.params[0])}`,
      );
    }
    check(
      codeReads.every((r) => HEX_QUANTITY.test(r.params[1])),
      `eth_getCode block tags: ${codeReads.map((r) => r.params[1])}`,
    );
    equal(await wallet.request("eth_getCode", [RECIPIENT(9), "latest"]), "0x", "EOA code");
    equal(
      await wallet.request("eth_getCode", [events, "latest"]),
      EVENTS.deployedBytecode,
      "contract code",
    );
    const tokenBalance = await wallet.request("eth_call", [
      { to: token, data: TOKEN_ABI.encodeFunctionData("balanceOf", [RECIPIENT(9)]) },
      "latest",
    ]);
    equal(BigInt(tokenBalance), 5n, "token transfer arrived");
  });
}

/**
 * 7b. A node that seals blocks on a timer (`coco-gateway dev --block-time 2`), so a submitted
 * transaction is visible while pending: eth_getTransactionByHash answers with null block
 * fields, eth_getTransactionReceipt with null (the block cache must not keep either), the
 * "pending" nonce counts the pool, and MetaMask's nonce tracker gives a second transaction the
 * next nonce while the first still waits.
 */
async function pendingTransactions() {
  await withWallet({ privateKey: DEV_KEYS[3] }, async (wallet) => {
    const sender = wallet.address;
    const latestNonce = hexToBig(
      await wallet.request("eth_getTransactionCount", [sender, "latest"]),
    );
    const first = await addTransaction(wallet, { from: sender, to: RECIPIENT(71), value: "0x7" });
    // Confirm just after a block is sealed, so the checks below run well inside the interval.
    await nextBlockStarted();
    first.approval.accept();
    const hash = await withTimeout(first.result, 10_000, "first submit");

    const pendingTx = await wallet.request("eth_getTransactionByHash", [hash]);
    check(pendingTx, "a pending transaction is found by hash");
    equal(pendingTx.hash, hash, "pending hash");
    equal(pendingTx.blockHash, null, "pending blockHash");
    equal(pendingTx.blockNumber, null, "pending blockNumber");
    equal(pendingTx.transactionIndex, null, "pending transactionIndex");
    equal(pendingTx.from, sender, "pending from");
    equal(hexToBig(pendingTx.nonce), latestNonce, "pending nonce");
    equal(await wallet.request("eth_getTransactionReceipt", [hash]), null, "no receipt yet");
    equal(
      hexToBig(await wallet.request("eth_getTransactionCount", [sender, "pending"])),
      latestNonce + 1n,
      '"pending" nonce counts the pooled transaction',
    );
    equal(
      hexToBig(await wallet.request("eth_getTransactionCount", [sender, "latest"])),
      latestNonce,
      '"latest" nonce does not',
    );

    const second = await addTransaction(wallet, { from: sender, to: RECIPIENT(71), value: "0x8" });
    const secondDone = await confirmAndWait(wallet, second);
    const firstDone = await eventually(
      () => {
        const tx = txOf(wallet, first.id);
        return tx && FINAL.has(tx.status) ? tx : undefined;
      },
      10_000,
      "first transaction final",
    );
    equal(firstDone.status, "confirmed", "first status");
    equal(secondDone.final.status, "confirmed", "second status");
    equal(hexToBig(firstDone.txParams.nonce), latestNonce, "first nonce");
    equal(hexToBig(secondDone.final.txParams.nonce), latestNonce + 1n, "second nonce");
    const receiptPolls = sentRequests.filter(
      (r) => r.method === "eth_getTransactionReceipt" && r.params[0] === hash,
    );
    check(receiptPolls.length >= 2, `receipt polled until mined (${receiptPolls.length})`);
    const mined = await wallet.request("eth_getTransactionByHash", [hash]);
    equal(mined.blockHash, firstDone.txReceipt.blockHash, "blockHash once mined");
  });
}

await runScenarios(
  {
    add_network: addNetwork,
    eip1559,
    block_tracker: blockTracker,
    balances_nonces: balancesNonces,
    estimate_gas: estimateGas,
    fees,
    send_eip1559: () => sendTyped("0x2"),
    send_legacy: () => sendTyped("0x0"),
    pending: pendingTransactions,
    reverts,
    mined_revert: minedRevert,
    contract_detection: contractDetection,
  },
  { timeoutMs: 45_000 },
);
