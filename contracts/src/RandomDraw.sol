// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title RandomDraw
/// @notice A prize draw whose winner is picked with the gateway's confidential random-bytes
///         precompile and stays secret: only the organizer can read who won, and each entrant
///         can ask only whether they themselves won.
/// @dev The precompile at 0x000000000000000000000000000000000000c0c0 takes the wanted
///      length as one uint256 word (empty input means 32) and returns that many bytes from
///      the CSPRNG of the enclave that executes the transaction. Nobody can predict them:
///      not the organizer, not the entrants, not the host running the node. An `eth_call`
///      of `draw()` draws fresh bytes that the mined transaction will not see again, so
///      previewing the outcome is useless. On a chain without the precompile the staticcall
///      returns no data and the contract reverts with `RandomnessUnavailable`.
contract RandomDraw {
    /// The gateway's random-bytes precompile.
    address public constant RANDOM_BYTES = address(0xc0c0);

    address public immutable organizer;

    address[] private _entrants;
    mapping(address => bool) private _entered;
    address private _winner;
    bool public drawn;

    /// The draw took place among `entrants` entrants. The winner is not in the log.
    event Drawn(uint256 entrants);

    error NotOrganizer(address caller);
    error AlreadyEntered(address entrant);
    error AlreadyDrawn();
    error NotDrawn();
    error NoEntrants();
    error RandomnessUnavailable();

    constructor() {
        organizer = msg.sender;
    }

    /// Enter the draw, once per address, until it is drawn.
    function enter() external {
        if (drawn) revert AlreadyDrawn();
        if (_entered[msg.sender]) revert AlreadyEntered(msg.sender);
        _entered[msg.sender] = true;
        _entrants.push(msg.sender);
    }

    function entrantCount() external view returns (uint256) {
        return _entrants.length;
    }

    /// Pick the winner. Only the organizer may draw: if anyone could, a contract could call
    /// `draw()` and revert whenever it had not won, retrying until it did (the usual attack on
    /// randomness that is read in the same transaction that acts on it).
    function draw() external {
        if (msg.sender != organizer) revert NotOrganizer(msg.sender);
        if (drawn) revert AlreadyDrawn();
        uint256 count = _entrants.length;
        if (count == 0) revert NoEntrants();
        // A 256-bit word modulo a small count: the bias is below 2**-200.
        _winner = _entrants[_randomWord() % count];
        drawn = true;
        emit Drawn(count);
    }

    /// The winner, for the organizer's eyes only.
    function winner() external view returns (address) {
        if (msg.sender != organizer) revert NotOrganizer(msg.sender);
        if (!drawn) revert NotDrawn();
        return _winner;
    }

    /// Whether the caller won. Asked without a signer (sender zero), the answer is false.
    function hasWon() external view returns (bool) {
        if (!drawn) revert NotDrawn();
        return msg.sender == _winner;
    }

    /// `length` fresh random bytes (at most 1024), straight from the precompile. A view: each
    /// `eth_call` answers differently, by design.
    function randomBytes(uint256 length) external view returns (bytes memory) {
        return _random(length);
    }

    function _randomWord() private view returns (uint256) {
        return abi.decode(_random(32), (uint256));
    }

    function _random(uint256 length) private view returns (bytes memory out) {
        bool ok;
        (ok, out) = RANDOM_BYTES.staticcall(abi.encode(length));
        if (!ok || out.length != length) revert RandomnessUnavailable();
    }
}
