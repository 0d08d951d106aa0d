// viem v2 against a Coco Gateway node, over its HTTP and WebSocket transports.
//
//     RPC_URL=http://127.0.0.1:8545 WS_URL=ws://127.0.0.1:8545 node viem.mjs [scenario ...]
//
// Scenarios: http_contracts, json_rpc_account, ws_contracts, watch_http, watch_ws,
// pending_http, pending_ws, fees, simulate_revert.

import {
  BaseError,
  ContractFunctionRevertedError,
  createPublicClient,
  createWalletClient,
  defineChain,
  http,
  parseEther,
  parseEventLogs,
  parseUnits,
  webSocket,
} from "viem";
import { privateKeyToAccount } from "viem/accounts";
import {
  CHAIN_ID,
  DEV_KEYS,
  RPC_URL,
  WS_URL,
  check,
  equal,
  eventually,
  loadArtifact,
  rejects,
  runScenarios,
} from "./lib.mjs";

const TOKEN = loadArtifact("Token");
const EVENTS = loadArtifact("Events");
const SUPPLY = parseUnits("1000000", 18);

const coco = defineChain({
  id: CHAIN_ID,
  name: "Coco Gateway dev",
  nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
  rpcUrls: { default: { http: [RPC_URL], webSocket: [WS_URL] } },
  testnet: true,
});

const owner = privateKeyToAccount(DEV_KEYS[0]);
const other = privateKeyToAccount(DEV_KEYS[1]);

/** An http transport that remembers the JSON-RPC methods it sends, and how many batches. */
function recordingHttp(log, options = {}) {
  return http(RPC_URL, {
    ...options,
    onFetchRequest(_request, init) {
      const body = JSON.parse(init.body);
      if (Array.isArray(body) && body.length > 1) log.batches += 1;
      for (const item of Array.isArray(body) ? body : [body]) log.methods.push(item.method);
    },
  });
}

/** A webSocket transport that counts the subscriptions the node confirmed, by kind. */
function countingWebSocket(confirmed) {
  return (options) => {
    const transport = webSocket(WS_URL)(options);
    const subscribe = transport.value.subscribe;
    transport.value = {
      ...transport.value,
      async subscribe(args) {
        const answer = await subscribe(args);
        const kind = args.params[0];
        confirmed[kind] = (confirmed[kind] ?? 0) + 1;
        return answer;
      },
    };
    return transport;
  };
}

function clients(transport, account = owner) {
  // A short polling interval: waitForTransactionReceipt and http watchers poll.
  const common = { chain: coco, transport, pollingInterval: 100 };
  return {
    pub: createPublicClient(common),
    wallet: createWalletClient({ ...common, account }),
  };
}

async function deploy(pub, wallet, artifact, args = []) {
  const hash = await wallet.deployContract({
    abi: artifact.abi,
    bytecode: artifact.bytecode,
    args,
  });
  const receipt = await pub.waitForTransactionReceipt({ hash, timeout: 15000 });
  equal(receipt.status, "success", `${artifact.contractName} deployment status`);
  check(receipt.contractAddress, `${artifact.contractName} receipt has a contractAddress`);
  const code = await pub.getCode({ address: receipt.contractAddress });
  equal(code, artifact.deployedBytecode, `${artifact.contractName} code at its address`);
  return receipt.contractAddress;
}

