// The node's sign-in page: connect an EIP-1193 wallet, sign in with Ethereum (EIP-4361),
// receive a personal RPC URL, add the network to the wallet, list the account's activity.
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
  if (answer.error) throw new Error(answer.error.message);
  return answer.result;
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
}

init();
