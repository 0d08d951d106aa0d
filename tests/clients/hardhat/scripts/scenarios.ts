// Scenarios that drive a Coco Gateway node through Hardhat 3 and hardhat-ethers.
//
//   RPC_URL=http://127.0.0.1:8545 SCENARIOS=token,reverts \
//     npx hardhat run scripts/scenarios.ts --network coco
//
// SCENARIOS is a comma-separated list of the names below (all of them when unset). Each
// scenario throws on an unmet expectation; the last line of standard output is a JSON
// report {"report": "hardhat", "network", "ok", "results": [{"scenario", "ok", "ms",
// "error"?}]} and the exit code is non-zero when any scenario failed.
import { readFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { network } from "hardhat";

// `network.connect()` in the first Hardhat 3 releases; deprecated in favour of create().
const { ethers, networkName } = await network.create();

const CHAIN_ID = 31337n;
// The addresses of the "test test ... junk" accounts 0, 1 and 2.
const DEV_ADDRESSES = [
  "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
  "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
  "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
];
const SUPPLY = ethers.parseEther("1000000");
const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../../..");

function check(condition: unknown, message: string): asserts condition {
  if (!condition) {
    throw new Error(message);
  }
}

function equal<T>(actual: T, expected: T, what: string): void {
  check(actual === expected, `${what}: expected ${String(expected)}, got ${String(actual)}`);
}

/** Runs `action`, which must throw; returns what it threw. */
async function rejection(action: () => Promise<unknown>, what: string): Promise<any> {
  try {
    await action();
  } catch (error) {
    return error;
  }
  throw new Error(`${what}: expected an error, but it succeeded`);
}

/** A fresh address that has never been used, derived from the scenario's name. */
function freshAddress(label: string): string {
  return ethers.getAddress(ethers.dataSlice(ethers.id(`coco-hardhat:${label}:${Date.now()}`), 12));
}

async function expectSigners(count: number): Promise<void> {
  const signers = await ethers.getSigners();
  check(signers.length >= count, `getSigners: expected at least ${count}, got ${signers.length}`);
  for (let i = 0; i < count; i++) {
    equal(signers[i].address, DEV_ADDRESSES[i], `getSigners()[${i}].address`);
  }
}

// -- scenarios ------------------------------------------------------------------------------

/** The chain as the provider sees it, and Hardhat's probe for its own simulated network. */
async function provider(): Promise<void> {
  const net = await ethers.provider.getNetwork();
  equal(net.chainId, CHAIN_ID, "getNetwork().chainId");
  const number = await ethers.provider.getBlockNumber();
  const block = await ethers.provider.getBlock(number, true);
  check(block !== null, `getBlock(${number}) returned null`);
  equal(block.number, number, "block.number");
  check(block.baseFeePerGas !== null, "latest block has no baseFeePerGas (Prague)");
  const fees = await ethers.provider.getFeeData();
  check(fees.maxFeePerGas !== null && fees.maxFeePerGas > 0n, "getFeeData().maxFeePerGas");
  const balance = await ethers.provider.getBalance(DEV_ADDRESSES[0]);
  check(balance > 0n, `dev account 0 has no ether (${balance})`);
  equal(await ethers.provider.getCode(DEV_ADDRESSES[0]), "0x", "getCode(EOA)");
  // hardhat-ethers asks `hardhat_metadata` to learn whether this is Hardhat's own network;
  // any other node must answer "method not found".
  const probe = await rejection(
    () => ethers.provider.send("hardhat_metadata", []),
    "hardhat_metadata",
  );
  equal(probe.code, -32601, "hardhat_metadata error code");
  await expectSigners(3);
}

/** Compile-by-name deploy of Token, a transfer, balances, events, and Counter. */
async function token(): Promise<void> {
  await expectSigners(3);
  const [owner, other] = await ethers.getSigners();
  const tokenContract = await ethers.deployContract("Token", ["Coco", "COCO", SUPPLY]);
  await tokenContract.waitForDeployment();
  const address = await tokenContract.getAddress();
  const deployment = tokenContract.deploymentTransaction();
  check(deployment !== null, "no deployment transaction");
  const deployReceipt = await deployment.wait();
  check(deployReceipt !== null && deployReceipt.status === 1, "deployment receipt status");
  equal(deployReceipt.contractAddress, address, "receipt.contractAddress");
  check((await ethers.provider.getCode(address)).length > 2, "no code at the Token address");

  equal(await tokenContract.name(), "Coco", "name()");
  equal(await tokenContract.symbol(), "COCO", "symbol()");
  equal(await tokenContract.decimals(), 18n, "decimals()");
  equal(await tokenContract.totalSupply(), SUPPLY, "totalSupply()");
  equal(await tokenContract.balanceOf(owner.address), SUPPLY, "deployer balance");

  const amount = ethers.parseEther("1234.5");
  const sent = await tokenContract.transfer(other.address, amount);
  const receipt = await sent.wait();
  check(receipt !== null && receipt.status === 1, "transfer receipt status");
  equal(receipt.from, owner.address, "transfer receipt.from");
  const transfers = receipt.logs
    .map((log) => tokenContract.interface.parseLog(log))
    .filter((parsed) => parsed?.name === "Transfer");
  equal(transfers.length, 1, "Transfer events in the receipt");
  equal(transfers[0]!.args.to, other.address, "Transfer.to");
  equal(transfers[0]!.args.value, amount, "Transfer.value");
  equal(await tokenContract.balanceOf(other.address), amount, "receiver balance");
  equal(await tokenContract.balanceOf(owner.address), SUPPLY - amount, "sender balance");

  // The other signer spends through an allowance.
  const asOther = tokenContract.connect(other) as typeof tokenContract;
  await (await asOther.approve(owner.address, 100n)).wait();
  equal(await tokenContract.allowance(other.address, owner.address), 100n, "allowance()");
  const sink = freshAddress("sink");
  await (await tokenContract.transferFrom(other.address, sink, 60n)).wait();
  equal(await tokenContract.balanceOf(sink), 60n, "transferFrom receiver balance");

  // Past events through eth_getLogs.
  const fromBlock = deployReceipt.blockNumber;
  const logs = await tokenContract.queryFilter(tokenContract.filters.Transfer(), fromBlock);
  check(logs.length >= 3, `queryFilter(Transfer): expected 3+ logs, got ${logs.length}`);

  const counter = await ethers.deployContract("Counter");
  await counter.waitForDeployment();
  await (await counter.setNumber(41n)).wait();
  await (await counter.increment()).wait();
  equal(await counter.number(), 42n, "Counter.number()");
  const again = await ethers.getContractAt("Counter", await counter.getAddress());
  equal(await again.number(), 42n, "getContractAt(Counter).number()");
}

/** Events: logs with indexed and string payloads, payable calls, views, and every revert. */
async function events(): Promise<void> {
  const [sender] = await ethers.getSigners();
  const contract = await ethers.deployContract("Events");
  await contract.waitForDeployment();
  const address = await contract.getAddress();

  const setReceipt = await (await contract.setValue(7n)).wait();
  check(setReceipt !== null && setReceipt.status === 1, "setValue receipt status");
  const changed = contract.interface.parseLog(setReceipt.logs[0]);
  equal(changed?.name, "ValueChanged", "setValue event");
  equal(changed?.args.who, sender.address, "ValueChanged.who");
  equal(changed?.args.newValue, 7n, "ValueChanged.newValue");
  equal(await contract.value(), 7n, "value()");

  const noteReceipt = await (await contract.note("hello, hardhat")).wait();
  equal(contract.interface.parseLog(noteReceipt!.logs[0])?.args.text, "hello, hardhat", "Note.text");

  const deposit = ethers.parseEther("0.25");
  await (await contract.deposit({ value: deposit })).wait();
  equal(await ethers.provider.getBalance(address), deposit, "contract balance after deposit");

  const payload = "0x00ff10c0c0";
  equal(await contract.echo(payload), payload, "echo()");

  const filtered = await contract.queryFilter(contract.filters.ValueChanged(sender.address));
  equal(filtered.length, 1, "queryFilter(ValueChanged(sender))");

  const estimate = await contract.spin.estimateGas(20n);
  check(estimate > 20n * 20000n, `spin(20) estimate ${estimate} is too small`);
  await (await contract.spin(20n)).wait();
}

/** Revert reasons as Hardhat's provider reports them, through eth_call and eth_estimateGas. */
async function reverts(): Promise<void> {
  const contract = await ethers.deployContract("Events");
  await contract.waitForDeployment();
  const iface = contract.interface;

  // Error(string) from eth_call: a ProviderError carrying the revert data.
  const requireError = await rejection(() => contract.failRequire(), "failRequire()");
  check(
    typeof requireError.data === "string",
    `failRequire: no revert data on the error (${requireError.message})`,
  );
  const decoded = iface.parseError(requireError.data);
  equal(decoded?.name, "Error", "failRequire decoded error");
  equal(decoded?.args[0], "Events: always fails", "failRequire reason");
  check(
    String(requireError.message).includes("Events: always fails"),
    `failRequire message does not carry the reason: ${requireError.message}`,
  );

  const customError = await rejection(() => contract.failCustom(7n), "failCustom(7)");
  const custom = iface.parseError(customError.data);
  equal(custom?.name, "Custom", "failCustom decoded error");
  equal(custom?.args.code, 7n, "Custom.code");
  equal(custom?.args.why, "custom failure", "Custom.why");

  const panicError = await rejection(() => contract.failPanic(), "failPanic()");
  const panic = iface.parseError(panicError.data);
  equal(panic?.name, "Panic", "failPanic decoded error");
  equal(panic?.args[0], 0x12n, "Panic code");

  const plainError = await rejection(() => contract.failPlain(), "failPlain()");
  equal(plainError.data, "0x", "failPlain revert data");

  // A transaction that would revert fails at gas estimation, with the custom error's data.
  const tokenContract = await ethers.deployContract("Token", ["Coco", "COCO", 1000n]);
  await tokenContract.waitForDeployment();
  const sendError = await rejection(
    () => tokenContract.transfer(freshAddress("too-much"), 1001n),
    "transfer(more than the balance)",
  );
  const insufficient = tokenContract.interface.parseError(sendError.data);
  equal(insufficient?.name, "InsufficientBalance", "over-balance transfer error");

  // With the gas limit given there is no estimation: the transaction is mined and reverts.
  const [owner] = await ethers.getSigners();
  const nonce = await ethers.provider.getTransactionCount(owner.address);
  const mined = await tokenContract.transfer(freshAddress("mined"), 5000n, { gasLimit: 100000n });
  // Waits for the receipt without throwing on status 0 (mined.wait() would); the node seals
  // the block as soon as the transaction arrives, but not before eth_sendRawTransaction answers.
  const failed = await ethers.provider.waitForTransaction(mined.hash, 1, 30_000);
  check(failed !== null, "no receipt for the reverted transaction");
  equal(failed.status, 0, "reverted transaction status");
  equal(
    await ethers.provider.getTransactionCount(owner.address),
    nonce + 1,
    "nonce after a reverted transaction",
  );
}

/** The precompiled artifacts of contracts/build, deployed with a plain ContractFactory. */
async function precompiled(): Promise<void> {
  const [owner, other] = await ethers.getSigners();
  const artifact = JSON.parse(await readFile(path.join(REPO, "contracts/build/Token.json"), "utf8"));
  const factory = new ethers.ContractFactory(artifact.abi, artifact.bytecode, owner);
  const deployed = await factory.deploy("Built", "BLT", 500n);
  await deployed.waitForDeployment();
  const compiled = await ethers.getContractFactory("Token");
  equal(compiled.bytecode, artifact.bytecode, "Hardhat's Token bytecode vs contracts/build");
  const built = await ethers.getContractAt("Token", await deployed.getAddress());
  await (await built.transfer(other.address, 125n)).wait();
  equal(await built.balanceOf(other.address), 125n, "precompiled Token receiver balance");
  equal(await built.balanceOf(owner.address), 375n, "precompiled Token sender balance");
}

/** Osaka's CLZ, as solc 0.8.37 compiles `clz` for its default target: BitMath deployed and run. */
async function osaka(): Promise<void> {
  const bitmath = await ethers.deployContract("BitMath");
  await bitmath.waitForDeployment();
  equal(await bitmath.leadingZeros(0n), 256n, "leadingZeros(0)");
  equal(await bitmath.leadingZeros(1n), 255n, "leadingZeros(1)");
  equal(await bitmath.leadingZeros(1n << 255n), 0n, "leadingZeros(2**255)");
  equal(await bitmath.log2(1000n), 9n, "log2(1000)");
  equal(await bitmath.bitLength((1n << 200n) + 7n), 201n, "bitLength(2**200 + 7)");
  const error = await rejection(() => bitmath.log2(0n), "log2(0)");
  equal(bitmath.interface.parseError(error.data)?.name, "Log2OfZero", "log2(0) custom error");
  // a transaction through it: Hardhat estimates the gas, signs, the node mines it
  const receipt = await (await bitmath.log2.send(12345n)).wait();
  check(receipt !== null && receipt.status === 1, "BitMath transaction status");
}

/** Node-side accounts: getSigners from eth_accounts, sends through eth_sendTransaction. */
async function remote(): Promise<void> {
  const accounts: string[] = await ethers.provider.send("eth_accounts", []);
  check(accounts.length >= 3, `eth_accounts: expected 3+ accounts, got ${accounts.length}`);
  await expectSigners(3);
  const [, second, third] = await ethers.getSigners();
  const tokenContract = await ethers.deployContract("Token", ["Remote", "RMT", SUPPLY], second);
  await tokenContract.waitForDeployment();
  equal(await tokenContract.balanceOf(second.address), SUPPLY, "remote deployer balance");
  const receipt = await (await tokenContract.transfer(third.address, 999n)).wait();
  check(receipt !== null && receipt.status === 1, "remote transfer status");
  equal(receipt.from, second.address, "remote transfer sender");
  equal(await tokenContract.balanceOf(third.address), 999n, "remote receiver balance");

  const contract = await ethers.deployContract("Events", [], third);
  await contract.waitForDeployment();
  // The node itself estimates gas for eth_sendTransaction and reports the revert.
  const error = await rejection(() => contract.failCustom.send(3n), "failCustom.send(3)");
  const custom = contract.interface.parseError(error.data);
  equal(custom?.name, "Custom", "remote failCustom decoded error");
  equal(custom?.args.code, 3n, "remote Custom.code");

  const before = await ethers.provider.getBalance(DEV_ADDRESSES[0]);
  const payment = await second.sendTransaction({ to: DEV_ADDRESSES[0], value: 12345n });
  await payment.wait();
  equal(await ethers.provider.getBalance(DEV_ADDRESSES[0]), before + 12345n, "ether transfer");
}

const SCENARIOS: Record<string, () => Promise<void>> = {
  provider,
  token,
  events,
  reverts,
  precompiled,
  osaka,
  remote,
};

const wanted = (process.env.SCENARIOS ?? Object.keys(SCENARIOS).join(","))
  .split(",")
  .map((name) => name.trim())
  .filter((name) => name !== "");
const results: Array<{ scenario: string; ok: boolean; ms: number; error?: string }> = [];
for (const name of wanted) {
  const started = Date.now();
  const scenario = SCENARIOS[name];
  try {
    if (scenario === undefined) {
      throw new Error(`unknown scenario ${name}; known: ${Object.keys(SCENARIOS).join(", ")}`);
    }
    await scenario();
    results.push({ scenario: name, ok: true, ms: Date.now() - started });
  } catch (error) {
    const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
    console.error(`[${name}] ${text}`);
    results.push({ scenario: name, ok: false, ms: Date.now() - started, error: text });
  }
}
const ok = results.every((result) => result.ok);
console.log(JSON.stringify({ report: "hardhat", network: networkName, ok, results }));
if (!ok) {
  process.exitCode = 1;
}