/** Deploy, write, wait, read: the core dapp loop, over whichever transport is given. */
async function contractRoundTrip(pub, wallet, label) {
  equal(await pub.getChainId(), CHAIN_ID, `${label}: eth_chainId`);
  equal(await wallet.getChainId(), CHAIN_ID, `${label}: wallet eth_chainId`);
  const token = await deploy(pub, wallet, TOKEN, ["Coco Token", "COCO", SUPPLY]);
  const read = (functionName, args = []) =>
    pub.readContract({ address: token, abi: TOKEN.abi, functionName, args });
  equal(await read("name"), "Coco Token", `${label}: name()`);
  equal(await read("decimals"), 18, `${label}: decimals()`);
  equal(await read("balanceOf", [owner.address]), SUPPLY, `${label}: deployer balance`);

  const amount = parseUnits("42.5", 18);
  const hash = await wallet.writeContract({
    address: token,
    abi: TOKEN.abi,
    functionName: "transfer",
    args: [other.address, amount],
  });
  const receipt = await pub.waitForTransactionReceipt({ hash, timeout: 15000 });
  equal(receipt.status, "success", `${label}: transfer status`);
  equal(receipt.transactionHash, hash, `${label}: receipt transactionHash`);
  const [transfer, ...rest] = parseEventLogs({ abi: TOKEN.abi, logs: receipt.logs });
  equal(rest.length, 0, `${label}: one log in the transfer receipt`);
  equal(transfer.eventName, "Transfer", `${label}: receipt event`);
  equal(transfer.args.from, owner.address, `${label}: Transfer.from`);
  equal(transfer.args.to, other.address, `${label}: Transfer.to`);
  equal(transfer.args.value, amount, `${label}: Transfer.value`);

  equal(await read("balanceOf", [owner.address]), SUPPLY - amount, `${label}: sender balance`);
  equal(await read("balanceOf", [other.address]), amount, `${label}: receiver balance`);

  const tx = await pub.getTransaction({ hash });
  equal(tx.from, owner.address, `${label}: getTransaction().from`);
  equal(tx.blockNumber, receipt.blockNumber, `${label}: getTransaction().blockNumber`);
  const block = await pub.getBlock({ blockNumber: receipt.blockNumber });
  equal(block.hash, receipt.blockHash, `${label}: block hash`);
  check(block.transactions.includes(hash), `${label}: block lists the transfer`);
  const events = await pub.getContractEvents({
    address: token,
    abi: TOKEN.abi,
    eventName: "Transfer",
    fromBlock: 0n,
  });
  equal(events.length, 2, `${label}: Transfer events from eth_getLogs (mint and transfer)`);
  equal(events[1].transactionHash, hash, `${label}: second Transfer's transactionHash`);
}

async function httpContracts() {
  const log = { methods: [], batches: 0 };
  const { pub, wallet } = clients(recordingHttp(log, { batch: true }));
  await contractRoundTrip(pub, wallet, "http");
  const batchesBefore = log.batches;
  // With batch: true, reads made together go out as one JSON-RPC batch.
  const [balance, number, count] = await Promise.all([
    pub.getBalance({ address: owner.address }),
    pub.getBlockNumber({ cacheTime: 0 }),
    pub.getTransactionCount({ address: owner.address }),
  ]);
  check(balance > 0n, "owner balance > 0");
  check(number > 0n, "block number > 0");
  check(count >= 2, `owner nonce >= 2 (${count})`);
  check(log.batches > batchesBefore, "parallel reads went out as a JSON-RPC batch");
}

async function wsContracts() {
  const { pub, wallet } = clients(webSocket(WS_URL));
  try {
    await contractRoundTrip(pub, wallet, "webSocket");
  } finally {
    await (await pub.transport.getRpcClient()).close();
    await (await wallet.transport.getRpcClient()).close();
  }
}

async function jsonRpcAccount() {
  // The node's unlocked dev accounts: eth_accounts, then eth_sendTransaction.
  const { pub } = clients(http(RPC_URL));
  const addresses = await createWalletClient({
    chain: coco,
    transport: http(RPC_URL),
  }).getAddresses();
  equal(addresses[2], privateKeyToAccount(DEV_KEYS[2]).address, "eth_accounts[2]");
  const wallet = createWalletClient({
    chain: coco,
    transport: http(RPC_URL),
    account: addresses[2],
  });
  const token = await deploy(pub, wallet, TOKEN, ["Node Signed", "NODE", 1000n]);
  const hash = await wallet.writeContract({
    address: token,
    abi: TOKEN.abi,
    functionName: "transfer",
    args: [other.address, 300n],
  });
  const receipt = await pub.waitForTransactionReceipt({ hash, timeout: 15000 });
  equal(receipt.status, "success", "eth_sendTransaction transfer status");
  equal(receipt.from, addresses[2], "receipt.from");
  const balance = await pub.readContract({
    address: token,
    abi: TOKEN.abi,
    functionName: "balanceOf",
    args: [other.address],
  });
  equal(balance, 300n, "balance after eth_sendTransaction transfer");
}

async function emitValues(pub, wallet, address, values) {
  const hashes = [];
  for (const value of values) {
    const hash = await wallet.writeContract({
      address,
      abi: EVENTS.abi,
      functionName: "setValue",
      args: [value],
    });
    await pub.waitForTransactionReceipt({ hash, timeout: 15000 });
    hashes.push(hash);
  }
  return hashes;
}

