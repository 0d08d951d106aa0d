// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title Events
/// @notice Exercises what JSON-RPC clients need from a node: logs with indexed and
///         dynamic data, every kind of revert, value transfers, a view that echoes
///         its input, and a function whose gas use the caller chooses.
contract Events {
    uint256 public value;
    uint256 private spins;
    mapping(uint256 => uint256) private scratch;

    event ValueChanged(address indexed who, uint256 indexed oldValue, uint256 newValue);
    event Note(address indexed from, string text);
    event Deposited(address indexed from, uint256 amount);

    error Custom(uint256 code, string why);

    /// @notice Stores `newValue` and logs the old and new values.
    function setValue(uint256 newValue) external {
        uint256 oldValue = value;
        value = newValue;
        emit ValueChanged(msg.sender, oldValue, newValue);
    }

    /// @notice Logs a string payload.
    function note(string calldata text) external {
        emit Note(msg.sender, text);
    }

    /// @notice Reverts with Error(string) "Events: always fails".
    function failRequire() external pure {
        require(false, "Events: always fails");
    }

    /// @notice Reverts with the custom error Custom(code, "custom failure").
    function failCustom(uint256 code) external pure {
        revert Custom(code, "custom failure");
    }

    /// @notice Reverts with no return data.
    function failPlain() external pure {
        revert();
    }

    /// @notice Reverts with Panic(0x12) (division by zero).
    function failPanic() external view returns (uint256) {
        // `value` is read from storage so the optimizer cannot fold the division away;
        // dividing by (value - value) is always a division by zero.
        uint256 zero = value - value;
        return 1 / zero;
    }

    /// @notice Accepts ether and logs the amount.
    function deposit() external payable {
        emit Deposited(msg.sender, msg.value);
    }

    /// @notice Returns its input unchanged.
    function echo(bytes calldata data) external pure returns (bytes memory) {
        return data;
    }

    /// @notice Burns gas in proportion to `n`: n storage writes to fresh slots.
    function spin(uint256 n) external {
        uint256 start = spins;
        for (uint256 i = 0; i < n; ++i) {
            scratch[start + i] = i + 1;
        }
        spins = start + n;
    }
}
