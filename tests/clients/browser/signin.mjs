// Drive the node's sign-in page in headless Chromium with a test EIP-1193 wallet.
//
//     NODE_URL=http://127.0.0.1:8545 PRIVATE_KEY=0x... SCREENSHOT=out.png node signin.mjs
//
// The injected wallet answers eth_requestAccounts with the key's address, signs
// personal_sign requests with the key (through a function exposed from this script), and
// records wallet_addEthereumChain requests. The script prints a JSON report.

import { Wallet, getBytes } from "ethers";
import { chromium } from "playwright-core";

const NODE_URL = process.env.NODE_URL;
const wallet = new Wallet(process.env.PRIVATE_KEY);
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const browser = await chromium.launch({
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
const report = { ok: false, console: [] };
try {
  const page = await browser.newPage();
  page.on("console", (msg) => report.console.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (err) => report.console.push(`pageerror: ${err.message}`));
  await page.exposeFunction("__walletSign", async (hexMessage) =>
    wallet.signMessage(getBytes(hexMessage)),
  );
  await page.addInitScript((address) => {
    window.__walletCalls = [];
    window.ethereum = {
      isTestWallet: true,
      async request({ method, params }) {
        window.__walletCalls.push({ method, params });
        if (method === "eth_requestAccounts" || method === "eth_accounts") return [address];
        if (method === "personal_sign") {
          if (params[1].toLowerCase() !== address.toLowerCase()) throw new Error("wrong account");
          return window.__walletSign(params[0]);
        }
        if (method === "wallet_addEthereumChain") return null;
        throw Object.assign(new Error(`unsupported method ${method}`), { code: 4200 });
      },
    };
  }, wallet.address);

  const response = await page.goto(NODE_URL + "/", { waitUntil: "load" });
  report.contentType = response.headers()["content-type"];
  await page.waitForFunction(() => document.getElementById("chain").textContent.length > 0);
  report.chainText = await page.textContent("#chain");
  await page.waitForSelector("#gov-none:not([hidden])");
  report.governanceText = await page.textContent("#gov-none");
  report.governanceBodyShown = await page.isVisible("#gov-body");
  await page.click("#connect");
  await page.waitForSelector("#step-signin:not([hidden])");
  report.accountText = await page.textContent("#account");
  await page.click("#signin");
  await page.waitForSelector("#step-url:not([hidden])", { timeout: 15000 });
  report.rpcUrl = await page.textContent("#rpc-url");
  await page.waitForSelector("#step-activity:not([hidden])");
  report.activityRows = await page.$$eval("#activity tr", (rows) =>
    rows.map((row) => Array.from(row.children, (cell) => cell.textContent)),
  );
  await page.click("#add-network");
  await page.waitForFunction(() => document.getElementById("added").textContent.length > 0);
  report.walletCalls = await page.evaluate(() => window.__walletCalls);
  report.errorShown = await page.isVisible("#error");
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });
  await page.click("#signout");
  await page.waitForSelector("#step-url", { state: "hidden" });
  report.signedOut = true;
  report.ok = true;
} catch (error) {
  report.error = String(error && error.stack ? error.stack : error);
} finally {
  await browser.close();
}
console.log(JSON.stringify(report));
process.exit(report.ok ? 0 : 1);
