// ethers v6 against a Coco Gateway node: what a dapp built on ethers does.
//
//     RPC_URL=http://127.0.0.1:8545 WS_URL=ws://127.0.0.1:8545 node ethers.mjs [scenario ...]
//
// Scenarios: deploy_transfer, json_rpc_signer, events_http, reverts, fee_types, nonce_manager,
// pending_http, websocket.

import {
  ContractFactory,
  JsonRpcProvider,
  NonceManager,
  Wallet,
  WebSocketProvider,
  isError,
  parseEther,
  parseUnits,
} from "ethers";
import {
  CHAIN_ID,
  DEV_KEYS,
  WS_URL,
  RPC_URL,
  check,
  equal,
  eventually,
  loadArtifact,
  rejects,
  runScenarios,
  withTimeout,
} from "./lib.mjs";

const TOKEN = loadArtifact("Token");
const EVENTS = loadArtifact("Events");
const SUPPLY = parseUnits("1000000", 18);

/** JsonRpcProvider with its default batching, remembering each HTTP request it sent. */
class RecordingProvider extends JsonRpcProvider {
  constructor(url) {
    // Batching stays at its defaults. Two options change, as for any automining dev node:
    // - pollingInterval: the default 4 s would make event tests slow;
    // - cacheTimeout: ethers shares identical requests for 250 ms, so two sends from one
    //   Wallet within 250 ms reuse one eth_getTransactionCount answer (nonce too low), and
    //   eth_blockNumber right after a receipt can be older than the receipt's block
    //   (ethers.js issue 4549: the maintainers' advice for such nodes is cacheTimeout -1).
    super(url, CHAIN_ID, { pollingInterval: 200, cacheTimeout: -1 });
    this.requests = []; // one entry per HTTP request: the list of methods in it
    this.installedFilters = 0;
  }

  async _send(payload) {
    const batch = Array.isArray(payload) ? payload : [payload];
    const answers = await super._send(payload);
    this.requests.push(batch.map((item) => item.method));
    for (const answer of answers) {
      const asked = batch.find((item) => item.id === answer.id);
      if (asked?.method === "eth_newFilter" && answer.result) this.installedFilters += 1;
    }
    return answers;
  }
}

/** WebSocketProvider that counts the subscriptions the node has confirmed, by kind. */
class CountingWebSocketProvider extends WebSocketProvider {
  constructor(url) {
    super(url, CHAIN_ID);
    this.confirmed = {};
  }

  async send(method, params) {
    const result = await super.send(method, params);
    if (method === "eth_subscribe") {
      this.confirmed[params[0]] = (this.confirmed[params[0]] ?? 0) + 1;
    }
    return result;
  }
}

function connect(key = DEV_KEYS[0]) {
  const provider = new RecordingProvider(RPC_URL);
  return { provider, wallet: new Wallet(key, provider) };
}

async function deploy(artifact, signer, ...args) {
  const factory = new ContractFactory(artifact.abi, artifact.bytecode, signer);
  const contract = await factory.deploy(...args);
  await contract.waitForDeployment();
  const receipt = await contract.deploymentTransaction().wait();
  equal(receipt.status, 1, `${artifact.contractName} deployment receipt status`);
  equal(receipt.contractAddress, await contract.getAddress(), "receipt contractAddress");
  const code = await signer.provider.getCode(await contract.getAddress());
  equal(code, artifact.deployedBytecode, `${artifact.contractName} code at its address`);
  return contract;
}

