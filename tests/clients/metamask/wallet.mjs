// A headless MetaMask "wallet": the controllers the extension's background runs for an EVM
// network, wired together the way the extension wires them, and pointed at RPC_URL.
//
//     const wallet = await createWallet();          // adds the network, as the form does
//     wallet.networkClient.provider                  // MetaMask's middleware stack + RPC service
//     wallet.transactions.addTransaction(...)        // the confirmation flow
//     wallet.destroy();
//
// Real packages (versions pinned in package.json): NetworkController, TransactionController,
// GasFeeController, the PollingBlockTracker and JSON-RPC middleware the network client is built
// from, the nonce tracker, and SimpleKeyring (MetaMask's keyring for imported private keys).
// Stubbed, because they need a UI, a vault or MetaMask's servers: the approval queue (a test
// "clicks" confirm), AccountsController (one imported account), RemoteFeatureFlagController
// (one flag, below) and the error-reporting service.
//
// Nothing here may reach a host other than the node: every fetch goes through `guardedFetch`,
// which refuses other hosts (MetaMask's gas API, for one) and remembers them, and records
// every JSON-RPC request sent to the node so scenarios can assert on the exact parameters.

import { MOCK_ANY_NAMESPACE, Messenger } from "@metamask/messenger";
import SimpleKeyring from "@metamask/eth-simple-keyring";
import { GasFeeController } from "@metamask/gas-fee-controller";
import { NetworkController, RpcEndpointType } from "@metamask/network-controller";
import { TransactionController } from "@metamask/transaction-controller";

export const RPC_URL = process.env.RPC_URL ?? "http://127.0.0.1:8545";

// What a user types into Settings > Networks > Add a network manually.
export const NETWORK_FORM = {
  name: "Coco Gateway (dev)",
  chainIdDecimal: "31337",
  ticker: "ETH",
};

// How often the block tracker polls eth_blockNumber. MetaMask polls a custom network every 20 s
// (eth-block-tracker's default; the extension's e2e builds use 1 s); a dev node mines on every
// transaction, so the scenarios poll faster to stay quick.
export const POLL_MS = 200;

export const CHAIN_ID_HEX = `0x${Number(NETWORK_FORM.chainIdDecimal).toString(16)}`;

const LOOPBACK = new Set(["127.0.0.1", "localhost", "[::1]", "::1"]);

/** Every JSON-RPC request MetaMask's packages sent to the node, in order: {method, params, id}. */
export const sentRequests = [];
/** Hosts other than the node that some package tried to reach (refused). */
export const refusedUrls = [];

const realFetch = globalThis.fetch;

export async function guardedFetch(input, init) {
  const href = typeof input === "string" ? input : (input?.url ?? String(input));
  const url = new URL(href);
  if (!LOOPBACK.has(url.hostname)) {
    refusedUrls.push(href);
    throw new TypeError(`refused: the tests reach only the node, not ${url.origin}`);
  }
  if (init?.body) {
    try {
      const body = JSON.parse(init.body);
      for (const item of Array.isArray(body) ? body : [body]) {
        sentRequests.push({ method: item.method, params: item.params, id: item.id });
      }
    } catch {
      // not JSON: nothing to record
    }
  }
  return realFetch(input, init);
}
globalThis.fetch = guardedFetch;

/** The requests for `method` sent since `mark` (an index into sentRequests). */
export function sentSince(mark, method) {
  return sentRequests.slice(mark).filter((r) => r.method === method);
}

/**
 * The approval queue: TransactionController asks ApprovalController to show a confirmation;
 * here the request waits until the scenario accepts or rejects it, like a user in the popup.
 */
class Approvals {
  constructor() {
    this.waiting = [];
    this.listeners = [];
  }

  addRequest(request) {
    return new Promise((resolve, reject) => {
      const entry = {
        request,
        accept: (value) => resolve({ value, resultCallbacks: { success() {}, error() {} } }),
        reject: (error) => reject(error),
      };
      const listener = this.listeners.shift();
      if (listener) listener(entry);
      else this.waiting.push(entry);
    });
  }

