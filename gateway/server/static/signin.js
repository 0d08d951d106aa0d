// The node's sign-in page: connect an EIP-1193 wallet, sign in with Ethereum (EIP-4361),
// receive a personal RPC URL, add the network to the wallet, list the account's activity;
// and the consortium's governance (docs/GOVERNANCE.md): members, nodes, validators,
// proposals, and proposing, voting and withdrawing with the wallet's EIP-712 signature.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { account: null, chainId: null, session: null };

async function rpc(url, method, params = []) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ jsonrpc: "2.0", id: 1, method, params }),
  });
  const answer = await response.json();
  if (answer.error) throw rpcError(answer.error);
  return answer.result;
}

// A JSON-RPC error as an Error carrying its code and the node's stable reason code.
function rpcError(error) {
  const failure = new Error(error.message);
  failure.code = error.code;
  failure.reason = error.data && typeof error.data.reason === "string" ? error.data.reason : null;
  return failure;
}

function showError(error) {
  const box = $("error");
  box.textContent = error && error.message ? error.message : String(error);
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
}

function wallet() {
  if (!window.ethereum) {
    throw new Error("No browser wallet found. Install MetaMask (or another EIP-1193 wallet) and reload.");
  }
  return window.ethereum;
}

function toHex(text) {
  return "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function connect() {
  clearError();
  const accounts = await wallet().request({ method: "eth_requestAccounts" });
  if (!accounts || !accounts.length) throw new Error("The wallet shared no account.");
  state.account = accounts[0];
  $("account").textContent = "Connected: " + state.account;
  $("step-signin").hidden = false;
  renderGovernance();
}

async function signIn() {
  clearError();
  const prepared = await rpc("/", "coco_siweMessage", [state.account, window.location.origin]);
  const signature = await wallet().request({
    method: "personal_sign",
    params: [toHex(prepared.message), state.account],
  });
  state.session = await rpc("/", "coco_signIn", [prepared.message, signature]);
  $("rpc-url").textContent = state.session.rpcUrl;
  $("expires").textContent = new Date(state.session.expiresAt * 1000).toLocaleString();
  $("step-url").hidden = false;
  await showActivity();
}

async function addNetwork() {
  clearError();
  await wallet().request({
    method: "wallet_addEthereumChain",
    params: [{
      chainId: state.chainId,
      chainName: "Coco Gateway",
      rpcUrls: [state.session.rpcUrl],
      nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
    }],
  });
  $("added").textContent = "Network added to your wallet with your personal RPC URL.";
}

async function signOut() {
  clearError();
  await rpc(state.session.rpcUrl, "coco_signOut", []);
  state.session = null;
  $("step-url").hidden = true;
  $("step-activity").hidden = true;
  $("added").textContent = "";
}

async function showActivity() {
  const activity = await rpc(state.session.rpcUrl, "coco_myActivity", []);
  const body = $("activity");
  body.textContent = "";
  for (const item of activity.transactions) {
    const row = document.createElement("tr");
    for (const value of [
      parseInt(item.blockNumber, 16),
      item.hash,
      item.to || "—",
      item.contractAddress || "—",
      item.status === "0x1" ? "ok" : "failed",
    ]) {
      const cell = document.createElement("td");
      cell.textContent = String(value);
      row.appendChild(cell);
    }
    body.appendChild(row);
  }
  $("activity-empty").hidden = activity.transactions.length > 0;
  $("step-activity").hidden = false;
}

function guarded(action) {
  return async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    try {
      await action();
    } catch (error) {
      showError(error);
    } finally {
      button.disabled = false;
    }
  };
}

async function init() {
  try {
    state.chainId = await rpc("/", "eth_chainId");
    $("chain").textContent = "Chain ID " + parseInt(state.chainId, 16) + " (" + state.chainId + ")";
  } catch (error) {
    showError(error);
  }
  $("connect").addEventListener("click", guarded(connect));
  $("signin").addEventListener("click", guarded(signIn));
  $("add-network").addEventListener("click", guarded(addNetwork));
  $("signout").addEventListener("click", guarded(signOut));
  $("copy").addEventListener("click", () => navigator.clipboard && navigator.clipboard.writeText(state.session.rpcUrl));
  initGovernance();
}