async function deployTransfer() {
  const { provider, wallet } = connect();
  const other = new Wallet(DEV_KEYS[1]).address;

  const network = await provider.getNetwork();
  equal(network.chainId, BigInt(CHAIN_ID), "getNetwork().chainId");

  const token = await deploy(TOKEN, wallet, "Coco Token", "COCO", SUPPLY);
  const events = await deploy(EVENTS, wallet);
  equal(await token.name(), "Coco Token", "name()");
  equal(await token.symbol(), "COCO", "symbol()");
  equal(await token.decimals(), 18n, "decimals()");
  equal(await token.balanceOf(wallet.address), SUPPLY, "deployer balance");

  const amount = parseUnits("1234.5", 18);
  const tx = await token.transfer(other, amount);
  const receipt = await tx.wait();
  equal(receipt.status, 1, "transfer receipt status");
  equal(receipt.hash, tx.hash, "receipt hash");
  const transfers = receipt.logs.map((log) => token.interface.parseLog(log)).filter(Boolean);
  equal(transfers.length, 1, "Transfer logs in the receipt");
  equal(transfers[0].name, "Transfer", "receipt log event");
  equal(transfers[0].args.from, wallet.address, "Transfer.from");
  equal(transfers[0].args.to, other, "Transfer.to");
  equal(transfers[0].args.value, amount, "Transfer.value");

  // Several reads at once: the provider batches them into one HTTP request.
  const before = provider.requests.length;
  const [mine, theirs, supply, value, block] = await Promise.all([
    token.balanceOf(wallet.address),
    token.balanceOf(other),
    token.totalSupply(),
    events.value(),
    provider.getBlockNumber(),
  ]);
  equal(mine, SUPPLY - amount, "sender balance after transfer");
  equal(theirs, amount, "receiver balance after transfer");
  equal(supply, SUPPLY, "totalSupply()");
  equal(value, 0n, "Events.value()");
  check(
    block >= receipt.blockNumber,
    `block number ${block} >= receipt block ${receipt.blockNumber}`,
  );
  const batched = provider.requests.slice(before).filter((methods) => methods.length > 1);
  check(batched.length > 0, "parallel reads went out as a JSON-RPC batch");

  // The receipt's block is a real block holding the transaction.
  const mined = await provider.getBlock(receipt.blockNumber, true);
  equal(mined.hash, receipt.blockHash, "block hash");
  check(
    mined.prefetchedTransactions.some((t) => t.hash === tx.hash),
    "block lists the transfer",
  );
  const fetched = await provider.getTransaction(tx.hash);
  equal(fetched.from, wallet.address, "getTransaction().from");
  equal(fetched.blockNumber, receipt.blockNumber, "getTransaction().blockNumber");
  provider.destroy();
}

async function jsonRpcSigner() {
  // The node's unlocked dev accounts, used through eth_accounts and eth_sendTransaction.
  const provider = new RecordingProvider(RPC_URL);
  const accounts = await provider.listAccounts();
  check(accounts.length >= 2, `eth_accounts lists the dev accounts (${accounts.length})`);
  const signer = await provider.getSigner(1);
  equal(signer.address, new Wallet(DEV_KEYS[1]).address, "getSigner(1).address");
  const token = await deploy(TOKEN, signer, "Node Signed", "NODE", 1000n);
  const to = new Wallet(DEV_KEYS[2]).address;
  const tx = await token.transfer(to, 250n);
  equal(tx.from, signer.address, "transfer sent from the node's account");
  equal((await tx.wait()).status, 1, "eth_sendTransaction transfer status");
  equal(await token.balanceOf(to), 250n, "balance after eth_sendTransaction transfer");
  const before = await provider.getBalance(to);
  const send = await signer.sendTransaction({ to, value: 12345n });
  await send.wait();
  equal(await provider.getBalance(to), before + 12345n, "value sent with eth_sendTransaction");
  check(provider.requests.flat().includes("eth_sendTransaction"), "used eth_sendTransaction");
  provider.destroy();
}

async function eventsHttp() {
  const { provider, wallet } = connect();
  const events = await deploy(EVENTS, wallet);
  const token = await deploy(TOKEN, wallet, "Coco Token", "COCO", SUPPLY);
  const other = new Wallet(DEV_KEYS[1]).address;

  const seen = [];
  const notes = [];
  const transfers = [];
  await events.on("ValueChanged", (who, oldValue, newValue, payload) => {
    seen.push({ who, oldValue, newValue, log: payload.log });
  });
  await events.on("Note", (from, text) => notes.push({ from, text }));
  // With a topic filter (not an event name) ethers hands the listener only the raw payload.
  await token.on(token.filters.Transfer(wallet.address), (payload) => {
    transfers.push(token.interface.parseLog(payload.log).args);
  });
  // contract.on resolves before the node has the filters: wait for all three to be installed.
  await eventually(() => provider.installedFilters >= 3, 10000, "three eth_newFilter answers");

  const r1 = await (await events.setValue(7)).wait();
  const r2 = await (await events.setValue(11)).wait();
  await (await events.note("hello from ethers")).wait();
  await (await token.transfer(other, 5n)).wait();
  // ethers polls a filter on the "block" event after its previous poll has finished; when
  // the last block arrives while a poll is still running (an automining node seals each
  // transaction at once), that block's event is missed until another block comes, on
  // Anvil as here. One more (log-free) block makes the last poll happen.
  await (await wallet.sendTransaction({ to: wallet.address, value: 0n })).wait();

  await eventually(() => seen.length >= 2, 10000, "two ValueChanged events via filter polling");
  equal(seen.length, 2, "ValueChanged events received");
  equal(seen[0].who, wallet.address, "ValueChanged.who");
  equal(seen[0].oldValue, 0n, "first ValueChanged.oldValue");
  equal(seen[0].newValue, 7n, "first ValueChanged.newValue");
  equal(seen[1].oldValue, 7n, "second ValueChanged.oldValue");
  equal(seen[1].newValue, 11n, "second ValueChanged.newValue");
  equal(seen[0].log.transactionHash, r1.hash, "first event's transactionHash");
  equal(seen[1].log.blockNumber, r2.blockNumber, "second event's blockNumber");
  await eventually(() => notes.length >= 1, 10000, "the Note event");
  equal(notes[0].text, "hello from ethers", "Note.text");
  await eventually(() => transfers.length >= 1, 10000, "the Transfer event (indexed topic filter)");
  equal(transfers[0].to, other, "Transfer.to");
  equal(transfers[0].value, 5n, "Transfer.value");

  const polled = provider.requests.flat();
  check(polled.includes("eth_newFilter"), "listened with eth_newFilter");
  check(polled.includes("eth_getFilterChanges"), "polled with eth_getFilterChanges");

  // queryFilter (eth_getLogs) sees the same history.
  const history = await events.queryFilter(events.filters.ValueChanged(), r1.blockNumber);
  equal(
    history.map((e) => e.args.newValue),
    [7n, 11n],
    "queryFilter ValueChanged values",
  );

  await events.removeAllListeners();
  await token.removeAllListeners();
  equal(await events.listenerCount(), 0, "listeners left after removeAllListeners");
  provider.destroy();
}

