// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title Counter
/// @notice The classic minimal counter, used by forge script tests.
contract Counter {
    uint256 public number;

    function setNumber(uint256 newNumber) public {
        number = newNumber;
    }

    function increment() public {
        number++;
    }
}