// ------------------------------------------------------------------------- governance
//
// Reads: coco_govState and coco_govProposals (public, no sign-in), redrawn every few
// seconds. Writes: the node describes the exact EIP-712 typed data (coco_govTypedData), the
// wallet signs it (eth_signTypedData_v4), the node checks and pools it (coco_govSubmit) or
// refuses it with a reason code, which the page shows; then the page waits for the block
// that records it.

const gov = {
  available: null, // true: this consortium has governance; false: it has none
  state: null, // coco_govState
  proposals: [], // coco_govProposals, in recorded order
  actions: null, // coco_govActions: the action kinds this node accepts
  draft: [], // actions listed for the next proposal
  shown: "", // what the tables show, to redraw only on a change
  unserved: false, // the node has no coco_gov* methods at all
  loading: null,
};
const GOV_REFRESH_MS = 5000;
const GOV_WAIT_MS = 60000;
const MAX_CLOSED_SHOWN = 50;
const MAX_SCHEDULE_SHOWN = 20;

const delay = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const lower = (address) => (address ? address.toLowerCase() : null);
const shortHex = (hex) => (hex.length > 16 ? hex.slice(0, 10) + "…" + hex.slice(-6) : hex);
const shortAddress = (address) => address.slice(0, 6) + "…" + address.slice(-4);

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function addCell(row, content, className) {
  const cell = element("td", null, className);
  if (content instanceof Node) cell.appendChild(content);
  else cell.textContent = String(content);
  row.appendChild(cell);
  return cell;
}

function when(seconds) {
  return new Date(seconds * 1000).toLocaleString();
}

function say(text) {
  $("gov-message").textContent = text;
}

function govError(error) {
  const box = $("gov-error");
  let text = error && error.message ? error.message : String(error);
  if (error && error.reason) text = "The node refused it: " + text + " (" + error.reason + ")";
  else if (error && error.code === 4001) text = "The wallet refused to sign: " + text;
  box.textContent = text;
  box.hidden = false;
}

async function loadGovernance() {
  if (gov.loading) return gov.loading;
  gov.loading = (async () => {
    try {
      const govState = await rpc("/", "coco_govState");
      // the state digest covers the proposals: read them again only when it changed
      if (!gov.state || gov.state.stateDigest !== govState.stateDigest) {
        gov.proposals = await rpc("/", "coco_govProposals");
      }
      gov.available = true;
      gov.state = govState;
    } catch (error) {
      if (error.reason !== "no-governance" && error.code !== -32601) throw error;
      gov.available = false;
      gov.unserved = error.code === -32601; // a node without the coco_gov* methods
    } finally {
      gov.loading = null;
    }
    renderGovernance();
  })();
  return gov.loading;
}

function proposalById(id) {
  return gov.proposals.find((item) => item.id === id) || null;
}

function renderGovernance() {
  if (gov.available === null) return;
  $("gov-loading").hidden = true;
  if (!gov.available) {
    $("gov-none").textContent = gov.unserved
      ? "This node does not serve the governance methods (coco_gov*)."
      : "This node's consortium has no governance: its terms name no members, so nobody " +
        "votes on its members, nodes, validators or policies; they are fixed by its " +
        "consortium file.";
    $("gov-none").hidden = false;
    $("gov-body").hidden = true;
    return;
  }
  $("gov-none").hidden = true;
  $("gov-body").hidden = false;
  const s = gov.state;
  const open = s.openProposals.length;
  $("gov-summary").textContent =
    `Block ${s.height} · service ${s.service} · ${open} open proposal${open === 1 ? "" : "s"}` +
    (s.pooled ? ` · ${s.pooled} record${s.pooled === 1 ? "" : "s"} waiting for a block` : "") +
    ` · state ${shortHex(s.stateDigest)}`;
  // the tables change with votes, not with every block: redraw them only then
  const shown = JSON.stringify([
    s.members, s.nodes, s.validators, s.validatorsNext, gov.proposals, state.account,
  ]);
  if (shown === gov.shown) return;
  gov.shown = shown;
  renderYou();
  renderMembers(s);
  renderNodes(s);
  renderValidators(s);
  renderProposals(s);
}

