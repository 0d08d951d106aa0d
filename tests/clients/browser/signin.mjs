// Drive the node's sign-in page in headless Chromium with a test EIP-1193 wallet.
//
//     NODE_URL=http://127.0.0.1:8545 PRIVATE_KEY=0x... SCREENSHOT=out.png node signin.mjs
//
// The injected wallet answers eth_requestAccounts with the key's address, signs
// personal_sign requests with the key (through a function exposed from this script), and
// records wallet_addEthereumChain requests. The script prints a JSON report.

import { Wallet } from "ethers";
import { injectWallet, launchBrowser, recordConsole, runReport } from "./wallet.mjs";

const NODE_URL = process.env.NODE_URL;
const wallet = new Wallet(process.env.PRIVATE_KEY);

const browser = await launchBrowser();
const report = { ok: false, console: [] };
await runReport(browser, report, async () => {
  const page = await browser.newPage();
  recordConsole(page, report);
  await injectWallet(page, wallet);

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
});
