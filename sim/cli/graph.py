"""`defistress graph`: draw a scenario's network (after a run, nodes coloured by losses)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from defistress.protocols.bounds import MAX_SEED
from defistress.sim.cli.errors import bad_input, guarded, run_failure

#: image formats the figure can be saved in (matplotlib's Agg and vector back ends)
GRAPH_SUFFIXES = (".png", ".svg", ".pdf")


def register(app: typer.Typer) -> None:
    @app.command()
    @guarded
    def graph(
        scenario: str = typer.Argument(..., help="built-in name or scenario TOML"),
        out: Path = typer.Option(
            Path("network.png"),
            help=f"image file to write: {', '.join(GRAPH_SUFFIXES)} (missing folders are created; an existing "
            "file needs --force)",
        ),
        run: bool = typer.Option(
            False, "--run", help="run the scenario first: protocol nodes sized by debt and coloured by bad debt"
        ),
        seed: int | None = typer.Option(None, min=0, max=MAX_SEED, help="seed for --run (default: run.seed)"),
        set_: list[str] = typer.Option([], "--set", help="overrides, as for `run` (repeatable)"),
        force: bool = typer.Option(False, "--force", help="replace an existing file at --out"),
    ):
        """Draw the network of protocols, assets, oracles, venues and agents with typed edges."""
        from matplotlib.figure import Figure

        from defistress.scenarios.loader import load
        from defistress.sim.engine import network
        from defistress.sim.experiments.outdir import check_out_file, staged_file
        from defistress.sim.report import plots

        with bad_input():
            loaded = load(scenario, set_)
            check_out_file(out, GRAPH_SUFFIXES, force=force)
        with run_failure():
            result = None
            if run:
                from defistress.sim.experiments.runs import run_scenario

                result = run_scenario(loaded, seed)
            g = (
                result.graph
                if result is not None and result.graph is not None
                else network.build_graph(loaded.scenario)
            )
            fig = Figure(figsize=plots.NETWORK_FIGSIZE, layout="constrained")
            plots.plot_network(result if result is not None else g, ax=fig.add_subplot())
            with staged_file(out) as tmp:
                fig.savefig(tmp, dpi=110)
        Console().print(f"{g.number_of_nodes()} nodes, {g.number_of_edges()} edges -> [bold]{out}[/]")