async function watchHttp() {
  const methods = [];
  const { pub, wallet } = clients(recordingHttp({ methods, batches: 0 }));
  const address = await deploy(pub, wallet, EVENTS);
  const logs = [];
  const errors = [];
  const unwatch = pub.watchContractEvent({
    address,
    abi: EVENTS.abi,
    eventName: "ValueChanged",
    onLogs: (batch) => logs.push(...batch),
    onError: (err) => errors.push(err),
  });
  try {
    // The first poll installs the filter; a later one asks for its changes.
    await eventually(
      () => methods.includes("eth_getFilterChanges"),
      10000,
      "watchContractEvent polling its filter",
    );
    const hashes = await emitValues(pub, wallet, address, [5n, 6n]);
    await eventually(
      () => logs.length >= 2,
      10000,
      "two ValueChanged logs via eth_getFilterChanges",
    );
    equal(errors.map(String), [], "watchContractEvent errors");
    equal(
      logs.map((log) => log.args.newValue),
      [5n, 6n],
      "ValueChanged.newValue values",
    );
    equal(logs[0].args.oldValue, 0n, "first ValueChanged.oldValue");
    equal(logs[0].args.who, owner.address, "ValueChanged.who");
    equal(logs[0].eventName, "ValueChanged", "log eventName");
    equal(
      logs.map((log) => log.transactionHash),
      hashes,
      "transaction hashes of the logs",
    );
    check(methods.includes("eth_newFilter"), "watched with eth_newFilter");
    check(!methods.includes("eth_getLogs"), "no fallback to eth_getLogs polling");
  } finally {
    await unwatch();
  }
  check(methods.includes("eth_uninstallFilter"), "unwatch uninstalled the filter");

  // A filter made by hand, read both ways.
  const filter = await pub.createContractEventFilter({
    address,
    abi: EVENTS.abi,
    eventName: "Note",
  });
  const hash = await wallet.writeContract({
    address,
    abi: EVENTS.abi,
    functionName: "note",
    args: ["hello from viem"],
  });
  await pub.waitForTransactionReceipt({ hash, timeout: 15000 });
  const changes = await pub.getFilterChanges({ filter });
  equal(
    changes.map((log) => log.args.text),
    ["hello from viem"],
    "getFilterChanges Note texts",
  );
  const all = await pub.getFilterLogs({ filter });
  equal(
    all.map((log) => log.args.from),
    [owner.address],
    "getFilterLogs Note senders",
  );
  equal(await pub.uninstallFilter({ filter }), true, "uninstallFilter");

  // A block filter reports the hashes of new blocks.
  const blocks = await pub.createBlockFilter();
  const again = await emitValues(pub, wallet, address, [8n]);
  const receipt = await pub.getTransactionReceipt({ hash: again[0] });
  const hashes = await pub.getFilterChanges({ filter: blocks });
  check(hashes.includes(receipt.blockHash), "block filter reported the new block's hash");
  await pub.uninstallFilter({ filter: blocks });
}

async function watchWs() {
  const confirmed = {};
  const { pub } = clients(countingWebSocket(confirmed));
  const { pub: httpPub, wallet } = clients(http(RPC_URL));
  const address = await deploy(httpPub, wallet, EVENTS);
  const logs = [];
  const blocks = [];
  const errors = [];
  const unwatchLogs = pub.watchContractEvent({
    address,
    abi: EVENTS.abi,
    eventName: "ValueChanged",
    onLogs: (batch) => logs.push(...batch),
    onError: (err) => errors.push(err),
  });
  const unwatchBlocks = pub.watchBlockNumber({
    onBlockNumber: (n) => blocks.push(n),
    onError: (err) => errors.push(err),
  });
  try {
    await eventually(
      () => confirmed.logs >= 1 && confirmed.newHeads >= 1,
      10000,
      "eth_subscribe logs and newHeads confirmed",
    );
    const hashes = await emitValues(httpPub, wallet, address, [21n, 22n]);
    await eventually(() => logs.length >= 2, 10000, "two ValueChanged logs via eth_subscribe");
    equal(errors.map(String), [], "watch errors");
    equal(
      logs.map((log) => log.args.newValue),
      [21n, 22n],
      "ValueChanged.newValue values",
    );
    equal(logs[1].args.oldValue, 21n, "second ValueChanged.oldValue");
    equal(
      logs.map((log) => log.transactionHash),
      hashes,
      "transaction hashes of the logs",
    );
    check(typeof logs[0].blockNumber === "bigint", "log blockNumber is formatted");
    await eventually(() => blocks.length >= 1, 10000, "a block number from newHeads");
  } finally {
    unwatchLogs();
    unwatchBlocks();
    await (await pub.transport.getRpcClient()).close();
  }
}