function renderYou() {
  const you = $("gov-you");
  const account = lower(state.account);
  if (!account) {
    you.textContent = "Connect your wallet (step 1) to propose and vote as a member.";
    return;
  }
  const member = gov.state.members[account];
  if (member && member.active) {
    you.textContent = `You (${state.account}) are an active member: you can propose and vote.`;
  } else if (member) {
    you.textContent = `${state.account} was a member and has been removed: the node will refuse its proposals and ballots.`;
  } else {
    you.textContent = `${state.account} is not a member of this consortium: the node will refuse its proposals and ballots.`;
  }
}

function renderMembers(s) {
  const body = $("gov-members");
  body.textContent = "";
  for (const [address, member] of Object.entries(s.members)) {
    const row = element("tr", null, address === lower(state.account) ? "you" : "");
    row.dataset.address = address;
    addCell(row, address);
    addCell(row, member.active ? "yes" : "no (removed)", member.active ? "yes" : "no");
    addCell(row, member.encryptionKey ? "yes (" + shortHex(member.encryptionKey) + ")" : "no");
    addCell(row, member.data === null ? "—" : JSON.stringify(member.data), "args");
    body.appendChild(row);
  }
}

function renderNodes(s) {
  const body = $("gov-nodes");
  body.textContent = "";
  const validating = new Set(s.validatorsNext);
  for (const [address, item] of Object.entries(s.nodes)) {
    const row = element("tr");
    row.dataset.address = address;
    addCell(row, address);
    addCell(row, item.state, item.state === "trusted" ? "yes" : item.state === "retired" ? "no" : "mute");
    addCell(row, validating.has(address) ? "yes" : "no");
    addCell(row, item.platform || "—");
    addCell(row, item.since);
    body.appendChild(row);
  }
}

function renderValidators(s) {
  const next = s.height + 1;
  $("gov-validators-now").textContent =
    `Validating block ${next}: ` + (s.validatorsNext.join(", ") || "none");
  const body = $("gov-schedule");
  body.textContent = "";
  const schedule = s.validators;
  let current = 0;
  schedule.forEach(([first], index) => {
    if (first <= next) current = index;
  });
  schedule.slice(-MAX_SCHEDULE_SHOWN).forEach(([first, set]) => {
    const index = schedule.findIndex((entry) => entry[0] === first);
    const row = element("tr");
    row.dataset.first = String(first);
    addCell(row, first);
    addCell(row, set.join(", "));
    addCell(row, index === current ? "now" : first > next ? "scheduled" : "past",
      index === current ? "yes" : "mute");
    body.appendChild(row);
  });
}

function renderProposals(s) {
  const body = $("gov-proposals");
  body.textContent = "";
  const open = gov.proposals.filter((item) => item.status === "open");
  const closed = gov.proposals.filter((item) => item.status !== "open").reverse();
  const shown = open.concat(closed.slice(0, MAX_CLOSED_SHOWN));
  for (const item of shown) body.appendChild(proposalRow(s, item));
  $("gov-proposals-empty").hidden = shown.length > 0;
}

function proposalRow(s, item) {
  const row = element("tr");
  row.dataset.id = item.id;
  row.dataset.status = item.status;
  const head = element("div");
  const id = element("code", shortHex(item.id));
  id.title = item.id;
  head.appendChild(id);
  head.appendChild(element("div", "by " + shortHex(item.proposer), "mute"));
  head.appendChild(element("div", when(item.created), "mute"));
  addCell(row, head, "id");

  const actions = element("div");
  for (const action of item.actions) {
    actions.appendChild(element("div", action.kind + " " + JSON.stringify(action.args), "args"));
  }
  addCell(row, actions, "actions");

  const ballots = element("div");
  const voters = new Set(Object.keys(s.members).filter((a) => s.members[a].active));
  for (const address of Object.keys(item.ballots)) voters.add(address);
  for (const address of voters) {
    const ballot = item.ballots[address];
    const line = element(
      "div",
      shortAddress(address) + ": " + (ballot ? (ballot.approve ? "approve" : "reject") +
        (ballot.revision ? " (revision " + ballot.revision + ")" : "") : "no ballot"),
      ballot ? (ballot.approve ? "yes" : "no") : "mute",
    );
    line.dataset.member = address;
    line.dataset.ballot = ballot ? (ballot.approve ? "approve" : "reject") : "none";
    ballots.appendChild(line);
  }
  addCell(row, ballots, "ballots");

  const t = item.tally;
  addCell(row, `${t.approve} of ${t.needed} approvals needed · ${t.reject} reject · ${t.members} members`, "tally");
  addCell(
    row,
    item.status === "open" ? "open until " + when(item.expires)
      : item.status + (item.reason ? " (" + item.reason + ")" : ""),
    "status " + (item.status === "accepted" ? "yes" : item.status === "open" ? "" : "no"),
  );
  addCell(row, item.closedHeight === null ? "—" : item.closedHeight, "closed");

  const buttons = element("div");
  if (item.status === "open" && gov.actions) {
    buttons.appendChild(govButton("Approve", "approve", () => vote(item.id, true)));
    buttons.appendChild(govButton("Reject", "reject", () => vote(item.id, false)));
    if (lower(state.account) === item.proposer) {
      buttons.appendChild(govButton("Withdraw", "withdraw", () => withdraw(item.id), "secondary"));
    }
  }
  addCell(row, buttons, "do");
  return row;
}

