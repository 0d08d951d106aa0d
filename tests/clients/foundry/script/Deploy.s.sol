// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

import {Counter} from "../src/Counter.sol";
import {Token} from "../src/Token.sol";

/// @notice The forge cheatcodes this script uses. forge answers calls to a fixed address
///         (the one derived from "hevm cheat code"); declaring the few functions needed
///         here keeps the script free of forge-std, which an offline machine does not have.
interface Cheatcodes {
    function envUint(string calldata name) external view returns (uint256);
    function envAddress(string calldata name) external view returns (address);
    function startBroadcast(uint256 privateKey) external;
    function stopBroadcast() external;
}

/// @title Deploy
/// @notice Deploys Token and Counter, bumps the counter twice and sends tokens on.
/// @dev Environment: PRIVATE_KEY (the deployer, who receives the whole supply),
///      RECIPIENT (who receives TRANSFER_AMOUNT token units).
contract Deploy {
    Cheatcodes internal constant vm =
        Cheatcodes(address(uint160(uint256(keccak256("hevm cheat code")))));

    uint256 public constant INITIAL_SUPPLY = 1_000_000 ether;
    uint256 public constant TRANSFER_AMOUNT = 1_234 ether;

    function run() external returns (Token token, Counter counter) {
        uint256 key = vm.envUint("PRIVATE_KEY");
        address recipient = vm.envAddress("RECIPIENT");

        vm.startBroadcast(key);
        token = new Token("Scripted", "SCR", INITIAL_SUPPLY);
        counter = new Counter();
        counter.increment();
        counter.increment();
        require(token.transfer(recipient, TRANSFER_AMOUNT), "transfer failed");
        vm.stopBroadcast();
    }
}
