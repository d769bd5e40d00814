// SPDX-License-Identifier: MIT
// defistress: a Chainlink-style price feed for local test chains (the project's own code, compiled at test time
// with solc-js from the npm registry). Aave's MockAggregator (core-v3 1.19.3) has latestAnswer only; this feed
// also keeps every round, so `latestRoundData` / `getRoundData` (AggregatorV3Interface) can be read and replayed.
pragma solidity 0.8.28;

contract RoundFeed {
    struct Round {
        int256 answer;
        uint64 startedAt;
        uint64 updatedAt;
    }

    uint8 public immutable decimals;
    uint16 public immutable phaseId; // round ids are phaseId << 64 | n, as behind a Chainlink proxy
    address public immutable writer;
    uint256 public constant version = 4;
    string public description;

    uint64 internal _latest; // n of the latest round (0: none yet)
    mapping(uint64 => Round) internal _rounds;

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);

    constructor(uint8 decimals_, string memory description_, uint16 phaseId_, int256 initialAnswer) {
        decimals = decimals_;
        description = description_;
        phaseId = phaseId_;
        writer = msg.sender;
        if (initialAnswer != 0) _push(initialAnswer);
    }

    /// A new round answered now (block.timestamp), like an OCR transmission; only the deployer may write.
    function transmit(int256 answer) external {
        require(msg.sender == writer, "RoundFeed: only the writer");
        _push(answer);
    }

    function _push(int256 answer) internal {
        uint64 n = _latest + 1;
        _latest = n;
        _rounds[n] = Round(answer, uint64(block.timestamp), uint64(block.timestamp));
        uint256 id = _id(n);
        emit NewRound(id, msg.sender, block.timestamp);
        emit AnswerUpdated(answer, id, block.timestamp);
    }

    function _id(uint64 n) internal view returns (uint256) {
        return (uint256(phaseId) << 64) | n;
    }

    function _data(uint64 n) internal view returns (uint80, int256, uint256, uint256, uint80) {
        Round memory r = _rounds[n];
        uint80 id = uint80(_id(n));
        return (id, r.answer, r.startedAt, r.updatedAt, id);
    }

    function latestRoundData() external view returns (uint80, int256, uint256, uint256, uint80) {
        require(_latest != 0, "No data present");
        return _data(_latest);
    }

    function getRoundData(uint80 roundId) external view returns (uint80, int256, uint256, uint256, uint80) {
        uint64 n = uint64(roundId);
        require(roundId >> 64 == phaseId && n != 0 && n <= _latest, "No data present");
        return _data(n);
    }

    function latestAnswer() external view returns (int256) {
        return _rounds[_latest].answer;
    }

    function latestTimestamp() external view returns (uint256) {
        return _rounds[_latest].updatedAt;
    }

    function latestRound() external view returns (uint256) {
        return _latest == 0 ? 0 : _id(_latest);
    }
}
