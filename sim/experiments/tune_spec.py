"""What `defistress tune` searches and scores: --param ranges, --objective and --constraint, parsed and checked.

- `--param KEY=LOW..HIGH` a float range (`KEY=LOW..HIGH:log` on a log scale, `KEY=LOW..HIGH:STEP` on a
  step); both ends integers makes an integer range; `KEY=a,b,c` a categorical choice.
- `--objective min:STAT_METRIC` or `max:STAT_METRIC` (trial metrics, `sim/analysis/metric_expr.py`), e.g.
  `min:mean_liquidator_value_leakage_usd`; `max:param:KEY` scores a tuned parameter itself (capital
  efficiency as the LTV a market can offer). Several objectives make a multi-objective study.
- `--constraint STAT_METRIC<=VALUE` (or `<`, `>=`, `>`), e.g. `var99_bad_debt_usd<=250k`; VALUE takes `_`,
  `,`, a leading `$` and a k/M/B suffix. Constraints reach the sampler as Optuna's constraints_func values
  (<= 0 is feasible).

Every refusal is a `TuneInputError` naming the option, the offending text and what is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from defistress.sim.analysis.metric_expr import MetricError, TrialMetric, parse_metric

DIRECTIONS = {"min": "minimize", "minimize": "minimize", "max": "maximize", "maximize": "maximize"}
COMPARISONS = ("<=", ">=", "<", ">")  # longest first, so "<=" is not read as "<"
_SUFFIX = {"k": 1e3, "m": 1e6, "b": 1e9}
_INT = re.compile(r"^[+-]?\d+$")


class TuneInputError(ValueError):
    """A --param, --objective or --constraint that cannot be used; the message names the option and allowed values."""


@dataclass(frozen=True)
class ParamSpec:
    """One tuned scenario key and the values it may take."""

    key: str
    kind: str  #: "float", "int" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple[Any, ...] = ()

    def distribution(self) -> Any:
        """The Optuna distribution of this parameter."""
        import optuna.distributions as d

        if self.kind == "categorical":
            return d.CategoricalDistribution(list(self.choices))
        assert self.low is not None and self.high is not None
        if self.kind == "int":
            return d.IntDistribution(int(self.low), int(self.high), log=self.log, step=int(self.step or 1))
        return d.FloatDistribution(self.low, self.high, log=self.log, step=self.step)

    def extremes(self) -> list[Any]:
        """Values that bound the range (both ends, or every choice): checked against the scenario up front."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    @property
    def text(self) -> str:
        if self.kind == "categorical":
            return f"{self.key}={','.join(map(str, self.choices))}"
        suffix = ":log" if self.log else (f":{self.step:g}" if self.step else "")
        return f"{self.key}={self.low:g}..{self.high:g}{suffix}"


def _number(text: str, where: str) -> float:
    t = text.strip().replace("_", "").replace(",", "").lstrip("$")
    scale = 1.0
    if t and t[-1].lower() in _SUFFIX:
        scale, t = _SUFFIX[t[-1].lower()], t[:-1]
    try:
        v = float(t) * scale
    except ValueError:
        raise TuneInputError(f"{where}: {text.strip()!r} is not a number (e.g. 0.05, 1e6, 250k, $2M)") from None
    if not math.isfinite(v):
        raise TuneInputError(f"{where}: {text.strip()!r} must be finite")
    return v


def parse_param(text: str) -> ParamSpec:
    from defistress.scenarios.loader import _parse_value

    where = f"--param {text!r}"
    key, eq, spec = text.partition("=")
    key, spec = key.strip(), spec.strip()
    if not eq or not key or not spec:
        raise TuneInputError(f"{where}: expected KEY=LOW..HIGH (float or integer range) or KEY=a,b,c (choices)")
    if ".." in spec:
        rng, _, option = spec.partition(":")
        lo_t, _, hi_t = rng.partition("..")
        lo, hi = _number(lo_t, where), _number(hi_t, where)
        if not lo < hi:
            raise TuneInputError(f"{where}: LOW must be below HIGH (got {lo:g}..{hi:g})")
        is_int = bool(_INT.match(lo_t.strip()) and _INT.match(hi_t.strip()))
        log, step = option.strip() == "log", None
        if option.strip() and not log:
            step = _number(option, where)
            if step <= 0 or step > hi - lo:
                raise TuneInputError(f"{where}: STEP must be in (0, HIGH - LOW] (got {step:g})")
            if is_int and step != int(step):
                raise TuneInputError(f"{where}: an integer range takes an integer STEP (got {step:g})")
        if log and lo <= 0:
            raise TuneInputError(f"{where}: a log range needs LOW > 0 (got {lo:g})")
        return ParamSpec(key, "int" if is_int else "float", lo, hi, log, step)
    choices = tuple(dict.fromkeys(_parse_value(v.strip()) for v in spec.split(",") if v.strip()))
    if len(choices) < 2:
        raise TuneInputError(f"{where}: give a range LOW..HIGH or at least two choices a,b (one value: use --set)")
    return ParamSpec(key, "categorical", choices=choices)


