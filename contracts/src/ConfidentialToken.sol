// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title ConfidentialToken
/// @notice A token whose balances only their owners can read. The total supply is public.
/// @dev Two things make this private, and the contract supplies only the first:
///      1. The contract's own rule: `balanceOf(account)` answers only when `msg.sender` is
///         `account`, and reverts with `NotBalanceOwner` otherwise.
///      2. The node's rules: the gateway runs the EVM inside an enclave and does not serve
///         contract storage (`eth_getStorageAt`) on a confidential node, so the mapping
///         behind `balanceOf` cannot be read around the function. Its unauthenticated
///         `eth_call` runs with `msg.sender` zero, so rule 1 refuses it; an authenticated
///         read carries the signer as `msg.sender`, so an owner reads their own balance.
///      On an ordinary Ethereum node rule 1 alone hides nothing: anyone can read the storage
///      slot or set `from` on `eth_call`.
///      No allowances, to keep the example small. Transfers emit the standard ERC-20
///      `Transfer` event so that wallets notice them; the amount is the log's data, which the
///      gateway seals to the sender for an encrypted (enveloped) transaction, while the two
///      parties are topics, visible to anyone who can read the logs. Gas used is public
///      too: a transfer to an address that held none of the token costs more (a fresh
///      storage slot), which shows that the recipient was new to it.
contract ConfidentialToken {
    string public name;
    string public symbol;
    uint8 public constant decimals = 18;
    uint256 public totalSupply;

    mapping(address => uint256) private _balances;

    event Transfer(address indexed from, address indexed to, uint256 value);

    /// `caller` asked for the balance of `account`; only `account` itself may.
    error NotBalanceOwner(address caller, address account);
    /// The sender's own balance, told only to the sender.
    error InsufficientBalance(uint256 balance, uint256 needed);
    error InvalidReceiver(address receiver);

    constructor(string memory name_, string memory symbol_, uint256 initialSupply) {
        name = name_;
        symbol = symbol_;
        totalSupply = initialSupply;
        _balances[msg.sender] = initialSupply;
        emit Transfer(address(0), msg.sender, initialSupply);
    }

    /// The balance of `account`, for `account` only. Transfers to address zero are refused,
    /// so the zero sender of an unauthenticated call has nothing to read.
    function balanceOf(address account) external view returns (uint256) {
        if (msg.sender != account) revert NotBalanceOwner(msg.sender, account);
        return _balances[account];
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        if (to == address(0)) revert InvalidReceiver(to);
        uint256 balance = _balances[msg.sender];
        if (balance < amount) revert InsufficientBalance(balance, amount);
        unchecked {
            _balances[msg.sender] = balance - amount;
            _balances[to] += amount; // cannot overflow: the sum of balances is totalSupply
        }
        emit Transfer(msg.sender, to, amount);
        return true;
    }
}
