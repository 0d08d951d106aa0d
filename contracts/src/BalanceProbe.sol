// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title BalanceProbe
/// @notice Reads native balances with BALANCE, as any contract can. Tests use it to show what
/// the private-balances chain rule (docs/consensus.md) lets code see: on such a chain an
/// account without code reads as 0 unless it is the transaction's signer (or, in a call, the
/// caller) or the running contract itself.
contract BalanceProbe {
    /// address(this).balance as the constructor saw it (the value sent with the deployment).
    uint256 public seenAtDeploy;
    /// What the last `record` call read.
    uint256 public lastSeen;

    event Seen(address indexed who, uint256 balance);

    constructor() payable {
        seenAtDeploy = address(this).balance;
    }

    /// who.balance, as a view (eth_call, eth_estimateGas).
    function balanceOf(address who) external view returns (uint256) {
        return who.balance;
    }

    /// The caller's own balance: tx.origin.balance.
    function originBalance() external view returns (uint256) {
        return tx.origin.balance;
    }

    /// Gas use that grows with who.balance (one loop step per wei, at most `cap` steps),
    /// so that a gas estimate would carry the balance out if BALANCE told it.
    function spendByBalance(address who, uint256 cap) external view returns (uint256 steps) {
        uint256 balance = who.balance;
        uint256 acc = 0;
        for (uint256 i = 0; i < balance && i < cap; i++) {
            acc += i;
            steps++;
        }
        if (acc == type(uint256).max) revert();
    }

    /// Reads who.balance in a transaction and carries it out in storage and in a log.
    function record(address who) external returns (uint256 balance) {
        balance = who.balance;
        lastSeen = balance;
        emit Seen(who, balance);
    }
}
