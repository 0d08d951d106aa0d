// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.31;

/// @title BitMath
/// @notice Bit arithmetic on Osaka's CLZ opcode (EIP-7939), as solc 0.8.31 and later compile
///         `clz` in inline assembly for evmVersion osaka (its default from 0.8.37). On a chain
///         before Osaka every function here fails with "invalid opcode".
contract BitMath {
    error Log2OfZero();

    /// @notice The number of leading zero bits of `x` (256 for zero).
    function leadingZeros(uint256 x) public pure returns (uint256 n) {
        assembly {
            n := clz(x)
        }
    }

    /// @notice floor(log2(x)), the index of the highest set bit; reverts for zero.
    function log2(uint256 x) external pure returns (uint256) {
        if (x == 0) revert Log2OfZero();
        return 255 - leadingZeros(x);
    }

    /// @notice The number of bits needed to write `x` (0 for zero).
    function bitLength(uint256 x) external pure returns (uint256) {
        return 256 - leadingZeros(x);
    }
}
