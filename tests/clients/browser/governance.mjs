// Drive the sign-in page's governance view in headless Chromium, with a test EIP-1193 wallet
// per key (each in its own browser context, as three members' browsers would be):
//
//     NODE_URL=http://127.0.0.1:8545 PLAN='{...}' node governance.mjs
//
// PLAN (JSON): {"proposer": key, "outsider": key, "second": key,
//               "propose": {"kind", "args"}, "withdraw": {"kind", "args"}, "observer": url?}
//
// 1. the proposer connects, reads members, nodes and validators, proposes `propose` through
//    the form, approves it, proposes `withdraw` through the draft list and withdraws it;
// 2. the outsider (no member) connects and approves the first proposal: the node refuses;
// 3. the second member connects, rejects it, then approves it (a change of mind): the page
//    shows it accepted;
// 4. (PLAN.observer: an observer's URL) the observer's page shows the outcome, read only.
//
// The injected wallet answers eth_requestAccounts with its key's address, signs
// eth_signTypedData_v4 requests for that address with the key (ethers) and records every
// request. The script prints a JSON report as its last line.

import { Wallet } from "ethers";
import { injectWallet, launchBrowser, recordConsole, runReport } from "./wallet.mjs";

const NODE_URL = process.env.NODE_URL;
const PLAN = JSON.parse(process.env.PLAN);
const BLOCK_WAIT = 60000; // a record waits for its block: generous on a loaded machine

const browser = await launchBrowser();
const report = { ok: false, console: [], step: "launch" };

async function openAs(key, url = NODE_URL) {
  const wallet = new Wallet(key);
  const context = await browser.newContext();
  await injectWallet(context, wallet);
  const page = await context.newPage();
  recordConsole(page, report);
  await page.goto(url + "/", { waitUntil: "load" });
  await page.waitForSelector("#gov-body:not([hidden])", { timeout: 30000 });
  // the proposal form is filled (a node that takes submissions), or says why there is none
  await page.waitForFunction(
    () =>
      document.querySelectorAll("#gov-kind option").length > 0 ||
      !document.getElementById("gov-propose-off").hidden,
  );
  return { page, address: wallet.address.toLowerCase() };
}

const rows = (page, selector) =>
  page.$$eval(selector, (trs) =>
    trs.map((tr) => ({ ...tr.dataset, cells: Array.from(tr.children, (td) => td.textContent) })),
  );
const row = (id) => `#gov-proposals tr[data-id="${id}"]`;

async function connect(page, expect) {
  await page.click("#connect");
  await page.waitForFunction(
    (text) => document.getElementById("gov-you").textContent.includes(text),
    expect,
  );
  return page.textContent("#gov-you");
}

// Propose through the page; returns the new proposal's id once a block has recorded it.
async function propose(page, viaDraft, { kind, args }) {
  const before = await page.$eval("#gov-message", (el) => el.dataset.proposal || "");
  await page.selectOption("#gov-kind", kind);
  await page.fill("#gov-args", JSON.stringify(args));
  if (viaDraft) {
    await page.click("#gov-add");
    await page.waitForSelector("#gov-draft li");
  }
  await page.click("#gov-propose");
  await page.waitForFunction(
    (old) => {
      const box = document.getElementById("gov-message");
      return box.dataset.proposal && box.dataset.proposal !== old && /recorded at block/.test(box.textContent);
    },
    before,
    { timeout: BLOCK_WAIT },
  );
  return page.$eval("#gov-message", (el) => el.dataset.proposal);
}

await runReport(browser, report, async () => {
  // ---- 1. the proposer
  report.step = "proposer";
  const first = await openAs(PLAN.proposer);
  let page = first.page;
  report.summary = await page.textContent("#gov-summary");
  report.members = await rows(page, "#gov-members tr");
  report.nodes = await rows(page, "#gov-nodes tr");
  report.validatorsNow = await page.textContent("#gov-validators-now");
  report.schedule = await rows(page, "#gov-schedule tr");
  report.kinds = await page.$$eval("#gov-kind option", (options) => options.map((o) => o.value));
  report.proposerYou = await connect(page, "active member");

  report.step = "propose";
  const id = await propose(page, false, PLAN.propose);
  report.proposalId = id;
  report.proposedRow = (await rows(page, row(id)))[0];

  report.step = "approve as the proposer";
  await page.click(`${row(id)} button[data-do="approve"]`);
  await page.waitForSelector(`${row(id)} [data-member="${first.address}"][data-ballot="approve"]`, {
    timeout: BLOCK_WAIT,
  });
  report.afterFirstBallot = (await rows(page, row(id)))[0];

  report.step = "propose and withdraw";
  const withdrawn = await propose(page, true, PLAN.withdraw);
  report.withdrawnId = withdrawn;
  await page.click(`${row(withdrawn)} button[data-do="withdraw"]`);
  await page.waitForSelector(`${row(withdrawn)}[data-status="withdrawn"]`, { timeout: BLOCK_WAIT });
  report.withdrawnRow = (await rows(page, row(withdrawn)))[0];
  report.proposerCalls = await page.evaluate(() => window.__walletCalls);
  report.proposerError = (await page.isVisible("#gov-error")) ? await page.textContent("#gov-error") : null;

  // ---- 2. someone who is no member
  report.step = "outsider";
  page = (await openAs(PLAN.outsider)).page;
  await page.waitForSelector(row(id));
  report.outsiderYou = await connect(page, "not a member");
  await page.click(`${row(id)} button[data-do="approve"]`);
  await page.waitForSelector("#gov-error:not([hidden])", { timeout: BLOCK_WAIT });
  report.outsiderError = await page.textContent("#gov-error");
  report.outsiderCalls = await page.evaluate(() => window.__walletCalls);

  // ---- 3. the second member
  report.step = "second member";
  const second = await openAs(PLAN.second);
  page = second.page;
  await page.waitForSelector(row(id));
  report.secondYou = await connect(page, "active member");
  // first a rejection, then a change of mind (the page signs revision 1)
  await page.click(`${row(id)} button[data-do="reject"]`);
  await page.waitForSelector(`${row(id)} [data-member="${second.address}"][data-ballot="reject"]`, {
    timeout: BLOCK_WAIT,
  });
  report.rejectedRow = (await rows(page, row(id)))[0];
  await page.click(`${row(id)} button[data-do="approve"]`);
  await page.waitForSelector(`${row(id)}[data-status="accepted"]`, { timeout: BLOCK_WAIT });
  report.acceptedRow = (await rows(page, row(id)))[0];
  report.membersAfter = await rows(page, "#gov-members tr");
  report.secondMessage = await page.textContent("#gov-message");
  report.secondError = (await page.isVisible("#gov-error")) ? await page.textContent("#gov-error") : null;
  if (process.env.SCREENSHOT) await page.screenshot({ path: process.env.SCREENSHOT, fullPage: true });

  // ---- 4. the same consortium on an observer's page: read only
  if (PLAN.observer) {
    report.step = "observer";
    page = (await openAs(PLAN.second, PLAN.observer)).page;
    await page.waitForSelector(`${row(id)}[data-status="accepted"]`, { timeout: BLOCK_WAIT });
    report.observerRow = (await rows(page, row(id)))[0];
    report.observerMembers = await rows(page, "#gov-members tr");
    report.observerFormShown = await page.isVisible("#gov-propose-form");
    report.observerOff = await page.textContent("#gov-propose-off");
    report.observerButtons = await page.$$eval("#gov-proposals button", (b) => b.length);
  }
  report.step = "done";
});