async function watchPending(transport, ready, label) {
  const { pub } = clients(transport);
  const { pub: httpPub, wallet } = clients(http(RPC_URL), privateKeyToAccount(DEV_KEYS[3]));
  const hashes = [];
  const errors = [];
  const unwatch = pub.watchPendingTransactions({
    onTransactions: (batch) => hashes.push(...batch),
    onError: (err) => errors.push(err),
  });
  try {
    await eventually(ready, 10000, `${label}: the pending-transaction watch in place`);
    // Three transactions, each awaited, so every one is reported or missed on its own.
    const sent = [];
    for (let i = 0; i < 3; i++) {
      const hash = await wallet.sendTransaction({ to: other.address, value: 1n });
      await httpPub.waitForTransactionReceipt({ hash, timeout: 15000 });
      sent.push(hash);
    }
    await eventually(
      () => sent.every((hash) => hashes.includes(hash)),
      3000,
      () => `${label}: hashes ${sent.join(", ")} (reported: ${hashes.join(", ") || "none"})`,
    );
    equal(errors.map(String), [], `${label}: watchPendingTransactions errors`);
  } finally {
    unwatch();
    if (pub.transport.type === "webSocket") await (await pub.transport.getRpcClient()).close();
  }
}

async function pendingHttp() {
  // watchPendingTransactions over http: eth_newPendingTransactionFilter, then
  // eth_getFilterChanges every polling interval.
  const methods = [];
  const transport = recordingHttp({ methods, batches: 0 });
  await watchPending(transport, () => methods.includes("eth_getFilterChanges"), "http");
}

async function pendingWs() {
  // watchPendingTransactions over webSocket: eth_subscribe newPendingTransactions.
  const confirmed = {};
  const transport = countingWebSocket(confirmed);
  await watchPending(transport, () => confirmed.newPendingTransactions >= 1, "webSocket");
}

async function fees() {
  const { pub, wallet } = clients(http(RPC_URL));
  const to = privateKeyToAccount(DEV_KEYS[2]).address;

  const eip1559 = await pub.estimateFeesPerGas();
  check(eip1559.maxFeePerGas > 0n, `maxFeePerGas > 0 (${eip1559.maxFeePerGas})`);
  check(
    eip1559.maxFeePerGas >= eip1559.maxPriorityFeePerGas,
    "maxFeePerGas >= maxPriorityFeePerGas",
  );
  const priority = await pub.estimateMaxPriorityFeePerGas();
  check(priority >= 0n, `estimateMaxPriorityFeePerGas (${priority})`);
  const legacy = await pub.estimateFeesPerGas({ type: "legacy" });
  check(legacy.gasPrice > 0n, `legacy gasPrice > 0 (${legacy.gasPrice})`);
  const gasPrice = await pub.getGasPrice();
  check(gasPrice > 0n, `eth_gasPrice > 0 (${gasPrice})`);
  const history = await pub.getFeeHistory({ blockCount: 2, rewardPercentiles: [25, 75] });
  check(history.baseFeePerGas.length >= 1, "feeHistory baseFeePerGas");

  const before = await pub.getBalance({ address: to });
  const h1 = await wallet.sendTransaction({
    to,
    value: parseEther("0.5"),
    maxFeePerGas: eip1559.maxFeePerGas,
    maxPriorityFeePerGas: eip1559.maxPriorityFeePerGas,
  });
  const r1 = await pub.waitForTransactionReceipt({ hash: h1, timeout: 15000 });
  equal(r1.type, "eip1559", "EIP-1559 receipt type");
  const t1 = await pub.getTransaction({ hash: h1 });
  equal(t1.type, "eip1559", "EIP-1559 transaction type");
  equal(t1.maxFeePerGas, eip1559.maxFeePerGas, "transaction maxFeePerGas");
  check(r1.effectiveGasPrice <= eip1559.maxFeePerGas, "effectiveGasPrice <= maxFeePerGas");

  const h2 = await wallet.sendTransaction({
    to,
    value: 7n,
    gasPrice: legacy.gasPrice,
    type: "legacy",
  });
  const r2 = await pub.waitForTransactionReceipt({ hash: h2, timeout: 15000 });
  equal(r2.type, "legacy", "legacy receipt type");
  equal(r2.effectiveGasPrice, legacy.gasPrice, "legacy effectiveGasPrice");
  const t2 = await pub.getTransaction({ hash: h2 });
  equal(t2.type, "legacy", "legacy transaction type");
  equal(t2.gasPrice, legacy.gasPrice, "legacy transaction gasPrice");

  // Fees left to viem entirely.
  const h3 = await wallet.sendTransaction({ to, value: 1n });
  equal(
    (await pub.waitForTransactionReceipt({ hash: h3, timeout: 15000 })).status,
    "success",
    "auto-fee send",
  );

  equal(
    await pub.getBalance({ address: to }),
    before + parseEther("0.5") + 8n,
    "recipient balance",
  );
}

