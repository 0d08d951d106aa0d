// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title PrivateVote
/// @notice A secret ballot among a fixed roll of voters: each voter can read back only their
///         own ballot, and nobody can read the tallies until the deadline has passed.
/// @dev The ballots are in contract storage; a confidential node neither serves storage
///      (`eth_getStorageAt`) nor shows the call data of encrypted transactions, so only the
///      functions below reveal anything. Turnout is not secret: that a voter voted shows in
///      their transaction to this contract.
///      Every vote must cost the same gas, because receipts show the gas used: a tally that
///      went from zero to one would cost a fresh storage slot (20,000 gas more) and reveal
///      that the voter was the first to pick that option. So each tally starts at one and
///      `results()` subtracts it. (The option's own bytes cost calldata gas too, but the
///      gateway charges that on the encrypted envelope, which is the same for every option.)
contract PrivateVote {
    /// Votes are taken while `block.timestamp < deadline`; results are readable after it.
    uint256 public immutable deadline;
    uint256 public immutable optionCount;

    mapping(address => bool) public isVoter;
    /// option + 1, so that zero means "has not voted"
    mapping(address => uint256) private _ballots;
    /// 1 + votes for each option (see above)
    uint256[] private _tallies;

    error NotAVoter(address caller);
    error AlreadyVoted(address voter);
    error NotVoted(address caller);
    error InvalidOption(uint256 option, uint256 optionCount);
    error VotingClosed(uint256 deadline);
    error VotingOpen(uint256 deadline);
    error NoOptions();

    /// A vote on `options` options (numbered from 0), open for `votingTime` seconds, among
    /// `voters`.
    constructor(uint256 options, uint256 votingTime, address[] memory voters) {
        if (options == 0) revert NoOptions();
        deadline = block.timestamp + votingTime;
        optionCount = options;
        for (uint256 i = 0; i < options; ++i) {
            _tallies.push(1);
        }
        for (uint256 i = 0; i < voters.length; ++i) {
            isVoter[voters[i]] = true;
        }
    }

    /// Cast the caller's ballot for `option`, once, before the deadline.
    function vote(uint256 option) external {
        if (block.timestamp >= deadline) revert VotingClosed(deadline);
        if (!isVoter[msg.sender]) revert NotAVoter(msg.sender);
        if (_ballots[msg.sender] != 0) revert AlreadyVoted(msg.sender);
        if (option >= optionCount) revert InvalidOption(option, optionCount);
        _ballots[msg.sender] = option + 1;
        _tallies[option] += 1;
    }

    /// The caller's own ballot. Nobody else's can be read, before or after the deadline.
    function myBallot() external view returns (uint256) {
        uint256 ballot = _ballots[msg.sender];
        if (ballot == 0) revert NotVoted(msg.sender);
        return ballot - 1;
    }

    /// The votes for each option, once the deadline has passed.
    function results() external view returns (uint256[] memory counts) {
        if (block.timestamp < deadline) revert VotingOpen(deadline);
        counts = new uint256[](_tallies.length);
        for (uint256 i = 0; i < counts.length; ++i) {
            counts[i] = _tallies[i] - 1;
        }
    }
}
