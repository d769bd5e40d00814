"""`defistress margin ...`: compare margin models on example books, backtest a model on a historic price path.

Mount with `app.add_typer(margin_app, name="margin")`. Bad inputs (unknown model, invalid, binary or empty file,
an unusable --out) print one line naming the file or key and the allowed values, and exit with code 2 before
anything is written; a result holding NaN or infinity exits with code 1 (sim/cli/errors.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.columns import Columns
from rich.console import Console
from rich.table import Table

from defistress.sim.cli.errors import EXIT_CODES_HELP, EXIT_RUN_FAILED, bad_input, fail, guarded, run_failure

margin_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help=f"Compare margin models on the same books and backtest them on price paths.\n\n{EXIT_CODES_HELP}",
)
console = Console()

DEFAULT_MODELS = "aave-v3,compound-v3,dydx-v4,hyperliquid,lyra-standard,deribit-standard,greeks,dynamic,var-mc"
#: largest |qty| of the backtest's reference position, units (the portfolio files' ceiling)
MAX_QTY = 1e12
FORCE_HELP = "replace an earlier result of the same command at --out"


def _fail(message: str, code: int = 2) -> None:
    fail(message, code)


def _require_finite(df, what: str) -> None:
    """A result holding NaN or infinity is a failed computation (exit 1), never a table of it; rows a model does
    not support are flagged "unsupported" with NaN figures on purpose (never priced at zero) and are left out."""
    import numpy as np

    if "main_driver" in df:
        df = df[df["main_driver"] != "unsupported"]
    num = df.select_dtypes(include="number")
    bad = [c for c in num.columns if not np.isfinite(num[c].to_numpy(dtype=float)).all()]
    if bad:
        _fail(f"{what}: non-finite results in {bad}; nothing was written", EXIT_RUN_FAILED)


def _model_names(spec: str) -> list[str]:
    from defistress.protocols.margin.catalog import list_models

    names = [m.strip() for m in spec.split(",") if m.strip()]
    allowed = list_models()
    unknown = [m for m in names if m not in allowed]
    if unknown or not names:
        _fail(f"unknown model(s) {unknown or [spec]}; allowed: {', '.join(allowed)}")
    return names


def _usd(x: float) -> str:
    return "n/a" if x != x else f"{x:,.2f}"  # NaN: the model cannot value this book


@margin_app.command()
@guarded
def compare(
    portfolio_file: Path = typer.Argument(
        ...,
        help="TOML or JSON file with [market] and [[accounts]] (forward curves, collateral, coin-margined "
        "accounts, published SPAN arrays: see protocols/margin/portfolio_file.py)",
    ),
    models: str = typer.Option(DEFAULT_MODELS, help="comma-separated presets (see the error for the list)"),
    out: Path = typer.Option(
        Path("margin-compare"),
        help="folder for compare.csv and compare.png: new, empty, or an earlier margin comparison replaced with "
        "--force",
    ),
    history: Path | None = typer.Option(
        None, help="historic price CSV: return history for var-hs, var-fhs and the other history-based models"
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no tables; the output folder's path is still printed"),
):
    """Margin of every account under every model: a table per account side by side, compare.csv, compare.png."""
    from defistress.protocols.margin.compare import compare as run_compare
    from defistress.protocols.margin.compare import load_portfolio, load_price_path, returns_from_prices
    from defistress.sim.experiments.outdir import check_out, staged
    from defistress.sim.report.plots_margin import plot_compare

    names = _model_names(models)
    with bad_input():
        check_out(out, "margin-compare", force=force)
        book = load_portfolio(portfolio_file)
        pf, mkt = book.portfolio, book.market
        overrides = dict(book.overrides)  # e.g. the file's collateral parameters
        if history is not None:
            rets, step = returns_from_prices(load_price_path(history), pf.underlyings)
            overrides.update({"returns": rets, "step_days": step})
        df = run_compare(pf, mkt, names, overrides)
    _require_finite(df, str(portfolio_file))
    if not quiet:
        tables = []
        for account, sub in df.groupby("account", sort=False):
            t = Table(title=str(account), title_style="bold")
            for col in ("model", "IM USD", "MM USD", "equity USD", "excess USD", "driver"):
                t.add_column(col, justify="left" if col in ("model", "driver") else "right")
            for r in sub.to_dict("records"):
                style = "red" if r["excess_mm_usd"] < 0 else None
                t.add_row(
                    r["model"],
                    _usd(r["im_usd"]),
                    _usd(r["mm_usd"]),
                    _usd(r["equity_usd"]),
                    _usd(r["excess_mm_usd"]),
                    r["main_driver"],
                    style=style,
                )
            tables.append(t)
        console.print(Columns(tables))
    with run_failure():
        with staged(out, "margin-compare", {"portfolio": str(portfolio_file), "models": names}) as tmp:
            df.to_csv(tmp / "compare.csv", index=False)
            ax = plot_compare(df)
            ax.figure.savefig(tmp / "compare.png", dpi=120)
    if quiet:
        print(out)
    else:
        console.print(f"wrote {out / 'compare.csv'} and {out / 'compare.png'}")


@margin_app.command()
@guarded
def backtest(
    path: Path = typer.Option(..., help="historic price CSV (long format, '#' comment header)"),
    symbol: str = typer.Option(..., help="symbol in the file, e.g. ETH-USDT"),
    model: str = typer.Option("var-hs", help="preset to backtest (see the error for the list)"),
    confidence: float = typer.Option(0.99, min=0.5, max=1.0, help="coverage level, 0.5 < c < 1"),
    window: int = typer.Option(250, min=2, max=1_000_000, help="look-back window, steps (>= 2)"),
    venue: str | None = typer.Option(None, help="venue when the symbol has several"),
    qty: float = typer.Option(
        1.0, min=-MAX_QTY, max=MAX_QTY, help="reference position, units (negative: short; |qty| <= 1e12)"
    ),
    kind: str = typer.Option("perp", help="reference position kind: perp | spot"),
    out: Path = typer.Option(
        Path("margin-backtest"),
        help="folder for backtest.json and backtest.png: new, empty, or an earlier backtest replaced with --force",
    ),
    force: bool = typer.Option(False, "--force", help=FORCE_HELP),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no table; the output folder's path is still printed"),
):
    """Exceedances, Kupiec POF, Christoffersen independence and the Basel traffic light of one model."""
    import math

    from defistress.protocols.margin.backtest import backtest_model
    from defistress.protocols.margin.compare import load_price_path, price_series, underlying_of
    from defistress.sim.experiments.outdir import check_out, staged
    from defistress.sim.report.plots_margin import plot_backtest

    name = _model_names(model)[0]
    with bad_input():
        if not math.isfinite(qty) or qty == 0:
            raise ValueError(f"--qty {qty}: allowed a finite non-zero number of units with |qty| <= {MAX_QTY:g}")
        check_out(out, "margin-backtest", force=force)
        prices = price_series(load_price_path(path), symbol, venue)
        res = backtest_model(prices, name, confidence, window, qty=qty, kind=kind, underlying=underlying_of(symbol))
    figures = [v for v in res.to_dict().values() if isinstance(v, float)]
    if not all(math.isfinite(v) for v in figures):
        _fail(f"{path}: the backtest produced non-finite statistics; nothing was written", EXIT_RUN_FAILED)
    tl = res.traffic_light
    if not quiet:
        t = Table(title=f"{name} on {symbol}: {res.n} steps at {confidence:.2%}")
        t.add_column("test")
        t.add_column("statistic", justify="right")
        t.add_column("p-value / zone", justify="right")
        t.add_row(
            "exceedances (expected)", f"{res.exceedances} ({res.expected:.2f})", f"rate {res.exceedances / res.n:.4f}"
        )
        t.add_row("Kupiec POF LR", f"{res.kupiec_lr:.4f}", f"{res.kupiec_p:.4f}")
        t.add_row("Christoffersen independence LR", f"{res.christoffersen_lr:.4f}", f"{res.christoffersen_p:.4f}")
        t.add_row("conditional coverage LR", f"{res.conditional_coverage_lr:.4f}", f"{res.conditional_coverage_p:.4f}")
        t.add_row(
            "Basel traffic light",
            f"plus factor {tl.plus_factor:.2f}",
            f"{tl.zone} (green <= {tl.green_max}, yellow <= {tl.yellow_max})",
        )
        console.print(t)
    summary = {**res.to_dict(), "symbol": symbol, "path": str(path), "window": window, "qty": qty, "kind": kind}
    with run_failure():
        with staged(out, "margin-backtest", {"path": str(path), "symbol": symbol, "model": name}) as tmp:
            (tmp / "backtest.json").write_text(json.dumps(summary, indent=2, default=float))
            ax = plot_backtest(res)
            ax.figure.savefig(tmp / "backtest.png", dpi=120)
    if quiet:
        print(out)
    else:
        console.print(f"wrote {out / 'backtest.json'} and {out / 'backtest.png'}")


@margin_app.command()
def vectors(
    folder: Path = typer.Argument(
        ..., help="folder of Derive PM2 portfolio cases (test_*.json), e.g. tests/data/derive/pm2"
    ),
    exact: bool = typer.Option(False, help="final aggregation in 1e18 fixed point"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="only the summary line"),
):
    """Run Derive's published PM2 portfolio cases through derive-pm2-golden and check them like the upstream
    harness (every figure within 1e-8); prints the pass count and the largest deviation."""
    from defistress.protocols.margin.derive_vectors import UPSTREAM_SKIPPED, check_pm2_case, load_pm2_case

    paths = sorted(folder.glob("test_*.json")) if folder.is_dir() else []
    if not paths:
        _fail(f"folder={str(folder)!r}: no test_*.json case files; allowed a folder of PM2 portfolio cases")
    passed, total, worst, worst_at = 0, 0, 0.0, ""
    for path in paths:
        if path.stem in UPSTREAM_SKIPPED:
            if not quiet:
                console.print(f"{path.stem}: skipped (skipped upstream: a skew scenario with a spot move)")
            continue
        total += 1
        try:
            checks = check_pm2_case(load_pm2_case(json.loads(path.read_text()), path.stem, exact=exact))
        except (ValueError, KeyError) as e:
            console.print(f"{path.stem}: error {e}")
            continue
        bad = [c for c in checks if not c.ok]
        passed += not bad
        for c in checks:
            if c.mode == "rel" and c.rel > worst:
                worst, worst_at = c.rel, f"{path.stem} {c.name}"
        if bad and not quiet:
            console.print(
                f"{path.stem}: FAIL " + "; ".join(f"{c.name} {c.actual / 1e18} != {c.expected / 1e18}" for c in bad)
            )
    console.print(f"{passed}/{total} cases pass (tolerance 1e-8); largest relative deviation {worst:.2e} ({worst_at})")
    if passed != total:
        raise typer.Exit(1)