function govButton(label, name, action, className) {
  const button = element("button", label, "small" + (className ? " " + className : ""));
  button.type = "button";
  button.dataset.do = name;
  button.addEventListener("click", govGuarded(action));
  return button;
}

function govGuarded(action) {
  return async (event) => {
    const button = event.currentTarget;
    button.disabled = true;
    $("gov-error").hidden = true;
    try {
      await action();
    } catch (error) {
      govError(error);
    } finally {
      button.disabled = false;
    }
  };
}

async function ensureAccount() {
  if (!state.account) await connect();
}

// Sign what the node describes with the wallet, and submit it: the node's answer, or its
// refusal (an Error with the reason code) thrown.
async function signAndSubmit(description) {
  await ensureAccount();
  const prepared = await rpc("/", "coco_govTypedData", [description]);
  checkTypedData(description, prepared.typedData);
  const signature = await wallet().request({
    method: "eth_signTypedData_v4",
    params: [state.account, JSON.stringify(prepared.typedData)],
  });
  return rpc("/", "coco_govSubmit", [prepared.typedData, signature, state.account]);
}

// What the node described is what was asked for, on this chain (the wallet shows it too).
function checkTypedData(description, data) {
  const primary = { proposal: "Proposal", ballot: "Ballot", withdraw: "Withdraw" }[description.type];
  const message = data.message;
  let same = data.primaryType === primary && data.domain.chainId === parseInt(state.chainId, 16);
  if (description.type === "proposal") {
    same = same && message.proposer === description.proposer &&
      message.actions.length === description.actions.length &&
      message.actions.every((action, i) => action.kind === description.actions[i].kind);
  } else {
    same = same && message.proposal === description.proposal;
    if (description.type === "ballot") {
      same = same && message.approve === description.approve && message.revision === description.revision;
    }
  }
  if (!same) throw new Error("The node described another message than the one asked for: not signed.");
}

// Refresh until ``done()`` holds (the record is in a block), or give up after a minute.
async function waitRecorded(done) {
  const deadline = Date.now() + GOV_WAIT_MS;
  for (;;) {
    await loadGovernance();
    const result = done();
    if (result) return result;
    if (Date.now() > deadline) return null;
    await delay(1000);
  }
}

async function vote(id, approve) {
  await ensureAccount();
  const account = lower(state.account);
  const current = proposalById(id);
  const mine = current && current.ballots[account];
  const revision = mine ? mine.revision + 1 : 0;
  const kind = approve ? "approve" : "reject";
  await signAndSubmit({ type: "ballot", proposal: id, approve, revision });
  say(`Your ballot (${kind}) on ${shortHex(id)} was accepted by the node; waiting for a block to record it…`);
  const recorded = await waitRecorded(() => {
    const item = proposalById(id);
    const ballot = item && item.ballots[account];
    return ballot && ballot.revision >= revision ? item : null;
  });
  if (!recorded) say(`Your ballot on ${shortHex(id)} is not in a block yet; the page shows it once it is.`);
  else say(`Your ballot (${kind}) on ${shortHex(id)} is recorded; the proposal is ${recorded.status}.`);
}

async function withdraw(id) {
  await signAndSubmit({ type: "withdraw", proposal: id });
  say(`Withdrawal of ${shortHex(id)} accepted by the node; waiting for a block to record it…`);
  const recorded = await waitRecorded(() => {
    const item = proposalById(id);
    return item && item.status !== "open" ? item : null;
  });
  say(recorded ? `Proposal ${shortHex(id)} is ${recorded.status}.` : `The withdrawal of ${shortHex(id)} is not in a block yet.`);
}