@dataclass(frozen=True)
class Objective:
    """A figure to minimise or maximise: a trial metric, or a tuned parameter's own value (`param:KEY`)."""

    text: str
    direction: str  #: "minimize" or "maximize"
    metric: TrialMetric | None = None
    param: str | None = None

    @property
    def name(self) -> str:
        return self.metric.name if self.metric else f"param:{self.param}"


@dataclass(frozen=True)
class Constraint:
    """A bound on a trial metric; `violation(v)` <= 0 means it holds (Optuna's convention)."""

    text: str
    metric: TrialMetric
    op: str
    bound: float

    def violation(self, value: float) -> float:
        if math.isnan(value):
            return math.inf
        return value - self.bound if self.op in ("<=", "<") else self.bound - value

    def holds(self, value: float) -> bool:
        return self.violation(value) <= 0.0


def parse_objective(text: str, allowed: Sequence[str] | None, params: Sequence[ParamSpec]) -> Objective:
    where = f"--objective {text!r}"
    head, colon, rest = text.strip().partition(":")
    if not colon or head.lower() not in DIRECTIONS:
        raise TuneInputError(
            f"{where}: expected min:METRIC or max:METRIC (e.g. min:mean_liquidator_value_leakage_usd, "
            "max:param:protocols.lend.assets.ETH.ltv)"
        )
    direction = DIRECTIONS[head.lower()]
    if rest.startswith("param:"):
        key = rest[len("param:") :]
        numeric = [p.key for p in params if p.kind != "categorical"]
        if key not in numeric:
            raise TuneInputError(f"{where}: param:{key} is not a tuned numeric --param; allowed: {numeric or 'none'}")
        return Objective(text, direction, param=key)
    try:
        return Objective(text, direction, metric=parse_metric(rest, allowed, option="--objective"))
    except MetricError as exc:
        raise TuneInputError(str(exc)) from None


def parse_constraint(text: str, allowed: Sequence[str] | None) -> Constraint:
    where = f"--constraint {text!r}"
    for op in COMPARISONS:
        name, found, value = text.partition(op)
        if found:
            break
    else:
        raise TuneInputError(f"{where}: expected METRIC<=VALUE (or <, >=, >), e.g. var99_bad_debt_usd<=250k")
    try:
        metric = parse_metric(name, allowed, option="--constraint")
    except MetricError as exc:
        raise TuneInputError(str(exc)) from None
    return Constraint(text, metric, op, _number(value, where))


@dataclass(frozen=True)
class TuneSpec:
    """Everything a study searches and scores."""

    params: tuple[ParamSpec, ...]
    objectives: tuple[Objective, ...]
    constraints: tuple[Constraint, ...] = field(default=())

    @property
    def metrics(self) -> list[TrialMetric]:
        """Every trial metric computed for each trial (objectives first, then constraints), without repeats."""
        out: dict[str, TrialMetric] = {}
        for o in self.objectives:
            if o.metric:
                out.setdefault(o.metric.name, o.metric)
        for c in self.constraints:
            out.setdefault(c.metric.name, c.metric)
        return list(out.values())

    def describe(self) -> dict[str, Any]:
        return {
            "params": [p.text for p in self.params],
            "objectives": [o.text for o in self.objectives],
            "constraints": [c.text for c in self.constraints],
        }


def parse_spec(
    params: Sequence[str], objectives: Sequence[str], constraints: Sequence[str], allowed: Sequence[str] | None
) -> TuneSpec:
    """Parse the command line's texts; `allowed` lists the run metrics (None: any name, for a run function)."""
    if not params:
        raise TuneInputError(
            "--param: give at least one, e.g. --param protocols.lend.assets.ETH.liquidation_bonus=0.02..0.15"
        )
    ps = [parse_param(p) for p in params]
    keys = [p.key for p in ps]
    dup = sorted({k for k in keys if keys.count(k) > 1})
    if dup:
        raise TuneInputError(f"--param: {dup[0]} is given twice")
    if not objectives:
        raise TuneInputError("--objective: give at least one, e.g. --objective min:mean_liquidator_value_leakage_usd")
    objs = [parse_objective(o, allowed, ps) for o in objectives]
    names = [o.name for o in objs]
    if len(set(names)) < len(names):
        raise TuneInputError(f"--objective: {next(n for n in names if names.count(n) > 1)} is given twice")
    return TuneSpec(tuple(ps), tuple(objs), tuple(parse_constraint(c, allowed) for c in constraints))