async function reverts() {
  const { provider, wallet } = connect();
  const events = await deploy(EVENTS, wallet);
  const token = await deploy(TOKEN, wallet, "Coco Token", "COCO", 1000n);
  const other = new Wallet(DEV_KEYS[1]).address;

  // require(false, "...") through eth_call.
  let err = await rejects(() => events.failRequire(), "failRequire()");
  check(isError(err, "CALL_EXCEPTION"), `failRequire error code CALL_EXCEPTION, got ${err.code}`);
  equal(err.reason, "Events: always fails", "failRequire reason");
  equal(err.revert?.name, "Error", "failRequire revert.name");
  equal(err.revert?.args?.[0], "Events: always fails", "failRequire revert.args[0]");

  // A custom error, decoded with the contract's interface.
  err = await rejects(() => events.failCustom(42), "failCustom(42)");
  check(isError(err, "CALL_EXCEPTION"), `failCustom error code CALL_EXCEPTION, got ${err.code}`);
  equal(err.revert?.name, "Custom", "failCustom revert.name");
  equal(err.revert?.args?.[0], 42n, "Custom.code");
  equal(err.revert?.args?.[1], "custom failure", "Custom.why");
  equal(events.interface.parseError(err.data)?.name, "Custom", "interface.parseError(err.data)");

  // Panic(0x12) and a revert with no data.
  err = await rejects(() => events.failPanic(), "failPanic()");
  equal(err.revert?.name, "Panic", "failPanic revert.name");
  equal(err.revert?.args?.[0], 0x12n, "Panic code");
  err = await rejects(() => events.failPlain(), "failPlain()");
  check(isError(err, "CALL_EXCEPTION"), `failPlain error code CALL_EXCEPTION, got ${err.code}`);
  equal(err.data, "0x", "failPlain revert data");
  equal(err.revert, null, "failPlain has no revert");

  // Token's own custom error, from staticCall and from a send (which fails in estimateGas).
  err = await rejects(() => token.transfer.staticCall(other, 5000n), "transfer.staticCall(5000)");
  equal(err.revert?.name, "InsufficientBalance", "staticCall revert.name");
  equal(err.revert?.args?.[0], wallet.address, "InsufficientBalance.account");
  equal(err.revert?.args?.[1], 1000n, "InsufficientBalance.balance");
  equal(err.revert?.args?.[2], 5000n, "InsufficientBalance.needed");

  const nonce = await provider.getTransactionCount(wallet.address, "pending");
  err = await rejects(() => token.transfer(other, 5000n), "transfer(5000) sent");
  check(isError(err, "CALL_EXCEPTION"), `send revert code CALL_EXCEPTION, got ${err.code}`);
  const decoded = token.interface.parseError(err.data);
  equal(decoded?.name, "InsufficientBalance", "send: parseError(err.data).name");
  equal(decoded?.args?.[2], 5000n, "send: InsufficientBalance.needed");
  err = await rejects(() => events.failRequire.estimateGas(), "failRequire.estimateGas()");
  equal(err.reason, "Events: always fails", "estimateGas revert reason");
  equal(
    await provider.getTransactionCount(wallet.address, "pending"),
    nonce,
    "no transaction went out for the rejected sends",
  );

  // A reverted transaction that is mined anyway (gas limit given, so no estimate).
  const tx = await events.failRequire.populateTransaction();
  const sent = await wallet.sendTransaction({ ...tx, gasLimit: 100000n });
  err = await rejects(() => sent.wait(), "wait() on a mined revert");
  check(isError(err, "CALL_EXCEPTION"), `wait() error code CALL_EXCEPTION, got ${err.code}`);
  equal(err.receipt?.status, 0, "reverted receipt status");
  provider.destroy();
}

