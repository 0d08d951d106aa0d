// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.28;

/// @title SealedBidAuction
/// @notice A first-price sealed-bid auction: bids stay secret while bidding is open, then
///         anyone may close it, which picks the highest bid and opens every bid to view.
/// @dev The bids are plain numbers in contract storage. What keeps them sealed is that no
///      function shows another bidder's bid before the close, and that a confidential node
///      neither serves storage (`eth_getStorageAt`) nor shows the call data of encrypted
///      transactions. There is no commit-reveal round, which an ordinary chain would need.
///      Bids are amounts promised, not ether sent: a transaction's value is public even on
///      the gateway, so paying with `msg.value` would publish the bid. Settlement (payment
///      by the winner) is left to the seller and the winner, to keep the example small.
///      The winner is found at the close, not tracked as bids arrive: a running maximum would
///      write storage only when a bid beats the leader, and the gas used, which receipts
///      show, would tell every bidder whether they were leading.
contract SealedBidAuction {
    /// Bound on the number of bidders, so that `close()` always fits in a block.
    uint256 public constant MAX_BIDDERS = 100;

    address public immutable seller;
    /// Bids are taken while `block.timestamp < endTime`; the auction closes after it.
    uint256 public immutable endTime;

    mapping(address => uint256) private _bids;
    address[] private _bidders;

    bool public closed;
    address private _winner;
    uint256 private _winningBid;

    event Closed(address indexed winner, uint256 amount, uint256 bidders);

    error BiddingClosed(uint256 endTime);
    error BiddingOpen(uint256 endTime);
    error ZeroBid();
    error AlreadyBid(address bidder);
    error TooManyBidders(uint256 max);
    /// `caller` asked for `bidder`'s bid while bids are sealed.
    error BidSealed(address caller, address bidder);
    error AlreadyClosed();
    error NotClosed();

    constructor(uint256 biddingTime) {
        seller = msg.sender;
        endTime = block.timestamp + biddingTime;
    }

    /// Place a sealed bid of `amount`, once per address, while bidding is open.
    function bid(uint256 amount) external {
        if (block.timestamp >= endTime) revert BiddingClosed(endTime);
        if (amount == 0) revert ZeroBid();
        if (_bids[msg.sender] != 0) revert AlreadyBid(msg.sender);
        if (_bidders.length >= MAX_BIDDERS) revert TooManyBidders(MAX_BIDDERS);
        _bids[msg.sender] = amount;
        _bidders.push(msg.sender);
    }

    /// How many have bid. Public: that they bid shows in their transactions anyway.
    function bidderCount() external view returns (uint256) {
        return _bidders.length;
    }

    /// `bidder`'s bid: for the bidder alone while bids are sealed, for anyone once closed.
    function bidOf(address bidder) external view returns (uint256) {
        if (!closed && msg.sender != bidder) revert BidSealed(msg.sender, bidder);
        return _bids[bidder];
    }

    /// Close the auction once bidding time is over: anyone may. The highest bid wins; of
    /// equal bids, the earliest. With no bids the winner is address zero.
    function close() external {
        if (block.timestamp < endTime) revert BiddingOpen(endTime);
        if (closed) revert AlreadyClosed();
        address best;
        uint256 bestBid;
        uint256 count = _bidders.length;
        for (uint256 i = 0; i < count; ++i) {
            address bidder = _bidders[i];
            uint256 amount = _bids[bidder];
            if (amount > bestBid) {
                best = bidder;
                bestBid = amount;
            }
        }
        closed = true;
        _winner = best;
        _winningBid = bestBid;
        emit Closed(best, bestBid, count);
    }

    /// The winner and the winning bid, once closed.
    function winner() external view returns (address, uint256) {
        if (!closed) revert NotClosed();
        return (_winner, _winningBid);
    }
}