/** The ContractFunctionRevertedError inside a viem error, or a failure saying what came instead. */
function revertedError(err, what) {
  check(err instanceof BaseError, `${what}: expected a viem BaseError, got ${err}`);
  const reverted = err.walk((e) => e instanceof ContractFunctionRevertedError);
  check(reverted, `${what}: no ContractFunctionRevertedError in:\n${err.message}`);
  return reverted;
}

async function simulateRevert() {
  const { pub, wallet } = clients(http(RPC_URL));
  const events = await deploy(pub, wallet, EVENTS);
  const token = await deploy(pub, wallet, TOKEN, ["Coco Token", "COCO", 1000n]);
  const simulate = (address, abi, functionName, args = []) =>
    pub.simulateContract({ account: owner, address, abi, functionName, args });

  let err = await rejects(() => simulate(events, EVENTS.abi, "failRequire"), "failRequire");
  let reverted = revertedError(err, "failRequire");
  equal(reverted.reason, "Events: always fails", "failRequire reason");
  equal(reverted.data?.errorName, "Error", "failRequire errorName");

  err = await rejects(() => simulate(events, EVENTS.abi, "failCustom", [42n]), "failCustom");
  reverted = revertedError(err, "failCustom");
  equal(reverted.data?.errorName, "Custom", "failCustom errorName");
  equal(reverted.data?.args, [42n, "custom failure"], "failCustom args");

  err = await rejects(() => simulate(events, EVENTS.abi, "failPanic"), "failPanic");
  reverted = revertedError(err, "failPanic");
  equal(reverted.data?.errorName, "Panic", "failPanic errorName");
  equal(reverted.data?.args, [0x12n], "failPanic code");

  err = await rejects(() => simulate(events, EVENTS.abi, "failPlain"), "failPlain");
  reverted = revertedError(err, "failPlain");
  equal(reverted.data, undefined, "failPlain has no decoded data");

  err = await rejects(
    () => simulate(token, TOKEN.abi, "transfer", [other.address, 5000n]),
    "transfer(5000)",
  );
  reverted = revertedError(err, "transfer(5000)");
  equal(reverted.data?.errorName, "InsufficientBalance", "transfer errorName");
  equal(reverted.data?.args, [owner.address, 1000n, 5000n], "InsufficientBalance args");

  // writeContract without simulating first fails in eth_estimateGas, decoded the same way.
  err = await rejects(
    () =>
      wallet.writeContract({
        address: token,
        abi: TOKEN.abi,
        functionName: "transfer",
        args: [other.address, 5000n],
      }),
    "writeContract transfer(5000)",
  );
  equal(
    revertedError(err, "writeContract").data?.errorName,
    "InsufficientBalance",
    "write errorName",
  );

  // A simulation that succeeds hands back a request writeContract can send.
  const { request, result } = await simulate(token, TOKEN.abi, "transfer", [other.address, 10n]);
  equal(result, true, "simulated transfer result");
  const hash = await wallet.writeContract(request);
  equal(
    (await pub.waitForTransactionReceipt({ hash, timeout: 15000 })).status,
    "success",
    "simulated write",
  );
}

await runScenarios({
  http_contracts: httpContracts,
  json_rpc_account: jsonRpcAccount,
  ws_contracts: wsContracts,
  watch_http: watchHttp,
  watch_ws: watchWs,
  pending_http: pendingHttp,
  pending_ws: pendingWs,
  fees,
  simulate_revert: simulateRevert,
});