  /** The next confirmation MetaMask would show. */
  next() {
    const entry = this.waiting.shift();
    if (entry) return Promise.resolve(entry);
    return new Promise((resolve) => this.listeners.push(resolve));
  }
}

/**
 * Builds the wallet and adds the node's network the way the "Add a network manually" form does:
 * NetworkController.addNetwork with the form's fields, then setActiveNetwork on the new RPC
 * endpoint (ui/pages/settings/networks-tab/networks-form/networks-form.tsx, onSubmit).
 */
export async function createWallet({ privateKey, nonRpcGasApis = false } = {}) {
  const root = new Messenger({ namespace: MOCK_ANY_NAMESPACE });
  const approvals = new Approvals();
  const keyring = new SimpleKeyring(privateKey ? [privateKey.replace(/^0x/, "")] : []);
  const [address] = await keyring.getAccounts();

  // The collaborators that are UI, vault or MetaMask-server bound.
  root.registerActionHandler("ApprovalController:addRequest", (request) =>
    approvals.addRequest(request),
  );
  const account = {
    id: "imported-account-0",
    address: address?.toLowerCase(),
    type: "eip155:eoa",
    options: {},
    methods: ["eth_signTransaction", "personal_sign", "eth_signTypedData_v4"],
    scopes: ["eip155:0"],
    metadata: { name: "Account 1", importTime: 0, keyring: { type: "Simple Key Pair" } },
  };
  root.registerActionHandler("AccountsController:getSelectedAccount", () => account);
  root.registerActionHandler("AccountsController:getState", () => ({
    internalAccounts: { accounts: { [account.id]: account }, selectedAccount: account.id },
  }));
  // MetaMask's remote flags tune the controllers per chain. The one set here shortens the
  // "accelerated" receipt polling after a submit (default: every 3 s, 10 times, then on each
  // new block) so a dev node's instant blocks are picked up quickly.
  root.registerActionHandler("RemoteFeatureFlagController:getState", () => ({
    remoteFeatureFlags: {
      confirmations_transactions: {
        acceleratedPolling: {
          perChainConfig: { [CHAIN_ID_HEX]: { countMax: 20, intervalMs: POLL_MS } },
        },
      },
    },
    cacheTimestamp: Date.now(),
  }));
  const capturedExceptions = [];
  root.registerActionHandler("ErrorReportingService:captureException", (error) => {
    capturedExceptions.push(error);
  });

  // NetworkController, with the extension's default networks in state (MetaMask always has them).
  const networkMessenger = new Messenger({ namespace: "NetworkController", parent: root });
  root.delegate({
    actions: ["ErrorReportingService:captureException"],
    messenger: networkMessenger,
  });
  const network = new NetworkController({
    messenger: networkMessenger,
    infuraProjectId: "unused-no-infura-network-is-selected",
    getRpcServiceOptions: () => ({ fetch: guardedFetch, btoa: globalThis.btoa }),
    getBlockTrackerOptions: () => ({ pollingInterval: POLL_MS }),
  });

  const configuration = network.addNetwork({
    chainId: CHAIN_ID_HEX,
    name: NETWORK_FORM.name,
    nativeCurrency: NETWORK_FORM.ticker,
    rpcEndpoints: [{ url: RPC_URL, type: RpcEndpointType.Custom, name: NETWORK_FORM.name }],
    defaultRpcEndpointIndex: 0,
    blockExplorerUrls: [],
  });
  const { networkClientId } = configuration.rpcEndpoints[configuration.defaultRpcEndpointIndex];
  await network.setActiveNetwork(networkClientId);
  const networkClient = network.getNetworkClientById(networkClientId);

  // GasFeeController: the extension's getGasFeeEstimates. MetaMask first asks its gas API,
  // which has no estimates for a private chain, then falls back to eth_gasPrice. Here the API
  // is either switched off (nonRPCGasFeeApisDisabled, the default for these scenarios) or
  // left on and refused by guardedFetch, which is what an unsupported chain amounts to.
  const gasMessenger = new Messenger({ namespace: "GasFeeController", parent: root });
  root.delegate({
    actions: [
      "NetworkController:getState",
      "NetworkController:getNetworkClientById",
      "NetworkController:getEIP1559Compatibility",
    ],
    events: ["NetworkController:networkDidChange"],
    messenger: gasMessenger,
  });
  const gasFees = new GasFeeController({
    messenger: gasMessenger,
    state: { nonRPCGasFeeApisDisabled: !nonRpcGasApis },
    interval: 10_000,
    getProvider: () => networkClient.provider,
    getCurrentNetworkEIP1559Compatibility: () => network.getEIP1559Compatibility(),
    getCurrentNetworkLegacyGasAPICompatibility: () => false,
    getCurrentAccountEIP1559Compatibility: () => true,
    EIP1559APIEndpoint: "https://gas.api.cx.metamask.io/networks/<chain_id>/suggestedGasFees",
    legacyAPIEndpoint: "https://gas.api.cx.metamask.io/networks/<chain_id>/gasPrices",
    clientId: "coco-gateway-tests",
  });

  // TransactionController, with the options the extension passes that matter on a custom
  // network; simulation, first-time-interaction and incoming-transaction lookups use
  // MetaMask's servers and are off.
  const txMessenger = new Messenger({ namespace: "TransactionController", parent: root });
  root.delegate({
    actions: [
      "AccountsController:getSelectedAccount",
      "AccountsController:getState",
      "ApprovalController:addRequest",
      "NetworkController:findNetworkClientIdByChainId",
      "NetworkController:getNetworkClientById",
      "RemoteFeatureFlagController:getState",
    ],
    events: ["NetworkController:stateChange"],
    messenger: txMessenger,
  });
  const transactions = new TransactionController({
    messenger: txMessenger,
    disableHistory: false,
    disableSendFlowHistory: true,
    disableSwaps: true,
    getCurrentNetworkEIP1559Compatibility: () => network.getEIP1559Compatibility(),
    getGasFeeEstimates: (options) => gasFees.fetchGasFeeEstimates(options),
    getNetworkClientRegistry: () => network.getNetworkClientRegistry(),
    getNetworkState: () => network.state,
    getPermittedAccounts: async () => (address ? [address.toLowerCase()] : []),
    getSavedGasFees: () => undefined,
    incomingTransactions: { isEnabled: () => false },
    isFirstTimeInteractionEnabled: () => false,
    isSimulationEnabled: () => false,
    pendingTransactions: { isResubmitEnabled: () => false },
    // KeyringController.signTransaction hands the unsigned @ethereumjs/tx object to the
    // account's keyring; for an imported key that is SimpleKeyring.
    sign: (transaction, from) => keyring.signTransaction(from, transaction),
    transactionHistoryLimit: 40,
    hooks: {},
  });

  const events = [];
  for (const name of [
    "unapprovedTransactionAdded",
    "transactionApproved",
    "transactionSubmitted",
    "transactionConfirmed",
    "transactionFailed",
    "transactionDropped",
    "transactionRejected",
  ]) {
    root.subscribe(`TransactionController:${name}`, (payload) => {
      events.push({ name, payload });
    });
  }

  return {
    address: address?.toLowerCase(),
    approvals,
    capturedExceptions,
    configuration,
    events,
    gasFees,
    keyring,
    messenger: root,
    network,
    networkClient,
    networkClientId,
    transactions,
    /** A request through MetaMask's network client: middleware stack, then the RPC service. */
    request: (method, params = []) => networkClient.provider.request({ method, params }),
    destroy() {
      transactions.destroy();
      gasFees.stopAllPolling?.();
      network.destroy?.();
    },
  };
}
