"""`defistress margin ...`: compare margin models on example books, backtest a model on a historic price path.

Mount with `app.add_typer(margin_app, name="margin")`. Bad inputs (unknown model, invalid file) print one line
naming what is wrong and the allowed values, and exit with code 2 (no traceback).
"""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.columns import Columns
from rich.console import Console
from rich.table import Table

margin_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Compare margin models on the same books and backtest them on price paths.",
)
console = Console()
err = Console(stderr=True, soft_wrap=True)

DEFAULT_MODELS = "aave-v3,compound-v3,dydx-v4,hyperliquid,lyra-standard,deribit-standard,greeks,dynamic,var-mc"


def _fail(message: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


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
def compare(
    portfolio_file: Path = typer.Argument(
        ...,
        help="TOML or JSON file with [market] and [[accounts]] (forward curves, collateral, coin-margined "
        "accounts, published SPAN arrays: see protocols/margin/portfolio_file.py)",
    ),
    models: str = typer.Option(DEFAULT_MODELS, help="comma-separated presets (see the error for the list)"),
    out: Path = typer.Option(Path("margin-compare"), help="folder for compare.csv and compare.png"),
    history: Path | None = typer.Option(
        None, help="historic price CSV: return history for var-hs, var-fhs and the other history-based models"
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no tables"),
):
    """Margin of every account under every model: a table per account side by side, compare.csv, compare.png."""
    from defistress.protocols.margin.compare import compare as run_compare
    from defistress.protocols.margin.compare import load_portfolio, load_price_path, returns_from_prices
    from defistress.sim.report.plots_margin import plot_compare

    names = _model_names(models)
    try:
        book = load_portfolio(portfolio_file)
        pf, mkt = book.portfolio, book.market
        overrides = dict(book.overrides)  # e.g. the file's collateral parameters
        if history is not None:
            rets, step = returns_from_prices(load_price_path(history), pf.underlyings)
            overrides.update({"returns": rets, "step_days": step})
        df = run_compare(pf, mkt, names, overrides)
    except (ValueError, OSError) as e:
        _fail(str(e))
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
    out.mkdir(parents=True, exist_ok=True)
    df.to_csv(out / "compare.csv", index=False)
    ax = plot_compare(df)
    ax.figure.savefig(out / "compare.png", dpi=120)
    if not quiet:
        console.print(f"wrote {out / 'compare.csv'} and {out / 'compare.png'}")


@margin_app.command()
def backtest(
    path: Path = typer.Option(..., help="historic price CSV (long format, '#' comment header)"),
    symbol: str = typer.Option(..., help="symbol in the file, e.g. ETH-USDT"),
    model: str = typer.Option("var-hs", help="preset to backtest (see the error for the list)"),
    confidence: float = typer.Option(0.99, help="coverage level, 0.5 < c < 1"),
    window: int = typer.Option(250, help="look-back window, steps"),
    venue: str | None = typer.Option(None, help="venue when the symbol has several"),
    qty: float = typer.Option(1.0, help="reference position, units (negative: short)"),
    kind: str = typer.Option("perp", help="reference position kind: perp | spot"),
    out: Path = typer.Option(Path("margin-backtest"), help="folder for backtest.json and backtest.png"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no table"),
):
    """Exceedances, Kupiec POF, Christoffersen independence and the Basel traffic light of one model."""
    from defistress.protocols.margin.backtest import backtest_model
    from defistress.protocols.margin.compare import load_price_path, price_series, underlying_of
    from defistress.sim.report.plots_margin import plot_backtest

    name = _model_names(model)[0]
    try:
        prices = price_series(load_price_path(path), symbol, venue)
        res = backtest_model(prices, name, confidence, window, qty=qty, kind=kind, underlying=underlying_of(symbol))
    except (ValueError, OSError) as e:
        _fail(str(e))
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
    out.mkdir(parents=True, exist_ok=True)
    summary = {**res.to_dict(), "symbol": symbol, "path": str(path), "window": window, "qty": qty, "kind": kind}
    (out / "backtest.json").write_text(json.dumps(summary, indent=2, default=float))
    ax = plot_backtest(res)
    ax.figure.savefig(out / "backtest.png", dpi=120)
    if not quiet:
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
