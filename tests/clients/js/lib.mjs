// Shared helpers for the JavaScript client scripts (ethers.mjs, viem.mjs).
//
// A script defines named scenarios and hands them to runScenarios(). It is run as
//
//     RPC_URL=http://... WS_URL=ws://... node ethers.mjs [scenario ...]
//
// with no names meaning "every scenario". It prints one JSON report as its last line of
// standard output, {"report": "<script>", "ok": bool, "results": [...]}, writes each failure
// to standard error, and exits 1 when any scenario failed (tests/clients_support.py reads it).

import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { format, inspect } from "node:util";

// Libraries print to the console (ethers logs polling errors with console.log); keep standard
// output for the report alone, and remember what was printed so scenarios can check it.
export const consoleLines = [];
for (const level of ["log", "info", "warn", "error", "debug"]) {
  console[level] = (...args) => {
    const line = format(...args);
    consoleLines.push(line);
    process.stderr.write(`[console.${level}] ${line}\n`);
  };
}

const BUILD_DIR = new URL("../../../contracts/build/", import.meta.url);

/** The compiled artifact of contracts/src/<name>.sol: {abi, bytecode, deployedBytecode, ...}. */
export function loadArtifact(name) {
  return JSON.parse(readFileSync(new URL(`${name}.json`, BUILD_DIR), "utf8"));
}

export const RPC_URL = process.env.RPC_URL ?? "http://127.0.0.1:8545";
export const WS_URL = process.env.WS_URL ?? RPC_URL.replace(/^http/, "ws");
export const CHAIN_ID = 31337;

// Anvil's "test test ... junk" accounts 0-3, which `coco-gateway dev` funds.
export const DEV_KEYS = [
  "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
  "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
  "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
  "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

/** A failed expectation: the message names what was expected and what came back. */
export class ExpectationFailed extends Error {
  constructor(message) {
    super(message);
    this.name = "ExpectationFailed";
  }
}

function show(value) {
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "string") return JSON.stringify(value);
  return inspect(value, { depth: 4, breakLength: 120 });
}

function same(a, b) {
  if (typeof a === "bigint" || typeof b === "bigint") {
    try {
      return BigInt(a) === BigInt(b);
    } catch {
      return false;
    }
  }
  if (Array.isArray(a) && Array.isArray(b)) {
    return a.length === b.length && a.every((item, i) => same(item, b[i]));
  }
  if (typeof a === "string" && typeof b === "string" && a.startsWith("0x") && b.startsWith("0x")) {
    return a.toLowerCase() === b.toLowerCase(); // addresses and hashes compare case-blind
  }
  return a === b;
}

/** Fails unless `condition` holds. */
export function check(condition, what) {
  if (!condition) throw new ExpectationFailed(what);
}

/** Fails unless `actual` equals `expected` (bigints by value, hex strings case-blind). */
export function equal(actual, expected, what) {
  if (!same(actual, expected)) {
    throw new ExpectationFailed(`${what}: expected ${show(expected)}, got ${show(actual)}`);
  }
}

/** Runs `fn` and returns the error it throws; fails if it does not throw. */
export async function rejects(fn, what) {
  try {
    await fn();
  } catch (err) {
    return err;
  }
  throw new ExpectationFailed(`${what}: expected an error, but the call succeeded`);
}

/** Rejects with a clear message when `promise` takes longer than `ms`. */
export function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new ExpectationFailed(`${what}: nothing after ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `probe` until it returns a truthy value; returns that value. `what` may be a function. */
export async function eventually(probe, ms, what, every = 50) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) {
      const label = typeof what === "function" ? what() : what;
      throw new ExpectationFailed(`${label}: not seen within ${ms} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, every));
  }
}

function describeError(err) {
  // Signed transactions and bytecode make errors huge; shorten long hex runs.
  const shorten = (hex) => `${hex.slice(0, 42)}...(${hex.length} chars)`;
  return describeFully(err).replace(/0x[0-9a-fA-F]{80,}/g, shorten);
}

function describeFully(err) {
  if (err instanceof ExpectationFailed) return err.message;
  const lines = [err?.stack ?? String(err)];
  // Client errors carry what the node said in different places; keep them all.
  for (const key of ["code", "shortMessage", "details", "info", "error"]) {
    if (err && err[key] !== undefined) lines.push(`${key}: ${show(err[key])}`);
  }
  if (err?.cause && err.cause !== err) lines.push(`cause: ${describeFully(err.cause)}`);
  return lines.join("\n");
}

/**
 * Runs the scenarios named on the command line (all of them when none is named), one after
 * another, each under its own time limit; prints the report and exits.
 */
export async function runScenarios(scenarios, { timeoutMs = 30000 } = {}) {
  const script = basename(process.argv[1] ?? "script");
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((name) => !(name in scenarios));
  if (unknown.length) {
    process.stderr.write(
      `${script}: unknown scenario(s) ${unknown.join(", ")}; ` +
        `known: ${Object.keys(scenarios).join(", ")}\n`,
    );
    process.exit(2);
  }
  const names = wanted.length ? wanted : Object.keys(scenarios);
  const results = [];
  for (const name of names) {
    const started = Date.now();
    const printed = consoleLines.length;
    try {
      await withTimeout(Promise.resolve().then(scenarios[name]), timeoutMs, `scenario ${name}`);
      // A client that complains on the console (ethers logs failed polls there) is a failure.
      const complaints = consoleLines.slice(printed);
      if (complaints.length) {
        throw new ExpectationFailed(`the client printed to the console:\n${complaints.join("\n")}`);
      }
      results.push({ scenario: name, ok: true, ms: Date.now() - started });
    } catch (err) {
      const error = describeError(err);
      results.push({ scenario: name, ok: false, ms: Date.now() - started, error });
      process.stderr.write(`FAILED ${script} ${name}:\n${error}\n\n`);
    }
  }
  const ok = results.every((r) => r.ok);
  process.stdout.write(`${JSON.stringify({ report: script, ok, results })}\n`);
  // Providers keep timers and sockets open; the report is out, so leave now.
  process.exit(ok ? 0 : 1);
}