function formAction() {
  const kind = $("gov-kind").value;
  let args;
  try {
    args = JSON.parse($("gov-args").value.trim() || "{}");
  } catch (error) {
    throw new Error(`The arguments of ${kind} are not valid JSON: ${error.message}`);
  }
  if (args === null || typeof args !== "object" || Array.isArray(args)) {
    throw new Error(`The arguments of ${kind} must be a JSON object, like {"address": "0x…"}`);
  }
  return { kind, args };
}

function renderDraft() {
  const list = $("gov-draft");
  list.textContent = "";
  gov.draft.forEach((action, index) => {
    const item = element("li", action.kind + " " + JSON.stringify(action.args) + " ", "args");
    const remove = element("button", "Remove", "small secondary");
    remove.type = "button";
    remove.addEventListener("click", () => {
      gov.draft.splice(index, 1);
      renderDraft();
    });
    item.appendChild(remove);
    list.appendChild(item);
  });
}

async function propose() {
  await ensureAccount();
  const actions = gov.draft.length ? gov.draft.slice() : [formAction()];
  const answer = await signAndSubmit({ type: "proposal", proposer: lower(state.account), actions });
  const id = answer.proposal;
  $("gov-message").dataset.proposal = id;
  gov.draft = [];
  renderDraft();
  say(`Proposal ${shortHex(id)} was accepted by the node; waiting for a block to record it…`);
  const recorded = await waitRecorded(() => proposalById(id));
  say(
    recorded
      ? `Proposal ${shortHex(id)} is recorded at block ${recorded.height}: members may vote on it now (proposing is not voting).`
      : `Proposal ${shortHex(id)} is not in a block yet; the page shows it once it is.`,
  );
}

const SAMPLE_ARGS = {
  address: "0x",
  hash32: "0x",
  key32: "0x",
  bool: false,
  uint: 1,
  platform: "sgx",
  policy: "privacy",
  object: {},
  json: null,
};

function describeRule(kind) {
  const spec = gov.actions.actions[kind];
  const days = spec.openFor / 86400;
  const open = days >= 1 ? `${+days.toFixed(1)} days` : `${Math.round(spec.openFor / 60)} minutes`;
  return `Needs ${spec.threshold} of the active members; open for ${open}.`;
}

function chooseKind() {
  const kind = $("gov-kind").value;
  const spec = gov.actions.actions[kind];
  const sample = {};
  for (const [name, arg] of Object.entries(spec.args)) {
    if (arg.required) sample[name] = SAMPLE_ARGS[arg.type] ?? null;
  }
  $("gov-args").value = JSON.stringify(sample);
  $("gov-rule").textContent = describeRule(kind);
}

async function loadActions() {
  try {
    gov.actions = await rpc("/", "coco_govActions");
  } catch (error) {
    $("gov-propose-form").hidden = true;
    $("gov-propose-off").textContent = "This node takes no proposals or ballots: " + error.message;
    $("gov-propose-off").hidden = false;
    return;
  }
  const select = $("gov-kind");
  select.textContent = "";
  for (const kind of Object.keys(gov.actions.actions)) select.appendChild(element("option", kind));
  chooseKind();
  gov.shown = ""; // the proposals get their buttons
  renderGovernance();
}

async function initGovernance() {
  $("gov-kind").addEventListener("change", chooseKind);
  $("gov-add").addEventListener("click", () => {
    $("gov-error").hidden = true;
    try {
      gov.draft.push(formAction());
      renderDraft();
    } catch (error) {
      govError(error);
    }
  });
  $("gov-clear").addEventListener("click", () => {
    gov.draft = [];
    renderDraft();
  });
  $("gov-propose").addEventListener("click", govGuarded(propose));
  try {
    await loadGovernance();
  } catch (error) {
    $("gov-loading").textContent = "Could not read the governance state: " + error.message;
    return;
  }
  if (!gov.available) return;
  await loadActions();
  setInterval(() => {
    if (document.visibilityState === "visible") loadGovernance().catch(() => {});
  }, GOV_REFRESH_MS);
}

init();
