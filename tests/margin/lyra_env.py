"""The expiry and forward table Lyra's v2-core unit tests share (test/risk-managers/unit-tests/
TestCaseExpiries.t.sol): expiries at block.timestamp + N days + 8 hours, forwards = default spot + an addition."""

DAY = 86_400.0
DAYS = {"20230104": 3, "20230111": 10, "20230118": 17, "20230227": 57, "20230804": 215, "20230811": 222}
DAYS |= {"20230818": 229, "20230825": 238}
ETH_FWD_ADD = {"20230104": 0.91345, "20230111": 2.83305, "20230118": 4.7545, "20230227": 15.7696}
ETH_FWD_ADD |= {"20230804": 59.87416, "20230811": 61.85933, "20230818": 63.8284, "20230825": 66.3744}
BTC_FWD_ADD = {"20230104": 12.7883, "20230111": 39.66276, "20230118": 66.56301, "20230227": 220.77451}
BTC_FWD_ADD |= {"20230804": 838.23835, "20230811": 865.90472, "20230818": 893.59763, "20230825": 929.24184}


def sec(date: str) -> float:
    """Seconds to expiry of a TestCaseExpiries date (N days + 8 hours)."""
    return DAYS[date] * DAY + 8 * 3600.0