async function feeTypes() {
  const { provider, wallet } = connect();
  const to = new Wallet(DEV_KEYS[2]).address;

  const fees = await provider.getFeeData();
  check(fees.gasPrice > 0n, `getFeeData().gasPrice > 0 (${fees.gasPrice})`);
  check(fees.maxFeePerGas > 0n, `getFeeData().maxFeePerGas > 0 (${fees.maxFeePerGas})`);
  check(fees.maxPriorityFeePerGas != null, "getFeeData().maxPriorityFeePerGas is set");
  const latest = await provider.getBlock("latest");
  check(latest.baseFeePerGas != null, "latest block has baseFeePerGas");

  // EIP-1559, fees filled in by ethers.
  const before = await provider.getBalance(to);
  const auto = await wallet.sendTransaction({ to, value: parseEther("0.25") });
  equal(auto.type, 2, "default transaction type");
  const autoReceipt = await auto.wait();
  equal(autoReceipt.status, 1, "type-2 receipt status");
  equal(autoReceipt.type, 2, "type-2 receipt type");

  // EIP-1559 with explicit fees.
  const explicit = await wallet.sendTransaction({
    to,
    value: 1n,
    type: 2,
    maxFeePerGas: fees.maxFeePerGas,
    maxPriorityFeePerGas: fees.maxPriorityFeePerGas,
  });
  const explicitReceipt = await explicit.wait();
  const seen2 = await provider.getTransaction(explicit.hash);
  equal(seen2.type, 2, "getTransaction().type for type 2");
  equal(seen2.maxFeePerGas, fees.maxFeePerGas, "getTransaction().maxFeePerGas");
  equal(
    seen2.maxPriorityFeePerGas,
    fees.maxPriorityFeePerGas,
    "getTransaction().maxPriorityFeePerGas",
  );
  check(
    explicitReceipt.gasPrice <= fees.maxFeePerGas,
    `effective gas price ${explicitReceipt.gasPrice} <= maxFeePerGas ${fees.maxFeePerGas}`,
  );

  // Legacy (type 0) with gasPrice.
  const legacy = await wallet.sendTransaction({ to, value: 2n, type: 0, gasPrice: fees.gasPrice });
  equal(legacy.type, 0, "legacy transaction type");
  const legacyReceipt = await legacy.wait();
  equal(legacyReceipt.status, 1, "legacy receipt status");
  equal(legacyReceipt.type, 0, "legacy receipt type");
  equal(legacyReceipt.gasPrice, fees.gasPrice, "legacy receipt effectiveGasPrice");
  const seen0 = await provider.getTransaction(legacy.hash);
  equal(seen0.type, 0, "getTransaction().type for legacy");
  equal(seen0.gasPrice, fees.gasPrice, "getTransaction().gasPrice for legacy");
  equal(seen0.chainId, BigInt(CHAIN_ID), "legacy transaction chainId (EIP-155)");

  equal(await provider.getBalance(to), before + parseEther("0.25") + 3n, "recipient balance");
  provider.destroy();
}

async function nonceManager() {
  const { provider, wallet } = connect(DEV_KEYS[3]);
  const manager = new NonceManager(wallet);
  const to = new Wallet(DEV_KEYS[1]).address;
  const start = await provider.getTransactionCount(wallet.address, "pending");

  const count = 6;
  const sent = await Promise.all(
    Array.from({ length: count }, (_, i) => manager.sendTransaction({ to, value: BigInt(i + 1) })),
  );
  const receipts = await Promise.all(sent.map((tx) => tx.wait()));
  equal(
    sent.map((tx) => tx.nonce).sort((a, b) => a - b),
    Array.from({ length: count }, (_, i) => start + i),
    "nonces of the parallel sends",
  );
  check(
    receipts.every((r) => r.status === 1),
    "every parallel send succeeded",
  );
  equal(new Set(sent.map((tx) => tx.hash)).size, count, "distinct transaction hashes");
  equal(
    await provider.getTransactionCount(wallet.address, "latest"),
    start + count,
    "account nonce after the sends",
  );
  // The manager keeps counting after the burst.
  const next = await manager.sendTransaction({ to, value: 1n });
  equal(next.nonce, start + count, "nonce after the burst");
  await next.wait();
  provider.destroy();
}

