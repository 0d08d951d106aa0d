// What the browser scripts share: headless Chromium, and a test EIP-1193 wallet injected into
// a page or browser context (window.ethereum) that answers with one key, as a browser
// extension wallet would:
//
// * eth_requestAccounts / eth_accounts: the key's address;
// * personal_sign and eth_signTypedData_v4 for that address: signed with the key by ethers in
//   this script (exposed functions), never in the page;
// * wallet_addEthereumChain: accepted (null);
// * anything else: error 4200 (unsupported method).
//
// Every request is recorded in window.__walletCalls; console lines and page errors go to
// report.console.

import { getBytes } from "ethers";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

export function launchBrowser() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}

// target: a playwright Page or BrowserContext; wallet: an ethers Wallet
export async function injectWallet(target, wallet) {
  await target.exposeFunction("__walletSign", async (hexMessage) =>
    wallet.signMessage(getBytes(hexMessage)),
  );
  await target.exposeFunction("__walletSignTyped", async (json) => {
    const data = JSON.parse(json);
    const types = { ...data.types };
    delete types.EIP712Domain; // ethers derives the domain's type from its fields
    return wallet.signTypedData(data.domain, types, data.message);
  });
  await target.addInitScript((address) => {
    const mine = (who) => {
      if (String(who).toLowerCase() !== address.toLowerCase()) throw new Error("wrong account");
    };
    window.__walletCalls = [];
    window.ethereum = {
      isTestWallet: true,
      async request({ method, params }) {
        window.__walletCalls.push({ method, params });
        if (method === "eth_requestAccounts" || method === "eth_accounts") return [address];
        if (method === "personal_sign") {
          mine(params[1]);
          return window.__walletSign(params[0]);
        }
        if (method === "eth_signTypedData_v4") {
          mine(params[0]);
          return window.__walletSignTyped(params[1]);
        }
        if (method === "wallet_addEthereumChain") return null;
        throw Object.assign(new Error(`unsupported method ${method}`), { code: 4200 });
      },
    };
  }, wallet.address);
}

export function recordConsole(page, report) {
  page.on("console", (msg) => report.console.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => report.console.push(`pageerror: ${err.message}`));
}

// Run a script's steps and end it: ``report.ok`` once they all ran, ``report.error`` (the
// stack) when one threw; the browser closed, the report printed as JSON, exit code 0 only
// when ok.
export async function runReport(browser, report, steps) {
  try {
    await steps();
    report.ok = true;
  } catch (error) {
    report.error = String(error && error.stack ? error.stack : error);
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(report));
  process.exit(report.ok ? 0 : 1);
}