async function pendingHttp() {
  // provider.on("pending") over HTTP: eth_newPendingTransactionFilter, polled on each block.
  const { provider, wallet } = connect(DEV_KEYS[2]);
  const seen = [];
  await provider.on("pending", (hash) => seen.push(hash));
  await eventually(
    () => provider.requests.flat().includes("eth_getFilterChanges"),
    10000,
    "the pending-transaction filter installed and polled",
  );
  // Three transactions, each awaited, so every one is reported or missed on its own.
  const hashes = [];
  for (let i = 0; i < 3; i++) {
    const tx = await wallet.sendTransaction({ to: wallet.address, value: 1n });
    await tx.wait();
    hashes.push(tx.hash);
  }
  // ethers fetches a filter's changes on a "block" event, and re-arms with once("block")
  // after each fetch. When its own listener is the only one, ethers drops its block poller
  // on each event and builds a new one on re-arming, whose first eth_blockNumber becomes the
  // baseline without an event. A transaction sent and sealed between the previous fetch and
  // that baseline (an automining node seals at once) is then fetched only after a later
  // block, on Anvil as here: with no later block, never. A live chain keeps sealing blocks;
  // so does this scenario (evm_mine, empty blocks) until every hash has been reported.
  await eventually(
    async () => {
      if (hashes.every((hash) => seen.includes(hash))) return true;
      await provider.send("evm_mine", []);
      return false;
    },
    10000,
    () =>
      `hashes ${hashes.join(", ")} from eth_getFilterChanges on a pending-transaction filter ` +
      `(reported: ${seen.length ? seen.join(", ") : "none"})`,
    250,
  );
  // geth's semantics: each hash once, at the first poll after the transaction arrived
  equal(new Set(seen).size, seen.length, `hashes reported once each (reported: ${seen})`);
  await provider.removeAllListeners();
  provider.destroy();
}

async function websocket() {
  const ws = new CountingWebSocketProvider(WS_URL);
  const { provider, wallet } = connect();
  try {
    const number = await withTimeout(ws.getBlockNumber(), 10000, "WebSocket getBlockNumber");
    check(Number.isInteger(number) && number >= 0, `WebSocket block number ${number}`);
    equal((await ws.getNetwork()).chainId, BigInt(CHAIN_ID), "WebSocket chainId");

    const events = await deploy(EVENTS, wallet);
    const address = await events.getAddress();
    const watched = events.connect(ws);
    equal(await watched.value(), 0n, "value() over WebSocket");

    const blocks = [];
    await ws.on("block", (n) => blocks.push(n));
    const pending = [];
    await ws.on("pending", (hash) => pending.push(hash));
    const seen = [];
    await watched.on("ValueChanged", (who, oldValue, newValue) => seen.push(newValue));
    // contract.on resolves before the node has confirmed the subscriptions: wait for them.
    await eventually(
      () =>
        ws.confirmed.logs >= 1 &&
        ws.confirmed.newHeads >= 1 &&
        ws.confirmed.newPendingTransactions >= 1,
      10000,
      "eth_subscribe logs, newHeads and newPendingTransactions confirmed",
    );

    const first = await events.setValue(99);
    await first.wait();
    await (await events.setValue(100)).wait();
    await eventually(() => seen.length >= 2, 10000, "ValueChanged over eth_subscribe logs");
    equal(seen, [99n, 100n], "values from the WebSocket subscription");
    await eventually(() => blocks.length >= 1, 10000, "a newHeads block over WebSocket");
    await eventually(() => pending.includes(first.hash), 10000, "the transaction's pending hash");

    const logs = await ws.getLogs({ address, fromBlock: 0 });
    equal(logs.length, 2, "getLogs over WebSocket");
    await watched.removeAllListeners();
    await ws.removeAllListeners();
  } finally {
    provider.destroy();
    await ws.destroy();
  }
}

await runScenarios({
  deploy_transfer: deployTransfer,
  json_rpc_signer: jsonRpcSigner,
  events_http: eventsHttp,
  reverts,
  fee_types: feeTypes,
  nonce_manager: nonceManager,
  pending_http: pendingHttp,
  websocket,
});
